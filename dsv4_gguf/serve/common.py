"""What the three API modules share: the server settings, ``ApiError`` (a 4xx with the message and error
type), ``Ctx`` (the engine, the settings, the request and its JSON body, with the parameter checks and the
job runner), OpenAI-format message and tool checks, the DSV4 prompt of a conversation, SSE / NDJSON
responses.  No routes and no error rendering here (``app.py``)."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..chat import ChatFormatError, encode_messages
from .engine import DoneEvent, Engine, Job, Sampling, TokenEvent
from .text import Detokenizer, TurnText

__all__ = [
    "Settings",
    "ApiError",
    "Ctx",
    "Handler",
    "check_tools",
    "check_messages",
    "encode_chat",
    "call_arguments",
    "usage_of",
    "sse",
    "ndjson",
]


@dataclass(frozen=True)
class Settings:
    model_name: str
    api_key: str | None = None
    max_body: int = 8 << 20  # bytes of one request body
    max_tokens: int = 4096  # cap of a request's max_tokens, and the default where an API has none
    verbose_errors: bool = False


class ApiError(Exception):
    """A request error: ``status`` (4xx), message, and the OpenAI/Anthropic error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


@dataclass
class Ctx:
    """What a handler needs: the engine, the settings and the request's parsed JSON body."""

    engine: Engine
    settings: Settings
    request: Request
    body: dict[str, Any]

    # ---- parameter checks ---------------------------------------------------------------------------

    def model(self, name: Any, required: bool = True) -> str:
        if name is None and not required:
            return self.settings.model_name
        served = self.settings.model_name
        if not isinstance(name, str) or name not in (served, f"{served}:latest"):
            raise ApiError(
                404 if isinstance(name, str) else 400,
                f"model {name!r} is not served here; this server serves {served!r} (GET /v1/models)",
                "not_found_error" if isinstance(name, str) else "invalid_request_error",
                "model",
            )
        return served

    def number(self, value: Any, name: str, lo: float, hi: float, default: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ApiError(400, f"{name} must be a number in [{lo}, {hi}], got {value!r}", param=name)
        if not lo <= value <= hi:
            raise ApiError(400, f"{name} must be in [{lo}, {hi}], got {value!r}", param=name)
        return float(value)

    def integer(self, value: Any, name: str, lo: int, hi: int, default: int | None) -> int | None:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ApiError(400, f"{name} must be an integer in [{lo}, {hi}], got {value!r}", param=name)
        return int(value)

    def sampling(self, temperature: Any, top_p: Any, seed: Any) -> Sampling:
        t = self.number(temperature, "temperature", 0.0, 2.0, 1.0)
        p = self.number(top_p, "top_p", 0.0, 1.0, 1.0)
        if p == 0.0:
            raise ApiError(400, "top_p must be in (0, 1] (1 = no nucleus cut), got 0", param="top_p")
        s = self.integer(seed, "seed", -(2**63), 2**64 - 1, None)
        return Sampling(temperature=t, top_p=p, seed=None if s is None else s % 2**64)

    def max_tokens(self, value: Any, name: str = "max_tokens", lo: int = 1) -> int:
        cap = self.settings.max_tokens
        if value is not None and isinstance(value, int) and not isinstance(value, bool) and value > cap:
            raise ApiError(400, f"{name} is {value}, more than this server's limit of {cap} (--max-tokens)", param=name)
        n = self.integer(value, name, lo, cap, cap)
        assert n is not None
        return n

    def stop(self, value: Any, name: str = "stop") -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(s, str) for s in value) and len(value) <= 16:
            return list(value)
        raise ApiError(400, f"{name} must be a string or a list of at most 16 strings", param=name)

    def prompt_tokens(self, text: str) -> list[int]:
        return self.check_length(self.engine.model.encode(text))

    def check_length(self, tokens: list[int]) -> list[int]:
        ctx = self.engine.ctx
        if not tokens:
            raise ApiError(400, "the prompt is empty", param="prompt")
        if len(tokens) >= ctx:
            raise ApiError(
                400,
                f"the prompt is {len(tokens)} tokens; this server's context is {ctx} tokens (--ctx), which must "
                "also hold at least one generated token: shorten the prompt or restart the server with a larger --ctx",
                param="messages",
            )
        return tokens

    def job(self, tokens: list[int], max_tokens: int, sampling: Sampling, **kw: Any) -> Job:
        return Job(tokens, max_tokens, sampling, stop_ids=frozenset({self.engine.model.tokenizer.eos_id}), **kw)

    # ---- running a job ------------------------------------------------------------------------------

    async def events(self, job: Job, stream: bool) -> AsyncIterator[TokenEvent | DoneEvent]:
        """The job's events; a non-streaming request whose client goes away cancels the job (a streaming
        one is cancelled when the response generator is closed)."""
        agen = self.engine.stream(job)
        watcher = None if stream else asyncio.ensure_future(self._watch(job))
        try:
            async for ev in agen:
                yield ev
                if isinstance(ev, DoneEvent):
                    return
        finally:
            job.cancel()
            if watcher is not None:
                watcher.cancel()
            await agen.aclose()

    async def _watch(self, job: Job) -> None:
        """Poll for the client's disconnect while a non-streamed answer is generated; cancel the job then."""
        while not job.cancelled.is_set():
            await asyncio.sleep(0.1)
            if await self.request.is_disconnected():
                self.engine.cancel(job)
                return

    async def turn(
        self, job: Job, turn: TurnText, stream: bool
    ) -> AsyncIterator[tuple[str, str] | TokenEvent | DoneEvent]:
        """The job's text deltas ``(channel, text)`` (see ``TurnText``), each ``TokenEvent`` after its deltas,
        and the ``DoneEvent`` last (reason "stop" when a stop string ended the turn).  A stop string cancels
        the job; the tokens still in flight are dropped."""
        detok = Detokenizer(self.engine.model.decode_tokens)
        # a non-streamed answer without stop strings is only read at its end: take its tokens then, in one go
        job.at_end = not stream and not turn.stop
        async for ev in self.events(job, stream):
            if isinstance(ev, DoneEvent):
                check_done(ev)
                if not turn.stopped:
                    for d in turn.push(detok.flush(), final=True):
                        yield d
                if turn.stopped:
                    ev.reason = "stop"
                yield ev
                return
            if turn.stopped or ev.token in job.stop_ids:
                continue
            for d in turn.push(detok.push(ev.token)):
                yield d
            yield ev
            if turn.stopped:
                job.cancel()


