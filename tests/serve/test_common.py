"""``call_arguments``, the one parser of a generated tool call's arguments that the Anthropic (``input``) and
Ollama (``arguments``) responses share: JSON is sent parsed, other text wrapped as ``{"arguments": text}``."""

from __future__ import annotations

from typing import Any

from dsv4_gguf.serve.common import call_arguments


def _call(arguments: str) -> dict[str, Any]:
    return {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def test_json_arguments_are_parsed():
    assert call_arguments(_call('{"city": "Paris", "days": [1, 2]}')) == {"city": "Paris", "days": [1, 2]}
    assert call_arguments(_call("[]")) == []


def test_text_that_is_not_json_is_wrapped():
    assert call_arguments(_call("Paris, tomorrow")) == {"arguments": "Paris, tomorrow"}
    assert call_arguments(_call('{"city": "Par')) == {"arguments": '{"city": "Par'}
