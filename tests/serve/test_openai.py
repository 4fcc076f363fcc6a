"""OpenAI API with the `openai` client: greedy chat equal to the in-process runtime, streaming equal to the
non-streamed answer, a two-turn tool-call round trip, completions with echo logprobs, models, tokenize."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from support.serving import NAME, chat_tokens, greedy, text_of

openai = pytest.importorskip("openai")

HELLO = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello to the server."}]


@pytest.fixture(scope="module")
def client(server):
    c = openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0)
    yield c
    c.close()


def test_chat_greedy_equals_runtime(client, ref_model):
    r = client.chat.completions.create(model=NAME, messages=HELLO, max_tokens=24, temperature=0)
    want = greedy(ref_model, chat_tokens(ref_model, HELLO), 24)
    assert r.choices[0].message.content == text_of(ref_model, want)
    assert r.choices[0].finish_reason == ("stop" if want[-1] == ref_model.tokenizer.eos_id else "length")
    assert r.usage.prompt_tokens == len(chat_tokens(ref_model, HELLO))
    assert r.usage.completion_tokens == len(want)
    # the runtime's own generate() streams the same text (it holds back an incomplete last character)
    pieces = "".join(ref_model.generate(HELLO, max_tokens=24, temperature=0))
    assert pieces and r.choices[0].message.content.startswith(pieces)


def test_chat_stream_equals_non_stream(client, ref_model):
    msgs = [{"role": "user", "content": "Stream a few words, please."}]
    full = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=30, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=NAME, messages=msgs, max_tokens=30, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (
        text
        == full.choices[0].message.content
        == text_of(ref_model, greedy(ref_model, chat_tokens(ref_model, msgs), 30))
    )
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # streamed, not one piece
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [full.choices[0].finish_reason]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    # the second identical request reuses all but the last prompt token from the prompt cache
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == full.usage.prompt_tokens - 1


def test_seeded_sampling_equals_runtime(client, ref_model):
    msgs = [{"role": "user", "content": "Pick a random word."}]
    kw = dict(model=NAME, messages=msgs, max_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    a = client.chat.completions.create(**kw).choices[0].message.content
    b = client.chat.completions.create(**kw).choices[0].message.content
    from dsv4_gguf.speculative import sample

    rng = np.random.default_rng(7)
    s = ref_model.session(ctx=256)
    logits, toks = s.prefill(chat_tokens(ref_model, msgs)), []
    for _ in range(16):
        t = sample(logits, 0.8, 0.9, rng)
        toks.append(t)
        if t == ref_model.tokenizer.eos_id:
            break
        logits = s.decode(t)
    assert a == b == text_of(ref_model, toks)


def test_tool_call_round_trip(client, ref_model):
    """Turn 1 offers a tool; the client then sends the assistant's tool call (as an agent replays it) and the
    tool's result; the server's prompt is the DSV4 encoding of exactly that conversation."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r1 = client.chat.completions.create(model=NAME, messages=msgs, tools=tools, max_tokens=12, temperature=0)
    assert r1.usage.prompt_tokens == len(chat_tokens(ref_model, msgs, tools=tools))
    want1 = greedy(ref_model, chat_tokens(ref_model, msgs, tools=tools), 12)
    assert r1.choices[0].message.content == text_of(ref_model, want1)  # random weights: no DSML, plain text
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    msgs2 = [
        *msgs,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    ]
    r2 = client.chat.completions.create(model=NAME, messages=msgs2, tools=tools, max_tokens=12, temperature=0)
    p2 = chat_tokens(ref_model, msgs2, tools=tools)
    prompt_text = ref_model.decode_tokens(p2)
    assert (
        '<｜DSML｜invoke name="get_weather">' in prompt_text
        and '<tool_result>{"temp_c": 21}</tool_result>' in prompt_text
    )
    assert r2.usage.prompt_tokens == len(p2)
    assert r2.choices[0].message.content == text_of(ref_model, greedy(ref_model, p2, 12))
    assert r2.usage.prompt_tokens_details.cached_tokens > 0  # the tool turn continued the first turn's state