_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_ROLES = ("system", "developer", "user", "assistant", "tool")


def check_tools(tools: Any, param: str = "tools") -> list[dict[str, Any]]:
    """OpenAI-format tools (``{"type": "function", "function": {"name", "description", "parameters"}}``),
    checked: a name of 1-64 letters, digits, ``_ . -``; parameters a JSON-schema object."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ApiError(400, f"{param} must be a list of tools", param=param)
    out = []
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) else None
        if not isinstance(f, dict) or t.get("type", "function") != "function":
            raise ApiError(400, f"{param}[{i}] must be {{'type': 'function', 'function': {{...}}}}", param=param)
        name = f.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise ApiError(400, f"{param}[{i}].function.name must be 1-64 of [A-Za-z0-9_.-], got {name!r}", param=param)
        schema = f.get("parameters")
        if schema is not None and (not isinstance(schema, dict) or schema.get("type", "object") != "object"):
            raise ApiError(
                400,
                f"{param}[{i}].function.parameters must be a JSON schema of type 'object', got {schema!r}",
                param=param,
            )
        if not isinstance(f.get("description", ""), str):
            raise ApiError(400, f"{param}[{i}].function.description must be a string", param=param)
        out.append({"type": "function", "function": f})
    return out


def _text_of(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for p in content:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                kind = p.get("type") if isinstance(p, dict) else type(p).__name__
                raise ApiError(400, f"{where}: only text content parts are supported (text-only model), got {kind!r}")
            parts.append(p["text"])
        return "\n".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts")


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """OpenAI-format chat messages, checked and reduced to what ``dsv4_gguf.chat.encode_messages`` reads."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in _ROLES:
            raise ApiError(
                400, f"messages[{i}].role must be one of {', '.join(_ROLES)}, got {role!r}", param="messages"
            )
        msg: dict[str, Any] = {"role": role, "content": _text_of(m.get("content"), f"messages[{i}]")}
        if role == "tool":
            msg["tool_call_id"] = str(m.get("tool_call_id") or "")
        if role == "assistant":
            if isinstance(m.get("reasoning_content"), str):
                msg["reasoning_content"] = m["reasoning_content"]
            calls = m.get("tool_calls")
            if calls:
                if not isinstance(calls, list):
                    raise ApiError(400, f"messages[{i}].tool_calls must be a list", param="messages")
                for j, c in enumerate(calls):
                    f = c.get("function") if isinstance(c, dict) else None
                    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                        raise ApiError(400, f"messages[{i}].tool_calls[{j}] needs function.name", param="messages")
                    if not isinstance(f.get("arguments", "{}"), (str, dict)):
                        raise ApiError(
                            400, f"messages[{i}].tool_calls[{j}].function.arguments must be a JSON string or an object"
                        )
                msg["tool_calls"] = calls
        out.append(msg)
    return out


def encode_chat(
    ctx: Ctx, messages: list[dict[str, Any]], tools: list[dict[str, Any]], thinking: bool, effort: str | None = None
) -> list[int]:
    """The DSV4 prompt of a conversation (``dsv4_gguf.chat.encode_messages``), tokenized and length-checked."""
    try:
        text = encode_messages(
            messages, thinking_mode="thinking" if thinking else "chat", reasoning_effort=effort, tools=tools or None
        )
    except ChatFormatError as e:
        raise ApiError(400, str(e), param="messages") from None
    return ctx.prompt_tokens(text)


def call_arguments(call: dict[str, Any]) -> Any:
    """The arguments of a generated OpenAI-format tool call as a JSON value, for the APIs that send them parsed
    (Anthropic ``input``, Ollama ``arguments``); text that is not JSON goes as ``{"arguments": text}``."""
    raw = call["function"]["arguments"]
    try:
        return json.loads(raw)
    except ValueError:
        return {"arguments": raw}


def usage_of(done: DoneEvent) -> dict[str, Any]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.generated_tokens,
        "total_tokens": done.prompt_tokens + done.generated_tokens,
        "prompt_tokens_details": {"cached_tokens": done.cached_tokens},
    }


def check_done(done: DoneEvent) -> None:
    if done.reason == "error":
        raise ApiError(500, f"generation failed: {done.error}", "server_error")


class _Stream(StreamingResponse):
    """Closes the body generator as soon as the response ends (a disconnect included), so its ``finally``
    cancels the job at once instead of when the generator is garbage-collected."""

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def sse(gen: AsyncIterator[str]) -> Response:
    return _Stream(gen, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def ndjson(gen: AsyncIterator[str]) -> Response:
    return _Stream(gen, media_type="application/x-ndjson")


Handler = Callable[[Ctx], Awaitable[Response | Mapping[str, Any]]]
