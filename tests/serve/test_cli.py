"""``dsv4-gguf serve``: the real command serves on 127.0.0.1 (a subprocess); without the ``serve`` extra the
package and the other commands still work and ``serve`` says in one line what to install."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from dsv4_gguf.cli import main


def test_serve_command_end_to_end(serve_gguf):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "dsv4_gguf.cli", "serve", str(serve_gguf), "--port", str(port), "--ctx", "512"]
    proc = subprocess.Popen([*cmd, "--api-key", "k", "-t", "1"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "dsv4-gguf serve did not come up"
            time.sleep(0.1)
        h = {"Authorization": "Bearer k"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=h).json()["data"][0]["id"] == serve_gguf.stem
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and f"on http://127.0.0.1:{port}" in err


def test_without_the_extra(serve_gguf, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "starlette", None)  # import starlette -> ImportError
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve", str(serve_gguf)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dsv4-gguf serve: error: needs the 'serve' extra: pip install 'dsv4-gguf[serve]'"]


def test_package_imports_without_starlette():
    code = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
        "import dsv4_gguf, dsv4_gguf.serve, dsv4_gguf.serve.cli\n"
        "from dsv4_gguf.cli import main\n"
        "assert main(['build-info']) == 0\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, timeout=60)
    assert r.returncode == 0, r.stderr