def test_completions_echo_logprobs(client, ref_model):
    prompt = "The quick brown fox jumps over the lazy dog"
    r = client.completions.create(model=NAME, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=3)
    toks = ref_model.encode(prompt)
    s = ref_model.session(ctx=256)
    lg = s.prefill(toks, all_logits=True).astype(np.float64)
    lp = lg - lg.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    got = r.choices[0].logprobs
    gen = greedy(ref_model, toks, 4)
    assert got.tokens[: len(toks)] == [ref_model.decode_tokens([t]) for t in toks]
    assert got.token_logprobs[0] is None
    np.testing.assert_allclose(
        got.token_logprobs[1 : len(toks)], [lp[i, toks[i + 1]] for i in range(len(toks) - 1)], rtol=0, atol=1e-9
    )
    assert got.token_logprobs[len(toks)] == pytest.approx(float(lp[-1].max()), abs=1e-9)  # greedy: the top token
    assert len(got.tokens) == len(toks) + len([t for t in gen if t != ref_model.tokenizer.eos_id])
    assert r.choices[0].text == prompt + text_of(ref_model, gen)
    assert all(len(t) <= 3 for t in got.top_logprobs[1:])
    # scoring only: max_tokens=0 returns the prompt's logprobs and generates nothing
    r0 = client.completions.create(model=NAME, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    assert r0.choices[0].text == prompt and r0.usage.completion_tokens == 0
    assert r0.choices[0].logprobs.token_logprobs == got.token_logprobs[: len(toks)]


def test_models_tokenize_detokenize(client, server, ref_model):
    assert [m.id for m in client.models.list().data] == [NAME]
    toks = httpx.post(server.url + "/tokenize", json={"content": "hello world"}).json()["tokens"]
    assert toks == ref_model.encode("hello world")
    assert httpx.post(server.url + "/detokenize", json={"tokens": toks}).json() == {"content": "hello world"}
    stats = httpx.get(server.url + "/stats").json()
    assert (
        stats["slots"] == 2
        and stats["requests"] >= 1
        and stats["cached_tokens"] + stats["prefilled_tokens"] == stats["prompt_tokens"]
    )


@pytest.mark.parametrize("effort", ["high", "max"])
def test_reasoning_effort(client, ref_model, effort):
    msgs = [{"role": "user", "content": "Think it through."}]
    r = client.chat.completions.create(model=NAME, messages=msgs, max_tokens=16, temperature=0, reasoning_effort=effort)
    p = chat_tokens(ref_model, msgs, thinking_mode="thinking", reasoning_effort="max" if effort == "max" else None)
    assert r.usage.prompt_tokens == len(p)
    want = text_of(ref_model, greedy(ref_model, p, 16))
    # random weights never close </think>: everything is reasoning
    assert r.choices[0].message.reasoning_content == want and r.choices[0].message.content == ""
    chunks = list(
        client.chat.completions.create(
            model=NAME, messages=msgs, max_tokens=16, temperature=0, reasoning_effort=effort, stream=True
        )
    )
    streamed = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert streamed == want and not any(c.choices[0].delta.content for c in chunks if c.choices)


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string(client, ref_model, stream):
    msgs = [{"role": "user", "content": "Say something we can cut."}]
    full = text_of(ref_model, greedy(ref_model, chat_tokens(ref_model, msgs), 40))
    stop = full[12:15]
    assert len(stop) == 3 and "\ufffd" not in stop  # the test's precondition: a clean 3-character stop string
    kw = dict(model=NAME, messages=msgs, max_tokens=40, temperature=0, stop=[stop, "never-there"])
    if stream:
        chunks = list(client.chat.completions.create(**kw, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    else:
        r = client.chat.completions.create(**kw)
        text, finish = r.choices[0].message.content, [r.choices[0].finish_reason]
    assert text == full[: full.index(stop)] and finish == ["stop"]
