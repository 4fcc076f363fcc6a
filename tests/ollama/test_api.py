"""Must-show 3 (API): `--api` against a loopback stub of Ollama's HTTP API (bound to 127.0.0.1 only) that
checks what Ollama expects: HEAD/POST /api/blobs/sha256:<hex> with the digest of the body, then
POST /api/create referencing only uploaded blobs."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dsv4_gguf import chat, ollama
from dsv4_gguf.ollama import OllamaExportError
from dsv4_gguf.ollama import api as ollama_api
from dsv4_gguf.ollama import cli as ollama_cli
from dsv4_gguf.templates import ollama_template


class Stub:
    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.models: dict[str, dict] = {}
        self.log: list[tuple[str, str]] = []
        self.fail_create: str | None = None


def _handler(stub: Stub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _reply(self, status, obj=None):
            body = b"" if obj is None else (json.dumps(obj) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            return self.rfile.read(int(self.headers["Content-Length"]))

        def do_GET(self):
            stub.log.append(("GET", self.path))
            if self.path == "/api/version":
                return self._reply(200, {"version": "0.12.0"})
            return self._reply(404, {"error": "no route"})

        def do_HEAD(self):
            stub.log.append(("HEAD", self.path))
            digest = self.path.removeprefix("/api/blobs/")
            self._reply(200 if digest in stub.blobs else 404)

        def do_POST(self):
            stub.log.append(("POST", self.path))
            body = self._body()
            if self.path.startswith("/api/blobs/"):
                digest = self.path.removeprefix("/api/blobs/")
                if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                    return self._reply(400, {"error": "digest mismatch"})
                stub.blobs[digest] = body
                return self._reply(201)
            req = json.loads(body)
            if self.path == "/api/show":
                return self._reply(200 if req["model"] in stub.models else 404, {"error": "not found"})
            if self.path == "/api/create":
                if stub.fail_create:
                    return self._reply(400, {"error": stub.fail_create})
                missing = [d for d in req["files"].values() if d not in stub.blobs]
                if missing:
                    return self._reply(400, {"error": f"blob {missing} not found"})
                stub.models[req["model"]] = req
                return self._reply(200, {"status": "success"})
            return self._reply(404, {"error": "no route"})

    return Handler


@pytest.fixture
def server():
    stub = Stub()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    assert httpd.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def test_api_create(server, tiny_gguf):
    stub, url = server
    request = ollama.install_via_api(tiny_gguf, "dsv4-api:q8", url, num_ctx=8192)
    digest = "sha256:" + hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert stub.blobs == {digest: tiny_gguf.read_bytes()}
    assert stub.log == [
        ("POST", "/api/show"),
        ("HEAD", f"/api/blobs/{digest}"),
        ("POST", f"/api/blobs/{digest}"),
        ("POST", "/api/create"),
    ]
    created = stub.models["dsv4-api:q8"]
    assert created == request
    assert created["files"] == {"tiny.gguf": digest}
    assert created["template"] == ollama_template()
    assert created["parameters"] == {"temperature": 1.0, "top_p": 1.0, "stop": [chat.EOS], "num_ctx": 8192}
    assert created["license"].startswith("MIT License")
    assert created["stream"] is False


def test_api_skips_uploaded_blobs_and_refuses_existing(server, tiny_gguf):
    stub, url = server
    ollama.install_via_api(tiny_gguf, "m", url)
    stub.log.clear()
    with pytest.raises(OllamaExportError, match="already exists on the server; pass --force"):
        ollama.install_via_api(tiny_gguf, "m", url)
    assert stub.log == [("POST", "/api/show")]
    ollama.install_via_api(tiny_gguf, "m", url, force=True)
    digest = next(iter(stub.blobs))
    # The blob is already on the server: HEAD finds it and it is not sent again.
    assert stub.log == [
        ("POST", "/api/show"),
        ("POST", "/api/show"),
        ("HEAD", f"/api/blobs/{digest}"),
        ("POST", "/api/create"),
    ]


def test_api_split_uploads_every_shard(server, split_gguf):
    stub, url = server
    request = ollama.install_via_api(split_gguf[0], "split", url)
    assert sorted(request["files"]) == [p.name for p in split_gguf]
    for shard in split_gguf:
        assert stub.blobs[request["files"][shard.name]] == shard.read_bytes()


def test_api_errors(server, tiny_gguf, llama_gguf, tmp_path):
    stub, url = server
    stub.fail_create = "unsupported architecture"
    with pytest.raises(OllamaExportError, match="Ollama answered 400: unsupported architecture"):
        ollama.install_via_api(tiny_gguf, "m", url)
    with pytest.raises(OllamaExportError, match="expected 'deepseek4'"):
        ollama.install_via_api(llama_gguf, "m", url)
    with pytest.raises(OllamaExportError, match="invalid model name"):
        ollama.install_via_api(tiny_gguf, "a/b", url)
    with pytest.raises(OllamaExportError, match="expected an http"):
        ollama.install_via_api(tiny_gguf, "m", "ftp://127.0.0.1:1")


def test_api_unreachable(tiny_gguf):
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OllamaExportError, match="cannot reach the Ollama server"):
        ollama.install_via_api(tiny_gguf, "m", f"http://127.0.0.1:{port}")


def test_cli_api(server, tiny_gguf, tmp_path):
    stub, url = server
    argv = [str(tiny_gguf), "--name", "viacli", "--api", url, "--modelfile", str(tmp_path / "Modelfile")]
    assert ollama.ollama_main(argv) == 0
    assert "viacli:latest" in stub.models
    assert stub.log[0] == ("GET", "/api/version")  # the server is checked first


def test_cli_api_checks_the_server_before_reading_the_gguf(tiny_gguf, tmp_path, capsys, monkeypatch):
    """Nobody listens on the discard port: one line naming the URL, exit 1, the GGUF never parsed and no
    Modelfile written."""
    from dsv4_gguf.cli import main

    def parsed(path):
        raise AssertionError(f"{path} was parsed before the server was checked")

    monkeypatch.setattr(ollama_cli, "inspect_gguf", parsed)  # the CLI parses the GGUF itself
    monkeypatch.setattr(ollama_api, "inspect_gguf", parsed)  # install_via_api without info= parses it
    url = "http://127.0.0.1:9"
    argv = ["ollama", str(tiny_gguf), "--name", "m", "--api", url, "--modelfile", str(tmp_path / "Modelfile")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dsv4-gguf ollama: error: {url}: cannot reach the Ollama server"), err
    assert not (tmp_path / "Modelfile").exists()
    with pytest.raises(OllamaExportError, match="cannot reach the Ollama server"):  # the library call: the same
        ollama.install_via_api(tiny_gguf, "m", url)


def test_cli_api_refuses_a_server_that_is_not_ollama(server, tiny_gguf, tmp_path, capsys, monkeypatch):
    stub, url = server
    monkeypatch.setattr(ollama_cli, "inspect_gguf", lambda path: pytest.fail("parsed before the server was checked"))
    stub_get = url + "/nothing-here"  # GET /nothing-here/api/version answers 404
    assert ollama.ollama_main([str(tiny_gguf), "--name", "m", "--api", stub_get]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{stub_get}: answered 404 to GET /api/version" in err[0], err
