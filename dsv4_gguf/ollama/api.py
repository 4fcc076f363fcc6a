"""Install through a running Ollama server's HTTP API: ``POST /api/blobs`` for every GGUF file, then
``POST /api/create`` (docs/api.md in ollama/ollama)."""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import Any

from ..templates import ollama_template
from .model import DEFAULT_NUM_CTX, LICENSE_MIT, GGUFInfo, OllamaExportError, inspect_gguf, parameters, parse_name
from .store import _sha256_file


def _request(
    base: urllib.parse.SplitResult,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, bytes]:
    conn_cls = http.client.HTTPSConnection if base.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(base.hostname, base.port, timeout=timeout)
    try:
        conn.request(method, base.path.rstrip("/") + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except OSError as exc:
        raise OllamaExportError(
            f"{base.geturl()}: cannot reach the Ollama server ({exc}); is `ollama serve` running?"
        ) from exc
    finally:
        conn.close()


def _api_error(url: str, status: int, body: bytes) -> OllamaExportError:
    try:
        detail = json.loads(body.decode().strip().splitlines()[-1]).get("error", body.decode())
    except (ValueError, IndexError, AttributeError):
        detail = body.decode(errors="replace")
    return OllamaExportError(f"{url}: Ollama answered {status}: {detail}")


def check_server(api: str, timeout: float = 10) -> urllib.parse.SplitResult:
    """The parsed ``--api`` URL once an Ollama server answers GET /api/version there (a cheap request with a
    short timeout): checked before any GGUF is read, so an unreachable server fails in a moment."""
    base = urllib.parse.urlsplit(api)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise OllamaExportError(f"--api {api!r}: expected an http(s) URL such as http://127.0.0.1:11434")
    status, body = _request(base, "GET", "/api/version", timeout=timeout)
    if status != 200:
        raise OllamaExportError(
            f"{api}: answered {status} to GET /api/version, not an Ollama server; check --api (Ollama listens on "
            "http://127.0.0.1:11434 by default)"
        )
    return base


def install_via_api(
    gguf_path: str | os.PathLike[str],
    name: str,
    api: str,
    force: bool = False,
    num_ctx: int | None = None,
    license_text: str = LICENSE_MIT,
    info: GGUFInfo | None = None,
) -> dict[str, Any]:
    """Uploads the GGUF (every shard of a split one) as blobs and asks the server to create `name`.
    ``info``: as for ``install``."""
    model, tag = parse_name(name)
    base = urllib.parse.urlsplit(api)
    if base.scheme not in ("http", "https") or not base.hostname:
        raise OllamaExportError(f"--api {api!r}: expected an http(s) URL such as http://127.0.0.1:11434")
    status, body = _request(  # the server answers (short timeout) before the GGUF is read
        base,
        "POST",
        "/api/show",
        json.dumps({"model": f"{model}:{tag}"}),
        {"Content-Type": "application/json"},
        timeout=10,
    )
    if status == 200 and not force:
        raise OllamaExportError(f"{api}: {model}:{tag} already exists on the server; pass --force to replace it")
    info = info if info is not None else inspect_gguf(gguf_path)
    files = {}
    for path in info.files:
        digest = "sha256:" + _sha256_file(path, f"sha256 {path.name}")
        status, body = _request(base, "HEAD", f"/api/blobs/{digest}")
        if status != 200:
            with open(path, "rb") as f:
                status, body = _request(
                    base, "POST", f"/api/blobs/{digest}", f, {"Content-Length": str(path.stat().st_size)}
                )
            if status not in (200, 201):
                raise _api_error(f"{api}/api/blobs/{digest}", status, body)
        files[path.name] = digest
    num_ctx = num_ctx or min(info.context_length or DEFAULT_NUM_CTX, DEFAULT_NUM_CTX)
    request = {
        "model": f"{model}:{tag}",
        "files": files,
        "template": ollama_template(),
        "parameters": parameters(num_ctx),
        "license": license_text,
        "stream": False,
    }
    status, body = _request(base, "POST", "/api/create", json.dumps(request), {"Content-Type": "application/json"})
    if status != 200:
        raise _api_error(f"{api}/api/create", status, body)
    last = json.loads(body.decode().strip().splitlines()[-1])
    if "error" in last or last.get("status") != "success":
        raise _api_error(f"{api}/api/create", status, body)
    return request
