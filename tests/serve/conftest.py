"""Fixtures of the server tests: the small model (tests/support/small_model.py: converter-made GGUF, tiny
layout with a 1,024-token vocabulary), a server on 127.0.0.1 per module (tests/support/serving.py), and the
in-process runtime the responses are checked against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import small_model

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from support.serving import Server, start_server  # noqa: E402

from dsv4_gguf import runtime  # noqa: E402


@pytest.fixture(scope="session")
def serve_gguf(tmp_path_factory):
    models = small_model.SmallModels(tmp_path_factory.mktemp("serve_small"), small_model.small_args(), seed=0)
    return models.gguf("MXFP4_MOE")


@pytest.fixture(scope="session")
def ref_model(serve_gguf):
    """The in-process runtime the server's answers are compared with (its own Model, its own sessions)."""
    return runtime.load(serve_gguf, threads=1)


@pytest.fixture(scope="module")
def server(serve_gguf) -> Iterator[Server]:
    srv = start_server(serve_gguf)
    yield srv
    srv.stop()
