"""Completion parsing: equal to the official parser on well-formed turns, clear errors on malformed DSML."""

from __future__ import annotations

import json

import pytest

from dsv4_gguf import chat
from dsv4_gguf.chat import ChatFormatError


def _turns(corpus):
    """Every assistant turn of the corpus as the model would generate it, in both modes."""
    for conv in corpus.CONVERSATIONS:
        for msg in corpus.hf_messages(conv):
            if msg["role"] != "assistant":
                continue
            for mode in ("chat", "thinking"):
                text = chat.encode_messages([{"role": "user", "content": "q"}, msg], mode, drop_thinking=False)
                opener = chat.THINK_START if mode == "thinking" else chat.THINK_END
                yield conv["id"], mode, msg, text.split(chat.ASSISTANT, 1)[1].removeprefix(opener)


def test_parse_matches_official_parser(oracle, corpus):
    checked = rejected = 0
    for name, mode, msg, text in _turns(corpus):
        calls = msg.get("tool_calls") or []
        try:
            want = oracle.parse_message_from_completion_text(text, mode)
        except (AssertionError, ValueError):
            if all(c["function"]["arguments"] for c in calls):
                # Official rejects (special text inside content): so must we.
                with pytest.raises(ChatFormatError):
                    chat.parse_completion(text, mode)
                rejected += 1
                continue
            want = None  # the official parser rejects calls without arguments; ours accepts them
        got = chat.parse_completion(text, mode)
        if want is not None:
            assert got == want, name
            checked += 1
        assert got["content"] == (msg["content"] or ""), name
        assert got["reasoning_content"] == ((msg.get("reasoning_content") or "") if mode == "thinking" else "")
        assert [c["function"]["name"] for c in got["tool_calls"]] == [c["function"]["name"] for c in calls]
        for parsed, sent in zip(got["tool_calls"], calls, strict=True):
            assert json.loads(parsed["function"]["arguments"]) == sent["function"]["arguments"], name
        # Re-rendering the parsed message gives the same text back.
        again = chat.encode_messages([{"role": "user", "content": "q"}, got], mode, drop_thinking=False)
        assert again.endswith(text), name
    assert checked >= 40 and rejected >= 1


def test_parse_without_eos():
    got = chat.parse_completion("Hello", "chat", require_eos=False)
    assert got["content"] == "Hello" and got["tool_calls"] == []
    with pytest.raises(ChatFormatError, match="missing"):
        chat.parse_completion("Hello", "chat")


D = chat.DSML
CALL = f'\n\n<{D}tool_calls>\n<{D}invoke name="f">\n<{D}parameter name="a" string="true">x</{D}parameter>\n'
MALFORMED = {
    "no-think-end": ("reasoning only" + chat.EOS, "thinking", "must close its reasoning"),
    "no-eos": ("answer", "chat", "missing"),
    "text-after-eos": ("answer" + chat.EOS + "more", "chat", "end with"),
    "unterminated-calls": (CALL + f"</{D}invoke>" + chat.EOS, "chat", "newline after </invoke>"),
    "bad-param": (
        CALL.replace('string="true"', 'string="maybe"') + f"</{D}invoke>\n</{D}tool_calls>" + chat.EOS,
        "chat",
        "parameter",
    ),
    "duplicate-param": (
        CALL + f'<{D}parameter name="a" string="true">y</{D}parameter>\n</{D}invoke>\n</{D}tool_calls>' + chat.EOS,
        "chat",
        "duplicate parameter 'a'",
    ),
    "no-newline-after-invoke": (CALL + f"</{D}invoke></{D}tool_calls>" + chat.EOS, "chat", "newline"),
    "text-after-calls": (CALL + f"</{D}invoke>\n</{D}tool_calls>tail" + chat.EOS, "chat", "end with"),
    "special-token-in-content": ("a <think> b" + chat.EOS, "chat", "unexpected special token"),
    "dsml-in-reasoning": (f"r {D} r</think>a" + chat.EOS, "thinking", "unexpected special token"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_completion(name):
    text, mode, message = MALFORMED[name]
    with pytest.raises(ChatFormatError, match="malformed DSV4 completion at offset") as err:
        chat.parse_completion(text, mode)
    assert message in str(err.value)
