"""Fixtures for the chat tests: the official encoder (oracle), the corpus, and Go's text/template."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dsv4_gguf.templates import ollama_template

HERE = Path(__file__).parent


def _load(name: str):
    # --import-mode=importlib puts no test folder on sys.path; siblings are loaded by path.
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"dsv4_chat_tests_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CORPUS = _load("corpus")


@pytest.fixture(scope="session")
def corpus():
    return CORPUS


@pytest.fixture(scope="session")
def oracle():
    return _load("oracle").load_oracle()


def pytest_generate_tests(metafunc):
    if "conv" in metafunc.fixturenames:
        convs = CORPUS.CONVERSATIONS
        metafunc.parametrize("conv", convs, ids=[c["id"] for c in convs])
    if "mode" in metafunc.fixturenames:
        metafunc.parametrize("mode", list(CORPUS.MODES))


@pytest.fixture(scope="session")
def go_render(tmp_path_factory):
    """Renders a Go template over Ollama-shaped cases with tests/chat/gocheck (built once per session)."""
    import go

    goroot = Path(go.__file__).parent
    env = {**os.environ, "GOROOT": str(goroot), "GOTOOLCHAIN": "local", "GOPROXY": "off", "CGO_ENABLED": "0"}
    exe = tmp_path_factory.mktemp("gocheck") / "gocheck"
    if not (env.get("GOCACHE") or env.get("XDG_CACHE_HOME") or env.get("HOME")):
        env["GOCACHE"] = str(exe.parent / "gocache")  # CI sandboxes without a home directory
    subprocess.run(
        [str(goroot / "bin" / "go"), "build", "-o", str(exe), "main.go"],
        cwd=HERE / "gocheck",
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )

    def render(template: str, cases: list[dict]) -> list[dict]:
        proc = subprocess.run(
            [str(exe)],
            input=json.dumps({"template": template, "cases": cases}),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return render


@pytest.fixture(scope="session")
def go_template() -> str:
    return ollama_template()
