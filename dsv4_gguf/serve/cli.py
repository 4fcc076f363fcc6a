"""``dsv4-gguf serve MODEL.gguf``: argparse wiring, then the engine, the app and uvicorn.

Binds 127.0.0.1 unless told otherwise; a missing ``serve`` extra is one line naming it (exit 1).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..constants import MAX_CTX

__all__ = ["add_serve_arguments", "run_serve"]

KV_DTYPES = ("f32", "bf16", "fp8")


def _positive(lo: int, need: str) -> Callable[[str], int]:
    """argparse type: an integer >= ``lo``; argparse names the option in the message."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{need}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{need}, got {text!r}")
        return v

    return parse


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.gguf", help="deepseek4 GGUF to serve (first shard of a split set)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_positive(0, "must be a port number"), default=8080, help="port (default 8080)")
    p.add_argument("--name", default=None, help="model name clients send and see (default: the file name stem)")
    p.add_argument(
        "--parallel",
        type=_positive(1, "must be a slot count of at least 1"),
        default=1,
        help="sessions served at once, interleaved token by token; more requests wait (default 1)",
    )
    p.add_argument(
        "-c",
        "--ctx",
        type=_positive(1, f"must be a context length in tokens, 1 to {MAX_CTX}"),
        default=8192,
        help="context length of each slot, prompt and output together (default 8192)",
    )
    p.add_argument("--kv-dtype", choices=KV_DTYPES, default="f32", help="KV cache storage type (default f32)")
    p.add_argument(
        "-t", "--threads", type=_positive(0, "must be a thread count"), default=0, help="CPU threads (0 = all)"
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N")
    p.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY or x-api-key: KEY)")
    p.add_argument(
        "-n",
        "--max-tokens",
        type=_positive(1, "must be a token count of at least 1"),
        default=4096,
        help="largest max_tokens a request may ask for, and the default where an API has none (default 4096)",
    )
    p.add_argument(
        "--max-body",
        type=_positive(1, "must be a byte count"),
        default=8 << 20,
        help="largest request body in bytes (default 8388608)",
    )
    p.add_argument(
        "--cache-states",
        type=_positive(0, "must be a count (0 or more)"),
        default=8,
        help="prompt-cache state files kept besides each slot's own state (default 8; 0 = slot states only)",
    )


def run_serve(ns: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        print("dsv4-gguf serve: error: needs the 'serve' extra: pip install 'dsv4-gguf[serve]'", file=sys.stderr)
        return 1
    if ns.ctx > MAX_CTX:
        print(f"dsv4-gguf serve: error: --ctx must be at most {MAX_CTX}, got {ns.ctx}", file=sys.stderr)
        return 2
    from .. import runtime
    from .app import Settings, build_app
    from .engine import Engine

    model = runtime.load(ns.model, threads=ns.threads, device=ns.device)
    engine = Engine(model, parallel=ns.parallel, ctx=ns.ctx, kv_dtype=ns.kv_dtype, cache_snapshots=ns.cache_states)
    settings = Settings(
        model_name=ns.name or Path(ns.model).stem,
        api_key=ns.api_key,
        max_body=ns.max_body,
        max_tokens=ns.max_tokens,
        verbose_errors=bool(getattr(ns, "debug", False)),
    )
    if ns.host not in ("127.0.0.1", "localhost", "::1") and not ns.api_key:
        print(
            f"dsv4-gguf serve: warning: --host {ns.host} without --api-key: anyone who reaches this address "
            "can use the model; add --api-key KEY",
            file=sys.stderr,
        )
    print(
        f"dsv4-gguf serve: {settings.model_name} on http://{ns.host}:{ns.port} ({ns.parallel} slot(s) of "
        f"{ns.ctx} tokens, KV {ns.kv_dtype}{', API key required' if ns.api_key else ''})",
        file=sys.stderr,
    )
    uvicorn.run(build_app(engine, settings), host=ns.host, port=ns.port, log_level="warning")
    return 0
