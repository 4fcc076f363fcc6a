"""The turn text mapping without a server: DSML tool calls (as the real model writes them) become structured
calls in each API's shape, thinking splits into reasoning, stop strings cut the turn, markers split across
stream pieces are held back, and incremental detokenization equals decoding the whole list."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dsv4_gguf.chat import DSML, EOS, encode_messages
from dsv4_gguf.serve.anthropic import _tool_uses
from dsv4_gguf.serve.ollama import _ollama_calls
from dsv4_gguf.serve.text import Detokenizer, TurnText

CALL = (
    f"\n\n<{DSML}tool_calls>\n"
    f'<{DSML}invoke name="get_weather">\n'
    f'<{DSML}parameter name="city" string="true">Paris</{DSML}parameter>\n'
    f'<{DSML}parameter name="days" string="false">3</{DSML}parameter>\n'
    f"</{DSML}invoke>\n"
    f"</{DSML}tool_calls>"
)


def _feed(turn: TurnText, text: str, step: int) -> list[tuple[str, str]]:
    out = []
    for i in range(0, len(text), step):
        out += turn.push(text[i : i + step])
    return out + turn.finish()


def _joined(parts: list[tuple[str, str]], channel: str) -> str:
    return "".join(t for c, t in parts if c == channel)


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_tool_call_stream_and_message(step):
    turn = TurnText(thinking=True, tools=True)
    parts = _feed(turn, "Need the weather.</think>Checking." + CALL, step)
    assert _joined(parts, "reasoning") == "Need the weather." and _joined(parts, "content") == "Checking."
    assert all(DSML not in t and "</think>" not in t for _, t in parts)  # markup never streams
    msg = turn.message(ended_by_eos=True)
    assert msg["parsed"] and msg["content"] == "Checking." and msg["reasoning_content"] == "Need the weather."
    [call] = msg["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 3}
    assert _ollama_calls(msg["tool_calls"]) == [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}}
    ]
    [use] = _tool_uses(msg["tool_calls"])
    assert use["type"] == "tool_use" and use["name"] == "get_weather" and use["input"] == {"city": "Paris", "days": 3}


def test_round_trip_through_the_encoder():
    """The parsed call, sent back by a client as the assistant's tool_calls, encodes to the model's own text."""
    turn = TurnText(tools=True)
    _feed(turn, "Checking." + CALL, 5)
    msg = turn.message(ended_by_eos=True)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    conv = [{"role": "user", "content": "Weather?"}]
    prompt = encode_messages(conv, tools=tools)
    again = encode_messages(
        [*conv, {"role": "assistant", "content": msg["content"], "tool_calls": msg["tool_calls"]}], tools=tools
    )
    assert again == prompt + "Checking." + CALL + EOS


def test_without_tools_the_markup_is_text():
    turn = TurnText(tools=False)
    parts = _feed(turn, "Text" + CALL, 4)
    assert _joined(parts, "content") == "Text" + CALL
    msg = turn.message(ended_by_eos=True)
    assert not msg["parsed"] and msg["tool_calls"] == [] and msg["content"] == "Text" + CALL


def test_unclosed_thinking_is_reasoning():
    turn = TurnText(thinking=True, tools=True)
    parts = _feed(turn, "still thinking </thi", 2)
    msg = turn.message(ended_by_eos=False)
    assert _joined(parts, "reasoning") == "still thinking </thi" and msg["reasoning_content"] == "still thinking </thi"
    assert msg["content"] == "" and msg["tool_calls"] == []


def test_malformed_dsml_is_returned_as_content():
    turn = TurnText(tools=True)
    bad = f"Hi\n\n<{DSML}tool_calls>\n<{DSML}invoke nam"
    parts = _feed(turn, bad, 3)
    assert _joined(parts, "content") == "Hi"
    msg = turn.message(ended_by_eos=True)
    assert not msg["parsed"] and msg["content"] == bad and msg["tool_calls"] == []


@pytest.mark.parametrize("step", [1, 2, 5])
def test_stop_strings(step):
    turn = TurnText(stop=["END", "xyz"])
    parts = _feed(turn, "abc xy zEND more xyz", step)
    assert _joined(parts, "content") == "abc xy z" and turn.stopped and turn.stop_hit == "END"
    turn2 = TurnText(stop=["END"])
    held = turn2.push("no stop here EN")
    assert _joined(held, "content") == "no stop here "  # "EN" may start "END": held back
    assert _joined(turn2.finish(), "content") == "EN" and not turn2.stopped


def test_detokenizer_equals_whole_decode(ref_model):
    rng = np.random.default_rng(5)
    for _ in range(20):
        toks = [int(t) for t in rng.integers(3, ref_model.vocab_size, 40)]
        d = Detokenizer(ref_model.decode_tokens)
        text = "".join(d.push(t) for t in toks) + d.flush()
        assert text == ref_model.decode_tokens(toks)
