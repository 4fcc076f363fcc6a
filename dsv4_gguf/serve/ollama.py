"""Ollama-compatible endpoints, what Ollama's own clients and Open WebUI call: ``/api/chat`` and
``/api/generate`` (NDJSON streaming by default, ``think``, ``raw``, tool calls), ``/api/tags``, ``/api/show``,
``/api/ps``, ``/api/version``.

Model management (pull, create, delete, copy, embeddings) is not served: this server runs one GGUF.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from .common import ApiError, Ctx, call_arguments, check_messages, check_tools, encode_chat, ndjson
from .engine import DoneEvent, Job
from .text import TurnText

__all__ = ["ROUTES"]

_THINK = {False: False, True: True, "low": True, "medium": True, "high": True, "max": True}


@functools.lru_cache(maxsize=4)
def _details(path: Path) -> dict[str, Any]:
    """Size, digest and the Ollama ``details`` block of the served GGUF (header read once)."""
    from ..ollama.model import human_count, inspect_gguf

    info = inspect_gguf(path)
    st = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}:{info.size}:{st.st_mtime_ns}".encode()).hexdigest()
    modified = datetime.fromtimestamp(st.st_mtime, tz=timezone.utc).isoformat()
    return {
        "size": info.size,
        "digest": digest,
        "modified_at": modified,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "deepseek4",
            "families": ["deepseek4"],
            "parameter_size": human_count(info.n_params),
            "quantization_level": info.file_type,
        },
    }


def _name(ctx: Ctx) -> str:
    n = ctx.settings.model_name
    return n if ":" in n else f"{n}:latest"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _options(ctx: Ctx, body: dict[str, Any]) -> tuple[Any, int, list[str]]:
    opts = body.get("options") or {}
    if not isinstance(opts, dict):
        raise ApiError(400, "options must be an object")
    n = opts.get("num_predict")
    if isinstance(n, int) and not isinstance(n, bool) and n < 0:  # -1 infinite, -2 fill the context
        n = None
    sampling = ctx.sampling(opts.get("temperature"), opts.get("top_p"), opts.get("seed"))
    return sampling, ctx.max_tokens(n, "options.num_predict"), ctx.stop(opts.get("stop"), "options.stop")


def _think(body: dict[str, Any]) -> bool:
    think = body.get("think", False)
    if think is None:
        return False
    if not isinstance(think, (bool, str)) or think not in _THINK:
        raise ApiError(400, f"think must be true, false, 'low', 'medium', 'high' or 'max', got {think!r}")
    return _THINK[think]


def _no_format(body: dict[str, Any]) -> None:
    if body.get("format"):
        raise ApiError(400, "format (JSON / schema output) is not supported yet (no constrained output)")


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, m in enumerate(messages):
            if isinstance(m, dict) and m.get("images"):
                raise ApiError(400, f"messages[{i}]: images are not supported (text-only model)")
            if isinstance(m, dict) and isinstance(m.get("thinking"), str):
                m["reasoning_content"] = m["thinking"]
    return check_messages(messages)


def _final(ctx: Ctx, done: DoneEvent, t_start: float) -> dict[str, Any]:
    return {
        "model": _name(ctx),
        "created_at": _now(),
        "done": True,
        "done_reason": "length" if done.reason == "length" else "stop",
        "total_duration": int((time.perf_counter() - t_start) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": done.prompt_tokens,
        "prompt_eval_duration": int(done.prefill_s * 1e9),
        "eval_count": done.generated_tokens,
        "eval_duration": int(done.decode_s * 1e9),
    }


def _ollama_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"function": {"name": c["function"]["name"], "arguments": call_arguments(c)}} for c in calls]


async def _respond(ctx: Ctx, job: Job, turn: TurnText, stream: bool, kind: str, extra: dict[str, Any]) -> Any:
    """``kind`` "chat" (``message``) or "generate" (``response`` / ``thinking``)."""
    t_start = time.perf_counter()
    name = _name(ctx)

    def piece(channel: str, text: str) -> dict[str, Any]:
        if kind == "chat":
            key = "thinking" if channel == "reasoning" else "content"
            msg = {"role": "assistant", "content": "", key: text}
            return {"model": name, "created_at": _now(), "message": msg, "done": False}
        key = "thinking" if channel == "reasoning" else "response"
        return {"model": name, "created_at": _now(), "response": "", key: text, "done": False}

    def last(done: DoneEvent) -> dict[str, Any]:
        msg = turn.message(ended_by_eos=done.reason == "stop" and not turn.stopped)
        out = _final(ctx, done, t_start)
        if kind == "chat":
            m: dict[str, Any] = {"role": "assistant", "content": "" if stream else msg["content"]}
            if not stream and turn.thinking:
                m["thinking"] = msg["reasoning_content"]
            if stream and not msg["parsed"] and msg["content"] != turn.sent["content"]:
                m["content"] = msg["content"][len(turn.sent["content"]) :]
            if msg["tool_calls"]:
                m["tool_calls"] = _ollama_calls(msg["tool_calls"])
            out["message"] = m
        else:
            out["response"] = "" if stream else msg["content"]
            if not stream and turn.thinking:
                out["thinking"] = msg["reasoning_content"]
            out["context"] = job.tokens + extra.get("generated", [])
        return out

    if not stream:
        done = DoneEvent(reason="")
        async for ev in ctx.turn(job, turn, stream=False):
            if isinstance(ev, DoneEvent):
                done = ev
            elif not isinstance(ev, tuple) and ev.token not in job.stop_ids and not turn.stopped:
                extra.setdefault("generated", []).append(ev.token)
        return last(done)

    async def lines() -> AsyncIterator[str]:
        try:
            async for ev in ctx.turn(job, turn, stream=True):
                if isinstance(ev, tuple):
                    yield json.dumps(piece(*ev), ensure_ascii=False) + "\n"
                elif isinstance(ev, DoneEvent):
                    yield json.dumps(last(ev), ensure_ascii=False) + "\n"
                elif ev.token not in job.stop_ids and not turn.stopped:
                    extra.setdefault("generated", []).append(ev.token)
        except ApiError as e:
            yield json.dumps({"error": e.message}) + "\n"
        finally:
            job.cancel()

    return ndjson(lines())


async def chat(ctx: Ctx) -> Any:
    b = ctx.body
    ctx.model(b.get("model"))
    _no_format(b)
    messages = _messages(b)
    tools = check_tools(b.get("tools"))
    thinking = _think(b)
    sampling, max_new, stop = _options(ctx, b)
    job = ctx.job(encode_chat(ctx, messages, tools, thinking), max_new, sampling)
    turn = TurnText(thinking=thinking, tools=bool(tools), stop=stop)
    return await _respond(ctx, job, turn, b.get("stream", True) is not False, "chat", {})


async def generate(ctx: Ctx) -> Any:
    b = ctx.body
    ctx.model(b.get("model"))
    _no_format(b)
    prompt = b.get("prompt", "")
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    if b.get("images"):
        raise ApiError(400, "images are not supported (text-only model)")
    if not prompt:  # Ollama answers an empty prompt by loading the model
        return {"model": _name(ctx), "created_at": _now(), "response": "", "done": True, "done_reason": "load"}
    raw = bool(b.get("raw"))
    thinking = False if raw else _think(b)
    sampling, max_new, stop = _options(ctx, b)
    if raw:
        tokens = ctx.prompt_tokens(prompt)
    else:
        system = b.get("system")
        if system is not None and not isinstance(system, str):
            raise ApiError(400, "system must be a string")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        tokens = encode_chat(ctx, messages, [], thinking)
    job = ctx.job(tokens, max_new, sampling)
    turn = TurnText(thinking=thinking, stop=stop)
    return await _respond(ctx, job, turn, b.get("stream", True) is not False, "generate", {})


def _entry(ctx: Ctx) -> dict[str, Any]:
    d = _details(ctx.engine.model.path)
    return {"name": _name(ctx), "model": _name(ctx), **d}


async def tags(ctx: Ctx) -> dict[str, Any]:
    return {"models": [_entry(ctx)]}


async def show(ctx: Ctx) -> dict[str, Any]:
    b = ctx.body
    ctx.model(b.get("model", b.get("name")))
    from ..templates import ollama_template

    d = _details(ctx.engine.model.path)
    cfg = ctx.engine.model.config
    info: dict[str, Any] = {"general.architecture": "deepseek4"}
    info.update({f"deepseek4.{k}": v for k, v in cfg.items() if isinstance(v, (int, float, str)) and k != "file_bytes"})
    info["deepseek4.context_length"] = ctx.engine.ctx  # what this server holds per slot
    return {
        "modelfile": f"FROM {ctx.engine.model.path}\n",
        "parameters": "",
        "template": ollama_template(),
        "details": d["details"],
        "model_info": info,
        "capabilities": ["completion", "tools", "thinking"],
        "modified_at": d["modified_at"],
    }


async def ps(ctx: Ctx) -> dict[str, Any]:
    entry = _entry(ctx)
    entry.pop("modified_at")
    return {
        "models": [{**entry, "expires_at": "2262-01-01T00:00:00Z", "size_vram": 0, "context_length": ctx.engine.ctx}]
    }


async def version(ctx: Ctx) -> dict[str, Any]:
    return {"version": __version__}


ROUTES = [
    ("ollama", "POST", "/api/chat", chat),
    ("ollama", "POST", "/api/generate", generate),
    ("ollama", "GET", "/api/tags", tags),
    ("ollama", "POST", "/api/show", show),
    ("ollama", "GET", "/api/ps", ps),
    ("ollama", "GET", "/api/version", version),
]
