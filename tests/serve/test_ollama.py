"""Ollama API with the `ollama` client: chat, generate (raw and templated, token context equal to the
runtime's), NDJSON streaming, think, tags / show / ps / version."""

from __future__ import annotations

import pytest
from support.serving import NAME, chat_tokens, greedy, text_of

ollama = pytest.importorskip("ollama")

GREEDY = {"temperature": 0, "num_predict": 20}


@pytest.fixture(scope="module")
def client(server):
    c = ollama.Client(host=server.url)
    yield c
    c.close()


def test_chat_equals_runtime(client, ref_model):
    msgs = [{"role": "user", "content": "Hello from Ollama's client."}]
    r = client.chat(model=NAME, messages=msgs, options=GREEDY, stream=False)
    want = greedy(ref_model, chat_tokens(ref_model, msgs), 20)
    assert r.message.content == text_of(ref_model, want)
    assert r.done and r.prompt_eval_count == len(chat_tokens(ref_model, msgs)) and r.eval_count == len(want)
    assert r.done_reason == ("stop" if want[-1] == ref_model.tokenizer.eos_id else "length")


def test_chat_stream(client, ref_model):
    msgs = [{"role": "user", "content": "Stream to me."}]
    parts = list(client.chat(model=NAME + ":latest", messages=msgs, options=GREEDY, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1]) and len(parts) > 3
    text = "".join(p.message.content for p in parts)
    assert text == text_of(ref_model, greedy(ref_model, chat_tokens(ref_model, msgs), 20))


def test_chat_think(client, ref_model):
    msgs = [{"role": "user", "content": "Think first."}]
    r = client.chat(model=NAME, messages=msgs, options=GREEDY, think=True, stream=False)
    want = greedy(ref_model, chat_tokens(ref_model, msgs, thinking_mode="thinking"), 20)
    # random weights never close </think>: the whole output is reasoning
    assert r.message.thinking == text_of(ref_model, want) and r.message.content == ""


def test_generate_raw_and_templated(client, ref_model):
    r = client.generate(model=NAME, prompt="Once upon a time", raw=True, options=GREEDY)
    toks = ref_model.encode("Once upon a time")
    want = greedy(ref_model, toks, 20)
    assert r.response == text_of(ref_model, want)
    assert r.context == toks + [t for t in want if t != ref_model.tokenizer.eos_id]
    r2 = client.generate(model=NAME, prompt="Once upon a time", system="Be brief.", options=GREEDY)
    p2 = chat_tokens(
        ref_model, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Once upon a time"}]
    )
    assert r2.response == text_of(ref_model, greedy(ref_model, p2, 20)) and r2.context[: len(p2)] == p2


def test_generate_stream(client, ref_model):
    parts = list(client.generate(model=NAME, prompt="Streaming raw text", raw=True, options=GREEDY, stream=True))
    assert parts[-1].done and len(parts) > 3
    want = greedy(ref_model, ref_model.encode("Streaming raw text"), 20)
    assert "".join(p.response for p in parts) == text_of(ref_model, want)


def test_tags_show_ps_version(client, server, serve_gguf):
    tags = client.list()
    assert [m.model for m in tags.models] == [NAME + ":latest"]
    assert tags.models[0].size == serve_gguf.stat().st_size and tags.models[0].details.family == "deepseek4"
    show = client.show(NAME)
    assert show.details.quantization_level == "MXFP4_MOE" and "tools" in show.capabilities
    assert show.modelinfo["deepseek4.context_length"] == server.engine.ctx
    ps = client.ps()
    assert ps.models[0].name == NAME + ":latest" and ps.models[0].context_length == server.engine.ctx
    import httpx

    assert httpx.get(server.url + "/api/version").json()["version"]
