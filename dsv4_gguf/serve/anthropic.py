"""Anthropic-compatible ``/v1/messages``: text, ``tool_use`` / ``tool_result`` and ``thinking`` blocks, and the
streaming event sequence (``message_start`` ... ``message_stop``) the Anthropic SDKs read.

Thinking ``budget_tokens`` is accepted but not enforced (DSV4 has no budget control; ``max_tokens`` bounds
the turn); thinking blocks carry an empty signature.  Images and documents are refused (text-only model).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from .common import ApiError, Ctx, call_arguments, check_messages, check_tools, encode_chat, sse
from .engine import DoneEvent
from .text import TurnText, new_id

__all__ = ["ROUTES"]


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise ApiError(400, f"{where}.content must be a string or a list of content blocks")


def _text(content: Any, where: str) -> str:
    parts = []
    for b in _blocks(content, where):
        if b.get("type") != "text" or not isinstance(b.get("text"), str):
            raise ApiError(400, f"{where}: only text blocks are supported here, got {b.get('type')!r}")
        parts.append(b["text"])
    return "\n".join(parts)


def _to_openai(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic messages (+ ``system``) as OpenAI-format messages for the one DSV4 encoder."""
    out: list[dict[str, Any]] = []
    if body.get("system") is not None:
        out.append({"role": "system", "content": _text(body["system"], "system")})
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list")
    for i, m in enumerate(messages):
        where = f"messages.{i}"
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise ApiError(400, f"{where}.role must be 'user' or 'assistant', got {role!r}")
        blocks = _blocks(m.get("content"), where)
        if role == "user":
            texts = []
            for b in blocks:
                kind = b.get("type")
                if kind == "text":
                    texts.append(str(b.get("text", "")))
                elif kind == "tool_result":
                    content = b.get("content", "")
                    text = content if isinstance(content, str) else _text(content, f"{where}.tool_result")
                    out.append({"role": "tool", "tool_call_id": str(b.get("tool_use_id", "")), "content": text})
                else:
                    raise ApiError(400, f"{where}: content block type {kind!r} is not supported (text-only model)")
            if texts:
                out.append({"role": "user", "content": "\n".join(texts)})
            continue
        msg: dict[str, Any] = {"role": "assistant", "content": ""}
        calls = []
        for b in blocks:
            kind = b.get("type")
            if kind == "text":
                msg["content"] += str(b.get("text", ""))
            elif kind == "thinking":
                msg["reasoning_content"] = str(b.get("thinking", ""))
            elif kind == "redacted_thinking":
                continue
            elif kind == "tool_use":
                if not isinstance(b.get("name"), str) or not isinstance(b.get("input", {}), dict):
                    raise ApiError(400, f"{where}: a tool_use block needs a name and an object input")
                calls.append(
                    {
                        "id": str(b.get("id", "")),
                        "type": "function",
                        "function": {"name": b["name"], "arguments": b.get("input", {})},
                    }
                )
            else:
                raise ApiError(400, f"{where}: content block type {kind!r} is not supported in an assistant turn")
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ApiError(400, "tools must be a list")
    converted = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or "input_schema" not in t:
            raise ApiError(400, f"tools.{i}: a tool needs name and input_schema (server tools are not supported)")
        f = {"name": t.get("name"), "description": t.get("description", ""), "parameters": t["input_schema"]}
        converted.append({"type": "function", "function": f})
    try:
        return check_tools(converted)
    except ApiError as e:
        raise ApiError(400, e.message.replace("function.parameters", "input_schema")) from None


def _thinking(body: dict[str, Any]) -> bool:
    t = body.get("thinking")
    if t is None:
        return False
    if not isinstance(t, dict) or t.get("type") not in ("enabled", "disabled", "adaptive"):
        raise ApiError(400, "thinking must be {'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}")
    return t["type"] != "disabled"


def _usage(done: DoneEvent) -> dict[str, Any]:
    return {
        "input_tokens": done.prompt_tokens - done.cached_tokens,
        "output_tokens": done.generated_tokens,
        "cache_read_input_tokens": done.cached_tokens,
        "cache_creation_input_tokens": 0,
    }


def _stop_reason(done: DoneEvent, turn: TurnText, calls: list[Any]) -> str:
    if calls:
        return "tool_use"
    if turn.stopped:
        return "stop_sequence"
    return "max_tokens" if done.reason == "length" else "end_turn"


def _tool_uses(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "tool_use", "id": new_id("toolu_"), "name": c["function"]["name"], "input": call_arguments(c)}
        for c in calls
    ]


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data}, ensure_ascii=False)}\n\n"


