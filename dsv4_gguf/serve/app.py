"""The Starlette app of ``dsv4-gguf serve``: routes of the three API shapes, API-key check, body-size limit,
and each API's own error shape (a bad request is a 4xx JSON error, never a crash).

The request/response mapping of each API is in ``openai.py``, ``ollama.py`` and ``anthropic.py``; what they
share (parameter checks, prompt encoding, running a job) in ``common.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import anthropic, ollama, openai
from .common import ApiError, Ctx, Handler, Settings
from .engine import Engine

__all__ = ["Settings", "build_app"]


def error_body(api: str, e: ApiError) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": e.kind, "message": e.message}}
    if api == "ollama":
        return {"error": e.message}
    return {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.status}}


_KINDS = {401: "authentication_error", 404: "not_found_error", 413: "request_too_large"}


def _authorized(request: Request, key: str) -> bool:
    given = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = given or auth[7:].strip()
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes, more than the limit of {limit} (--max-body)")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"the request body is over the limit of {limit} bytes (--max-body)")
    if not data:
        return {}
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def endpoint(
    api: str, handler: Handler, engine: Engine, settings: Settings
) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            if settings.api_key and not _authorized(request, settings.api_key):
                raise ApiError(
                    401,
                    "invalid or missing API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')",
                    "authentication_error",
                )
            body = await _read_json(request, settings.max_body) if request.method == "POST" else {}
            out = await handler(Ctx(engine, settings, request, body))
            return out if isinstance(out, Response) else JSONResponse(out)
        except ApiError as e:
            if api in ("openai", "anthropic") and e.kind == "invalid_request_error" and e.status in _KINDS:
                e.kind = _KINDS[e.status]
            return JSONResponse(error_body(api, e), status_code=e.status)
        except Exception as e:  # noqa: BLE001 - a bug answers 500 in the API's shape; the server keeps serving
            if settings.verbose_errors:
                traceback.print_exc()
            err = ApiError(500, f"internal error: {type(e).__name__}: {e}", "api_error")
            return JSONResponse(error_body(api, err), status_code=500)

    return run


def stats(ctx: Ctx) -> dict[str, Any]:
    e = ctx.engine
    return {
        **vars(e.stats),
        "slots": len(e.slots),
        "busy_slots": e.busy_slots(),
        "queued": e.queued(),
        "ctx": e.ctx,
    }


def build_app(engine: Engine, settings: Settings) -> Starlette:
    """The ASGI app; its lifespan starts the engine's worker thread and stops it at shutdown."""
    routes: list[Route] = []
    table: Sequence[tuple[str, str, str, Handler]] = [
        *openai.ROUTES,
        *ollama.ROUTES,
        *anthropic.ROUTES,
    ]
    for api, method, path, handler in table:
        routes.append(Route(path, endpoint(api, handler, engine, settings), methods=[method]))

    async def _stats(ctx: Ctx) -> dict[str, Any]:
        return stats(ctx)

    routes.append(Route("/stats", endpoint("openai", _stats, engine, settings), methods=["GET"]))
    routes.append(Route("/health", lambda request: JSONResponse({"status": "ok"}), methods=["GET"]))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine.start()
        app.state.started = time.time()
        try:
            yield
        finally:
            await asyncio.to_thread(engine.close)

    return Starlette(routes=routes, lifespan=lifespan)
