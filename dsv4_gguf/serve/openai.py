"""OpenAI-compatible endpoints: ``/v1/chat/completions`` (SSE streaming, DSML tool calls as ``tool_calls``,
thinking as ``reasoning_content``), ``/v1/completions`` (``logprobs``/``echo`` and vLLM's ``prompt_logprobs``,
for scoring harnesses), ``/v1/models``, and llama-server's ``/tokenize`` / ``/detokenize``.

Not here yet: ``n`` > 1, streamed chat ``logprobs``, ``response_format`` / constrained output, images.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from .common import ApiError, Ctx, check_messages, check_tools, encode_chat, sse, usage_of
from .engine import DoneEvent, TokenEvent
from .text import TurnText, new_id

__all__ = ["ROUTES", "EFFORTS", "MAX_FULL_ROWS_ENTRIES"]

# prompt_logprobs=-1 entries (prompt tokens x vocabulary) one response may carry: each is a JSON object of ~60
# bytes and a Python tuple while it is built, so 2^20 keeps one answer under ~100 MB
MAX_FULL_ROWS_ENTRIES = 1 << 20

# reasoning_effort -> (thinking, DSV4 effort): Non-think, Think High, Think Max
EFFORTS: dict[str, tuple[bool, str | None]] = {
    "none": (False, None),
    "minimal": (False, None),
    "low": (True, None),
    "medium": (True, None),
    "high": (True, None),
    "max": (True, "max"),
    "xhigh": (True, "max"),
}


def _finish(reason: str, calls: list[Any]) -> str:
    return "tool_calls" if calls else "length" if reason == "length" else "stop"


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def _token_logprob(ctx: Ctx, ev: TokenEvent) -> dict[str, Any]:
    dec = ctx.engine.model.decode_tokens

    def entry(tok: int, lp: float) -> dict[str, Any]:
        text = dec([tok])
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8", "surrogatepass"))}

    assert ev.logprob is not None
    return {**entry(ev.token, ev.logprob), "top_logprobs": [entry(t, lp) for t, lp in ev.top or []]}


async def chat_completions(ctx: Ctx) -> Any:
    b = ctx.body
    model = ctx.model(b.get("model"))
    messages = check_messages(b.get("messages"))
    tools = check_tools(b.get("tools"))
    if b.get("tool_choice") == "none":
        tools = []
    effort = b.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        raise ApiError(
            400, f"reasoning_effort must be one of {', '.join(EFFORTS)}, got {effort!r}", param="reasoning_effort"
        )
    thinking, dsv4_effort = EFFORTS[effort] if effort is not None else (False, None)
    ctx.integer(b.get("n"), "n", 1, 1, 1)  # one choice per request
    fmt = b.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        raise ApiError(400, "response_format other than 'text' is not supported yet (no constrained output)")
    stream = bool(b.get("stream"))
    want_lp = bool(b.get("logprobs"))
    n_top = ctx.integer(b.get("top_logprobs"), "top_logprobs", 0, 20, 0) if want_lp else None
    if want_lp and stream:
        raise ApiError(400, "logprobs are not supported with stream yet", param="logprobs")
    max_new = b.get("max_completion_tokens", b.get("max_tokens"))
    job = ctx.job(
        encode_chat(ctx, messages, tools, thinking, dsv4_effort),
        ctx.max_tokens(max_new),
        ctx.sampling(b.get("temperature"), b.get("top_p"), b.get("seed")),
        logprobs=n_top,
    )
    turn = TurnText(thinking=thinking, tools=bool(tools), stop=ctx.stop(b.get("stop")))
    cid, created = new_id("chatcmpl-"), int(time.time())
    if not stream:
        done = DoneEvent(reason="")
        lps: list[dict[str, Any]] = []
        async for ev in ctx.turn(job, turn, stream=False):
            if isinstance(ev, DoneEvent):
                done = ev
            elif isinstance(ev, TokenEvent) and want_lp:
                lps.append(_token_logprob(ctx, ev))
        msg = turn.message(ended_by_eos=done.reason == "stop" and not turn.stopped)
        out: dict[str, Any] = {"role": "assistant", "content": msg["content"]}
        if thinking:
            out["reasoning_content"] = msg["reasoning_content"]
        if msg["tool_calls"]:
            out["tool_calls"] = msg["tool_calls"]
            out["content"] = msg["content"] or None
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": out,
                    "logprobs": {"content": lps} if want_lp else None,
                    "finish_reason": _finish(done.reason, msg["tool_calls"]),
                }
            ],
            "usage": usage_of(done),
        }
    include_usage = bool((b.get("stream_options") or {}).get("include_usage"))

    async def events() -> AsyncIterator[str]:
        yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
        done = DoneEvent(reason="")
        try:
            async for ev in ctx.turn(job, turn, stream=True):
                if isinstance(ev, DoneEvent):
                    done = ev
                elif isinstance(ev, tuple):
                    key = "reasoning_content" if ev[0] == "reasoning" else "content"
                    yield _chunk(cid, created, model, {key: ev[1]})
        except ApiError as e:
            yield f"data: {json.dumps({'error': {'message': e.message, 'type': e.kind}})}\n\n"
            return
        finally:
            job.cancel()
        msg = turn.message(ended_by_eos=done.reason == "stop" and not turn.stopped)
        if not msg["parsed"] and turn.tools and msg["content"] != turn.sent["content"]:
            yield _chunk(cid, created, model, {"content": msg["content"][len(turn.sent["content"]) :]})
        if msg["tool_calls"]:
            calls = [{"index": i, **c} for i, c in enumerate(msg["tool_calls"])]
            yield _chunk(cid, created, model, {"tool_calls": calls})
        yield _chunk(cid, created, model, {}, _finish(done.reason, msg["tool_calls"]))
        if include_usage:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}
            yield f"data: {json.dumps({**body, 'choices': [], 'usage': usage_of(done)})}\n\n"
        yield "data: [DONE]\n\n"

    return sse(events())


def _prompt_of(ctx: Ctx, prompt: Any) -> list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return ctx.prompt_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        V = ctx.engine.model.vocab_size
        bad = [t for t in prompt if not 0 <= t < V]
        if bad:
            raise ApiError(400, f"prompt token {bad[0]} is outside the vocabulary [0, {V})", param="prompt")
        return ctx.check_length(list(prompt))
    raise ApiError(400, "prompt must be a string, a list of token ids, or a list of one of those", param="prompt")


def _logprobs_block(ctx: Ctx, tokens: list[int], lps: list[float | None], tops: list[Any], offset0: int) -> dict:
    dec = ctx.engine.model.decode_tokens
    texts = [dec([t]) for t in tokens]
    offsets, pos = [], offset0
    for s in texts:
        offsets.append(pos)
        pos += len(s)
    return {
        "tokens": texts,
        "token_logprobs": lps,
        "top_logprobs": [None if top is None else {dec([i]): lp for i, lp in top} for top in tops],
        "text_offset": offsets,
    }


async def completions(ctx: Ctx) -> Any:
    b = ctx.body
    model = ctx.model(b.get("model"))
    tokens = _prompt_of(ctx, b.get("prompt"))
    echo = bool(b.get("echo"))
    n_lp = ctx.integer(b.get("logprobs"), "logprobs", 0, 20, None)
    n_prompt = _prompt_logprobs(ctx, b.get("prompt_logprobs"), len(tokens))  # vLLM's extension
    if b.get("stream") and (echo or n_prompt is not None):
        raise ApiError(400, "echo and prompt_logprobs are not supported with stream", param="echo")
    ctx.integer(b.get("n"), "n", 1, 1, 1)  # one choice per request
    max_new = ctx.max_tokens(b.get("max_tokens", 16), lo=0)
    job = ctx.job(
        tokens,
        max_new,
        ctx.sampling(b.get("temperature"), b.get("top_p"), b.get("seed")),
        logprobs=None if n_lp is None and n_prompt is None else max(n_lp or 0, n_prompt or 0),
        echo_logprobs=(echo and n_lp is not None) or n_prompt is not None,
    )
    turn = TurnText(stop=ctx.stop(b.get("stop")))
    cid, created = new_id("cmpl-"), int(time.time())
    if b.get("stream"):

        async def events() -> AsyncIterator[str]:
            try:
                async for ev in ctx.turn(job, turn, stream=True):
                    if isinstance(ev, tuple):
                        choice = {"index": 0, "text": ev[1], "logprobs": None, "finish_reason": None}
                        yield f"data: {json.dumps({'id': cid, 'object': 'text_completion', 'created': created, 'model': model, 'choices': [choice]})}\n\n"  # noqa: E501
                    elif isinstance(ev, DoneEvent):
                        reason = "length" if ev.reason == "length" else "stop"
                        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": reason}
                        body = {"id": cid, "object": "text_completion", "created": created, "model": model}
                        yield f"data: {json.dumps({**body, 'choices': [choice], 'usage': usage_of(ev)})}\n\n"
            except ApiError as e:
                yield f"data: {json.dumps({'error': {'message': e.message, 'type': e.kind}})}\n\n"
                return
            finally:
                job.cancel()
            yield "data: [DONE]\n\n"

        return sse(events())
    done = DoneEvent(reason="")
    gen: list[TokenEvent] = []
    async for ev in ctx.turn(job, turn, stream=False):
        if isinstance(ev, DoneEvent):
            done = ev
        elif isinstance(ev, TokenEvent) and not turn.stopped:
            gen.append(ev)
    text = turn.raw
    prompt_text = ctx.engine.model.decode_tokens(tokens) if echo else ""
    logprobs = None
    if n_lp is not None:
        gen = [e for e in gen if e.token not in job.stop_ids]
        blocks_t = [e.token for e in gen]
        lps: list[float | None] = [e.logprob for e in gen]
        tops: list[Any] = [e.top for e in gen]
        if echo:
            blocks_t = tokens + blocks_t
            lps = list(done.prompt_logprobs or [None] * len(tokens)) + lps
            tops = list(done.prompt_top or [None] * len(tokens)) + tops
        # the job ranked max(logprobs, prompt_logprobs) alternatives: this block shows `logprobs` of them
        tops = [None if t is None else t[:n_lp] for t in tops]
        logprobs = _logprobs_block(ctx, blocks_t, lps, tops, 0)
    reason = "length" if done.reason == "length" else "stop"
    choice: dict[str, Any] = {"index": 0, "text": prompt_text + text, "logprobs": logprobs, "finish_reason": reason}
    if n_prompt is not None:
        choice["prompt_logprobs"] = _prompt_rows(ctx, tokens, done, n_prompt)
    return {
        "id": cid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage_of(done),
    }


def _prompt_logprobs(ctx: Ctx, value: Any, n_tokens: int) -> int | None:
    """``prompt_logprobs``: 0-100 top alternatives per prompt position, or -1 for the whole vocabulary (vLLM's
    convention; what a scoring harness needs from a candidate).  -1 answers vocabulary x prompt entries, so
    it is refused above MAX_FULL_ROWS_ENTRIES (a 129k vocabulary: prompts of at most 8 tokens)."""
    n = ctx.integer(value, "prompt_logprobs", -1, 100, None)
    if n != -1:
        return n
    V = ctx.engine.model.vocab_size
    if n_tokens * V > MAX_FULL_ROWS_ENTRIES:
        raise ApiError(
            400,
            f"prompt_logprobs=-1 on {n_tokens} tokens would return {n_tokens * V:,} log-probabilities, more than "
            f"this server's limit of {MAX_FULL_ROWS_ENTRIES:,}: send at most {MAX_FULL_ROWS_ENTRIES // V} tokens "
            "per request, or ask for the top 100",
            param="prompt_logprobs",
        )
    return V


def _prompt_rows(ctx: Ctx, tokens: list[int], done: DoneEvent, k: int) -> list[dict[str, Any] | None]:
    """vLLM's ``prompt_logprobs``: entry p maps token id -> ``{"logprob", "rank", "decoded_token"}`` for the
    top-k of the distribution predicting token p, plus token p itself; entry 0 is null."""
    dec = ctx.engine.model.decode_tokens
    texts: dict[int, str] = {}  # a full-vocabulary answer decodes each id once, not once per position

    def text(t: int) -> str:
        if t not in texts:
            texts[t] = dec([t])
        return texts[t]

    rows: list[dict[str, Any] | None] = [None]
    for p in range(1, len(tokens)):
        top = (done.prompt_top or [])[p] or []
        row = {str(t): {"logprob": lp, "rank": r + 1, "decoded_token": text(t)} for r, (t, lp) in enumerate(top[:k])}
        lp_p = (done.prompt_logprobs or [])[p]
        row.setdefault(str(tokens[p]), {"logprob": lp_p, "decoded_token": text(tokens[p])})
        rows.append(row)
    return rows


async def models(ctx: Ctx) -> dict[str, Any]:
    name = ctx.settings.model_name
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "dsv4-gguf"}],
    }


async def tokenize(ctx: Ctx) -> dict[str, Any]:
    content = ctx.body.get("content")
    if not isinstance(content, str):
        raise ApiError(400, "content must be a string", param="content")
    bos = [ctx.engine.model.tokenizer.bos_id] if ctx.body.get("add_special") is True else []
    return {"tokens": bos + ctx.engine.model.encode(content)}


async def detokenize(ctx: Ctx) -> dict[str, Any]:
    tokens = ctx.body.get("tokens")
    V = ctx.engine.model.vocab_size
    if not isinstance(tokens, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) and 0 <= t < V for t in tokens
    ):
        raise ApiError(400, f"tokens must be a list of token ids in [0, {V})", param="tokens")
    return {"content": ctx.engine.model.decode_tokens(tokens)}


ROUTES = [
    ("openai", "POST", "/v1/chat/completions", chat_completions),
    ("openai", "POST", "/v1/completions", completions),
    ("openai", "GET", "/v1/models", models),
    ("openai", "POST", "/tokenize", tokenize),
    ("openai", "POST", "/detokenize", detokenize),
]