async def messages(ctx: Ctx) -> Any:
    b = ctx.body
    model = ctx.model(b.get("model"))
    if b.get("max_tokens") is None:
        raise ApiError(400, "max_tokens: field required", param="max_tokens")
    max_new = ctx.max_tokens(b.get("max_tokens"))
    conv = check_messages(_to_openai(b))
    tools = _tools(b.get("tools"))
    if isinstance(b.get("tool_choice"), dict) and b["tool_choice"].get("type") == "none":
        tools = []
    thinking = _thinking(b)
    job = ctx.job(
        encode_chat(ctx, conv, tools, thinking), max_new, ctx.sampling(b.get("temperature"), b.get("top_p"), None)
    )
    turn = TurnText(thinking=thinking, tools=bool(tools), stop=ctx.stop(b.get("stop_sequences"), "stop_sequences"))
    mid = new_id("msg_")
    head = {"id": mid, "type": "message", "role": "assistant", "model": model}
    if not b.get("stream"):
        done = DoneEvent(reason="")
        async for ev in ctx.turn(job, turn, stream=False):
            if isinstance(ev, DoneEvent):
                done = ev
        msg = turn.message(ended_by_eos=done.reason == "stop" and not turn.stopped)
        content: list[dict[str, Any]] = []
        if thinking:
            content.append({"type": "thinking", "thinking": msg["reasoning_content"], "signature": ""})
        if msg["content"] or not msg["tool_calls"]:
            content.append({"type": "text", "text": msg["content"]})
        content += _tool_uses(msg["tool_calls"])
        return {
            **head,
            "content": content,
            "stop_reason": _stop_reason(done, turn, msg["tool_calls"]),
            "stop_sequence": turn.stop_hit,
            "usage": _usage(done),
        }

    async def events() -> AsyncIterator[str]:
        n_prompt = len(job.tokens)
        start = {**head, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = {"input_tokens": n_prompt, "output_tokens": 0}
        yield _event("message_start", {"message": start})
        index, open_kind = -1, ""
        done = DoneEvent(reason="")

        def open_block(kind: str) -> list[str]:
            nonlocal index, open_kind
            out = [_event("content_block_stop", {"index": index})] if open_kind else []
            index, open_kind = index + 1, kind
            block = (
                {"type": "thinking", "thinking": "", "signature": ""}
                if kind == "thinking"
                else {"type": kind, "text": ""}
            )
            return [*out, _event("content_block_start", {"index": index, "content_block": block})]

        try:
            async for ev in ctx.turn(job, turn, stream=True):
                if isinstance(ev, DoneEvent):
                    done = ev
                elif isinstance(ev, tuple):
                    kind = "thinking" if ev[0] == "reasoning" else "text"
                    if kind != open_kind:
                        for e in open_block(kind):
                            yield e
                    delta = (
                        {"type": "thinking_delta", "thinking": ev[1]}
                        if kind == "thinking"
                        else {"type": "text_delta", "text": ev[1]}
                    )
                    yield _event("content_block_delta", {"index": index, "delta": delta})
        except ApiError as e:
            yield _event("error", {"error": {"type": e.kind, "message": e.message}})
            return
        finally:
            job.cancel()
        msg = turn.message(ended_by_eos=done.reason == "stop" and not turn.stopped)
        if not msg["parsed"] and msg["content"] != turn.sent["content"]:
            if open_kind != "text":
                for e in open_block("text"):
                    yield e
            rest = msg["content"][len(turn.sent["content"]) :]
            yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": rest}})
        if open_kind == "thinking":
            yield _event("content_block_delta", {"index": index, "delta": {"type": "signature_delta", "signature": ""}})
        if open_kind:
            yield _event("content_block_stop", {"index": index})
        for use in _tool_uses(msg["tool_calls"]):
            index += 1
            yield _event("content_block_start", {"index": index, "content_block": {**use, "input": {}}})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(use["input"], ensure_ascii=False)}
            yield _event("content_block_delta", {"index": index, "delta": delta})
            yield _event("content_block_stop", {"index": index})
        delta = {"stop_reason": _stop_reason(done, turn, msg["tool_calls"]), "stop_sequence": turn.stop_hit}
        yield _event("message_delta", {"delta": delta, "usage": _usage(done)})
        yield _event("message_stop", {})

    return sse(events())


async def count_tokens(ctx: Ctx) -> dict[str, Any]:
    b = ctx.body
    ctx.model(b.get("model"))
    tokens = encode_chat(ctx, check_messages(_to_openai(b)), _tools(b.get("tools")), _thinking(b))
    return {"input_tokens": len(tokens)}


ROUTES = [
    ("anthropic", "POST", "/v1/messages", messages),
    ("anthropic", "POST", "/v1/messages/count_tokens", count_tokens),
]
