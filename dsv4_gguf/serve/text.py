"""Generated tokens -> text for the API layers: incremental detokenization, stop strings, and the split of a
DSV4 assistant turn into reasoning, content and DSML tool calls while it streams.

The final message of a turn is ``dsv4_gguf.chat.parse_completion`` of the whole text (the one parser of
the format); the streaming split only decides what can be sent early and holds back the DSML tool-call
block, which is sent as structured calls once parsed.  No chat encoding here (``dsv4_gguf.chat`` owns it).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ..chat import EOS, THINK_END, TOOL_CALLS_OPEN, ChatFormatError, parse_completion

__all__ = ["Detokenizer", "TurnText", "new_id"]

_CALLS_MARK = TOOL_CALLS_OPEN.rstrip("\n")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


class Detokenizer:
    """Text pieces of a growing token list, never splitting a UTF-8 character: decodes a short tail window
    (the prefix/read offsets of text-generation-inference) instead of the whole list each step."""

    def __init__(self, decode: Any):
        self._decode = decode
        self.tokens: list[int] = []
        self._prefix = self._read = 0

    def push(self, token: int) -> str:
        self.tokens.append(token)
        before = self._decode(self.tokens[self._prefix : self._read])
        text = self._decode(self.tokens[self._prefix :])
        if len(text) > len(before) and not text.endswith("\ufffd"):
            self._prefix, self._read = self._read, len(self.tokens)
            return text[len(before) :]
        return ""

    def flush(self) -> str:
        """The held-back tail (an incomplete character at the end of the generation)."""
        before = self._decode(self.tokens[self._prefix : self._read])
        text = self._decode(self.tokens[self._prefix :])
        self._prefix = self._read = len(self.tokens)
        return text[len(before) :]


def _held_suffix(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a marker (it may become one)."""
    best = 0
    for m in markers:
        for k in range(min(len(m) - 1, len(text)), best, -1):
            if text.endswith(m[:k]):
                best = k
                break
    return best


class TurnText:
    """One assistant turn as it streams.  ``push(piece)`` returns ``[(channel, text)]`` ready to send, channel
    "reasoning" or "content"; text after a stop string is dropped (``stopped`` turns true); with ``tools`` the
    DSML block is held back for ``message()``."""

    def __init__(self, thinking: bool = False, tools: bool = False, stop: Sequence[str] = ()):
        self.thinking, self.tools = thinking, tools
        self.stop = [s for s in stop if s]
        self.stopped = False
        self.stop_hit: str | None = None  # the stop string that ended the turn
        self.raw = ""  # all text of the turn (up to a stop string)
        self._pending = ""  # text not yet routed (may be the start of a stop string or a marker)
        self._channel = "reasoning" if thinking else "content"
        self._calls = ""  # the DSML block, held back
        self.sent: dict[str, str] = {"reasoning": "", "content": ""}

    def push(self, piece: str, final: bool = False) -> list[tuple[str, str]]:
        if self.stopped:
            return []
        self._pending += piece
        hits = [(at, s) for s in self.stop if (at := self._pending.find(s)) >= 0]
        if hits:
            at, self.stop_hit = min(hits)
            self._pending, self.stopped, final = self._pending[:at], True, True
        out: list[tuple[str, str]] = []
        while self._pending:
            marks = [THINK_END] if self._channel == "reasoning" else [_CALLS_MARK] if self.tools else []
            if self._channel == "calls":
                self._calls += self._pending
                self.raw += self._pending
                self._pending = ""
                break
            found = [(self._pending.find(m), m) for m in marks if m in self._pending]
            if found:
                at, m = min(found)
                self._emit(out, self._pending[:at])
                self.raw += m
                if self._channel == "content":
                    self._calls = m
                self._channel = "content" if self._channel == "reasoning" else "calls"
                self._pending = self._pending[at + len(m) :]
                continue
            hold = 0 if final else _held_suffix(self._pending, [*marks, *self.stop])
            self._emit(out, self._pending[: len(self._pending) - hold])
            self._pending = self._pending[len(self._pending) - hold :]
            break
        return out

    def _emit(self, out: list[tuple[str, str]], text: str) -> None:
        if text:
            out.append((self._channel, text))
            self.sent[self._channel] += text
            self.raw += text

    def finish(self) -> list[tuple[str, str]]:
        """Flush what was held back for a marker that never completed."""
        return self.push("", final=True)

    def message(self, ended_by_eos: bool) -> dict[str, Any]:
        """The parsed turn: ``content``, ``reasoning_content``, ``tool_calls`` (OpenAI format, with ids)
        and ``parsed`` (False: the text is not a well-formed DSV4 turn; it is returned as streamed, the
        held-back DSML text appended to the content)."""
        mode = "thinking" if self.thinking else "chat"
        try:
            msg = parse_completion(self.raw + (EOS if ended_by_eos else ""), thinking_mode=mode, require_eos=False)
            if msg["tool_calls"] and not self.tools:
                raise ChatFormatError("tool calls without tools")
        except ChatFormatError:
            return {
                "content": self.sent["content"] + self._calls,
                "reasoning_content": self.sent["reasoning"],
                "tool_calls": [],
                "parsed": False,
            }
        for call in msg["tool_calls"]:
            call["id"] = new_id("call_")
        return {**msg, "parsed": True}
