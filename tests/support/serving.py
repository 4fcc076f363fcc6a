"""Helpers of the server tests (tests/serve): a server on 127.0.0.1 (uvicorn in a thread, a free port) and the
in-process runtime answers the server's are compared with."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsv4_gguf import runtime
from dsv4_gguf.chat import encode_messages
from dsv4_gguf.serve.app import Settings, build_app
from dsv4_gguf.serve.engine import Engine

NAME = "small"


@dataclass
class Server:
    url: str
    engine: Engine
    server: Any
    thread: threading.Thread

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_server(gguf, parallel: int = 2, ctx: int = 2048, **settings: Any) -> Server:
    import uvicorn

    model = runtime.load(gguf, threads=1)
    engine = Engine(model, parallel=parallel, ctx=ctx, cache_snapshots=settings.pop("cache_snapshots", 8))
    app = build_app(engine, Settings(model_name=NAME, **settings))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    return Server(f"http://127.0.0.1:{port}", engine, server, thread)


def greedy(model: runtime.Model, tokens: list[int], n: int) -> list[int]:
    """The in-process runtime's greedy tokens after ``tokens`` (EOS included when it comes)."""
    s = model.session(ctx=len(tokens) + n + 1)
    logits = s.prefill(tokens)
    out: list[int] = []
    for _ in range(n):
        t = int(np.argmax(logits))
        out.append(t)
        if t == model.tokenizer.eos_id:
            break
        logits = s.decode(t)
    return out


def chat_tokens(model: runtime.Model, messages: list[dict[str, Any]], **kw: Any) -> list[int]:
    return model.encode(encode_messages(messages, **kw))


def text_of(model: runtime.Model, tokens: list[int]) -> str:
    return model.decode_tokens([t for t in tokens if t != model.tokenizer.eos_id])
