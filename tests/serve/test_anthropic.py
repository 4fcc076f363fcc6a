"""Anthropic API with the `anthropic` client: messages equal to the runtime, a tool_use / tool_result round
trip, the streaming event sequence, thinking blocks."""

from __future__ import annotations

import pytest
from support.serving import NAME, chat_tokens, greedy, text_of

anthropic = pytest.importorskip("anthropic")

GREEDY = {"temperature": 0}  # the SDK has no temperature argument; the server reads it from the body
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather of a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]},
    }
    for t in TOOLS
]


@pytest.fixture(scope="module")
def client(server):
    c = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    yield c
    c.close()


def test_messages_equal_runtime(client, ref_model):
    r = client.messages.create(
        model=NAME,
        max_tokens=20,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hi there"}],
        extra_body=GREEDY,
    )
    p = chat_tokens(ref_model, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}])
    want = greedy(ref_model, p, 20)
    assert [b.type for b in r.content] == ["text"] and r.content[0].text == text_of(ref_model, want)
    assert r.stop_reason == ("end_turn" if want[-1] == ref_model.tokenizer.eos_id else "max_tokens")
    assert r.usage.input_tokens + r.usage.cache_read_input_tokens == len(p) and r.usage.output_tokens == len(want)


def test_tool_use_round_trip(client, ref_model):
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "21 C, sunny"}]},
    ]
    r = client.messages.create(model=NAME, max_tokens=16, tools=TOOLS, messages=msgs, extra_body=GREEDY)
    same = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [{"id": "toolu_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21 C, sunny"},
    ]
    p = chat_tokens(ref_model, same, tools=OPENAI_TOOLS)
    text = ref_model.decode_tokens(p)
    assert '<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>' in text
    assert "<tool_result>21 C, sunny</tool_result>" in text
    assert r.usage.input_tokens + r.usage.cache_read_input_tokens == len(p)
    assert r.content[0].text == text_of(ref_model, greedy(ref_model, p, 16))
    n = client.messages.count_tokens(model=NAME, tools=TOOLS, messages=msgs)
    assert n.input_tokens == len(p)


def test_stream_events(client, ref_model):
    msgs = [{"role": "user", "content": "Stream please"}]
    with client.messages.stream(model=NAME, max_tokens=20, messages=msgs, extra_body=GREEDY) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    want = greedy(ref_model, chat_tokens(ref_model, msgs), 20)
    assert final.content[0].text == text_of(ref_model, want)
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert events.count("content_block_start") == events.count("content_block_stop") == 1
    assert "message_delta" in events and events.count("text") > 3


def test_thinking_block(client, ref_model):
    msgs = [{"role": "user", "content": "Think about it"}]
    r = client.messages.create(
        model=NAME,
        max_tokens=12,
        messages=msgs,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body=GREEDY,
    )
    want = greedy(ref_model, chat_tokens(ref_model, msgs, thinking_mode="thinking"), 12)
    assert r.content[0].type == "thinking" and r.content[0].thinking == text_of(ref_model, want)


def test_thinking_stream(client, ref_model):
    msgs = [{"role": "user", "content": "Think about it"}]
    kw = dict(model=NAME, max_tokens=12, messages=msgs, thinking={"type": "enabled", "budget_tokens": 1024})
    with client.messages.stream(**kw, extra_body=GREEDY) as s:
        final = s.get_final_message()
    want = greedy(ref_model, chat_tokens(ref_model, msgs, thinking_mode="thinking"), 12)
    assert [b.type for b in final.content] == ["thinking"] and final.content[0].thinking == text_of(ref_model, want)
    assert final.stop_reason == ("end_turn" if want[-1] == ref_model.tokenizer.eos_id else "max_tokens")
