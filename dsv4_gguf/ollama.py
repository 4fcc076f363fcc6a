"""Ollama export for DeepSeek-V4 GGUFs: a Modelfile, and either a direct install into an Ollama models
store (content-addressed ``blobs/sha256-<hex>`` + ``manifests/<host>/<namespace>/<model>/<tag>``, the layout of
Ollama's ``manifest`` and ``types/model`` packages) or an upload through Ollama's HTTP API (``POST /api/blobs``
then ``POST /api/create``, docs/api.md in ollama/ollama).

Direct install writes every blob atomically (temp file + fsync + read-back sha256 check + rename) before the
manifest, so a failed or killed install never leaves a manifest pointing at missing or wrong blobs; a failed
one also removes what it added (blobs, folders, temp files; a killed one's temp files go on the next run).
Names are plain ASCII path components that cannot leave the models directory. Split GGUFs are merged into
one model blob as Ollama's create does. The Modelfile never goes over the model and replaces a different
file only with --force (alias --overwrite). It does not validate the GGUF with llama-quantize (Ollama's create
does) or quantize.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import chat
from .templates import ollama_template

ARCH = "deepseek4"
REGISTRY = "registry.ollama.ai"
NAMESPACE = "library"
MEDIA = {
    "manifest": "application/vnd.docker.distribution.manifest.v2+json",
    "config": "application/vnd.docker.container.image.v1+json",
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "license": "application/vnd.ollama.image.license",
    "params": "application/vnd.ollama.image.params",
}
# Sampling per the DeepSeek-V4 model card; EOS is the only stop string the chat format needs.
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 1.0, "top_p": 1.0, "stop": list(chat.STOP_STRINGS)}
DEFAULT_NUM_CTX = 32768
LICENSE_MIT = """MIT License

Copyright (c) DeepSeek

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# llama.cpp LLAMA_FTYPE names for general.file_type (the ones a DSV4 GGUF can carry).
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 32: "BF16", 38: "MXFP4_MOE"}  # fmt: skip
_NAME_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}")
_SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_CHUNK = 16 << 20


class OllamaExportError(RuntimeError):
    """Export refused or failed; the message names the file or name, what was expected, and the fix."""


# ---------------------------------------------------------------------------------------------------
# Names and input GGUFs
# ---------------------------------------------------------------------------------------------------


def _show(text: str) -> str:
    return repr(text) if len(text) <= 100 else repr(text[:60]) + f"... ({len(text)} characters)"


def _name_problem(part: str) -> str:
    """What breaks the name rule, specifically (the error says it next to the rule)."""
    import unicodedata

    if not part:
        return "it is empty"
    if len(part) > 80:
        return f"it is {len(part)} characters long"
    for ch in part:
        if ch in "/\\":
            return f"it contains the path separator {ch!r}"
        if not ch.isascii():
            return f"it contains U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')} (only ASCII is allowed)"
        if not ch.isprintable():
            return f"it contains the control character {ch!r}"
    if ".." in part:
        return "it contains '..'"
    if not _NAME_PART.fullmatch(part[0]):
        return f"it starts with {part[0]!r}"
    bad = sorted({ch for ch in part if not _NAME_PART.fullmatch("a" + ch)})
    return f"it contains {', '.join(map(repr, bad))}"


def parse_name(name: str) -> tuple[str, str]:
    """`NAME[:TAG]` -> (name, tag). Only plain ASCII names: no host, namespace, path separators, `..`,
    control or look-alike characters (a name becomes two path components under the models directory)."""
    model, _, tag = name.partition(":")
    tag = tag or "latest"
    for what, part in (("name", model), ("tag", tag)):
        if "/" in part or "\\" in part or ".." in part or not _NAME_PART.fullmatch(part):
            raise OllamaExportError(
                f"invalid model {what} {_show(part)} in {_show(name)}: {_name_problem(part)}; use 1-80 characters from "
                "[A-Za-z0-9_.-], starting with a letter, digit or '_', with no '/', '\\' or '..' "
                "(e.g. --name deepseek-v4-flash:q4_k_m)"
            )
    return model, tag


@dataclass
class GGUFInfo:
    files: list[Path]  # one file, or every shard in order
    file_type: str
    n_params: int
    context_length: int | None
    headers: list[Any] = field(default_factory=list, repr=False, compare=False)  # parsed GGUFFile per file
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(f.stat().st_size for f in self.files)


def _read_header(path: Path) -> Any:
    from .gguf_io import GGUFError, GGUFFile

    try:
        return GGUFFile(path)
    except (GGUFError, OSError) as exc:
        detail = str(exc).removeprefix(f"{path}: ")  # the reader's message names the file too
        raise OllamaExportError(f"{path}: not a readable GGUF file: {detail}") from exc


def inspect_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Checks that `path` is a deepseek4 GGUF and finds its split shards (`*-00001-of-0000N.gguf`).

    Each file's header is parsed once, by dsv4_gguf's own reader (a 129k-token vocabulary takes ~0.1 s where
    the `gguf` package's ``GGUFReader`` takes 5-10 s); ``install`` and ``install_via_api`` reuse the result."""
    path = Path(path)
    if not path.is_file():
        raise OllamaExportError(f"{path}: no such GGUF file")
    first = _read_header(path)
    md = first.metadata
    arch = md.get("general.architecture")
    if arch != ARCH:
        raise OllamaExportError(
            f"{path}: general.architecture is {arch!r}, expected {ARCH!r}; this exporter only writes DeepSeek-V4 "
            "models (convert the checkpoint with dsv4-gguf first)"
        )
    files = [path]
    count = md.get("split.count")
    if count is not None and int(count) > 1:
        match = _SPLIT_NAME.match(path.name)
        if match is None or int(match["count"]) != int(count):
            raise OllamaExportError(
                f"{path}: split.count is {count} but the name is not <prefix>-NNNNN-of-{count:05d}.gguf"
            )
        files = [
            path.with_name(f"{match['prefix']}-{i:05d}-of-{int(count):05d}.gguf") for i in range(1, int(count) + 1)
        ]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise OllamaExportError(f"{path}: split GGUF is missing shard(s) {missing}")
    headers = [first if shard == path else _read_header(shard) for shard in files]
    n_params = sum(math.prod(t.shape) for h in headers for t in h.tensors.values())
    ftype = md.get("general.file_type")
    ctx = md.get(f"{ARCH}.context_length")
    return GGUFInfo(
        files,
        FILE_TYPES.get(int(ftype), "unknown") if ftype is not None else "unknown",
        n_params,
        int(ctx) if ctx is not None else None,
        headers,
    )


def human_count(n: int) -> str:
    """Parameter count as Ollama shows it (`model_type`): 284B, 13.2B, 7.5M."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            text = f"{n / scale:.1f}".removesuffix(".0")
            return text + unit
    return str(n)


# ---------------------------------------------------------------------------------------------------
# Modelfile and the small layers
# ---------------------------------------------------------------------------------------------------


def parameters(num_ctx: int) -> dict[str, Any]:
    return {**DEFAULT_PARAMS, "num_ctx": num_ctx}


def modelfile(source: Path, num_ctx: int, license_text: str = LICENSE_MIT) -> str:
    """The Modelfile for `ollama create -f`: FROM (a split model's directory), TEMPLATE, PARAMETERs, LICENSE."""
    template = ollama_template()
    for what, text in (("TEMPLATE", template), ("LICENSE", license_text)):
        # Ollama's Modelfile parser ends a value at `"""` and drops non-printable characters.
        if '"""' in text or not all(ch.isprintable() or ch in "\n\t" for ch in text):
            raise OllamaExportError(
                f'{what} text contains """ or non-printable characters; a Modelfile cannot carry it'
            )
    lines = [f"FROM {source}", f'TEMPLATE """{template}"""']
    for key, value in parameters(num_ctx).items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {json.dumps(item, ensure_ascii=False) if key == 'stop' else item}")
    lines.append(f'LICENSE """{license_text}"""')
    return "\n".join(lines) + "\n"


def _json_blob(value: Any) -> bytes:
    # Go's json.Encoder output, which is what Ollama's create writes: compact, trailing newline.
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


# ---------------------------------------------------------------------------------------------------
# Direct store install
# ---------------------------------------------------------------------------------------------------


def default_models_dir() -> Path:
    env = os.environ.get("OLLAMA_MODELS")
    return Path(env) if env else Path.home() / ".ollama" / "models"


def _disk_full(exc: OSError, where: Path, need: int) -> OllamaExportError:
    return OllamaExportError(
        f"{where}: disk full while writing the Ollama blobs (needs about {need / 2**30:.1f} GiB free); free space "
        f"or point --models-dir / OLLAMA_MODELS at a larger disk. Nothing was installed. ({exc})"
    )


_TMP = ".dsv4-tmp-"  # + "<pid>-": temp files of a killed export are recognised (and removed) by the next one


def _mkstemp(folder: Path) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=f"{_TMP}{os.getpid()}-", dir=folder)
    return fd, Path(name)


def _remove_stale_temps(folder: Path) -> None:
    """Deletes temp files that exports which no longer run (killed, crashed) left in `folder`."""
    for p in folder.glob(_TMP + "*"):
        m = re.match(re.escape(_TMP) + r"(\d+)-", p.name)
        if m is None or int(m[1]) == os.getpid():
            continue
        try:
            os.kill(int(m[1]), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def _check_blob(path: Path, digest: str, size: int, what: str) -> None:
    """`path` holds exactly the bytes named by `digest` (read back and hashed)."""
    got_size = path.stat().st_size
    got = _sha256_file(path) if got_size == size else None
    if got != digest:
        found = f"sha256:{got}" if got else f"{got_size} bytes"
        raise OllamaExportError(
            f"{path}: {what} should be sha256:{digest} ({size} bytes) but holds {found}; "
            + (
                "the store is damaged: delete this blob and rerun"
                if what == "stored blob"
                else "the copy was corrupted on its way to disk; check the disk and rerun"
            )
            + ". No manifest was written."
        )


class _BlobWriter:
    """Writes content-addressed blobs (temp + fsync + read-back check + rename); a blob already in the store
    is re-hashed before it is reused. Remembers the blobs it created for rollback."""

    def __init__(self, blobs: Path):
        self.blobs = blobs
        self.created: list[Path] = []

    def _finish(self, tmp: Path, digest: str) -> dict[str, Any]:
        final = self.blobs / f"sha256-{digest}"
        size = tmp.stat().st_size
        if final.exists():
            _check_blob(final, digest, size, "stored blob")
            tmp.unlink()  # the same content is already stored (and verified)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            self.created.append(final)
        return {"digest": f"sha256:{digest}", "size": size}

    def _tmp(self) -> tuple[Any, Path]:
        fd, name = _mkstemp(self.blobs)
        return os.fdopen(fd, "wb"), name

    def write_bytes(self, data: bytes) -> dict[str, Any]:
        return self.write_chunks(iter([data]))

    def write_chunks(self, chunks: Iterator[bytes]) -> dict[str, Any]:
        out, tmp = self._tmp()
        h = hashlib.sha256()
        try:
            with out:
                for chunk in chunks:
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            _check_blob(tmp, h.hexdigest(), tmp.stat().st_size, "the written blob")
            return self._finish(tmp, h.hexdigest())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def write_merged(self, shards: Sequence[Path | Any]) -> dict[str, Any]:
        out, tmp = self._tmp()
        out.close()
        try:
            merge_split_gguf(shards, tmp)
            return self._finish(tmp, _sha256_file(tmp, "sha256 merged GGUF"))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def rollback(self, dirs: list[Path]) -> None:
        for path in self.created:
            path.unlink(missing_ok=True)
        for d in reversed(dirs):
            try:
                d.rmdir()
            except OSError:
                break  # not empty (another model's files): keep it and its parents


def _file_chunks(path: Path, what: str = "") -> Iterator[bytes]:
    """Reads a file in 16 MiB chunks; with `what`, shows a progress bar (model files are ~100s of GB)."""
    from tqdm import tqdm

    with (
        open(path, "rb") as f,
        tqdm(
            total=path.stat().st_size, unit="B", unit_scale=True, desc=what, disable=not what or None, leave=False
        ) as bar,
    ):
        while chunk := f.read(_CHUNK):
            bar.update(len(chunk))
            yield chunk


def _sha256_file(path: Path, what: str = "") -> str:
    h = hashlib.sha256()
    for chunk in _file_chunks(path, what):
        h.update(chunk)
    return h.hexdigest()


def merge_split_gguf(shards: Sequence[Path | Any], out: Path) -> None:
    """Merges gguf-split shards into one GGUF (split.* keys dropped), streaming tensor data from mmaps.
    ``shards``: their paths, or their parsed headers (``GGUFInfo.headers``: nothing is parsed again)."""
    import numpy as np
    from gguf import GGUFValueType, GGUFWriter

    from .gguf_io import GGUFFile

    files = [s if isinstance(s, GGUFFile) else _read_header(Path(s)) for s in shards]
    first = files[0]
    writer = GGUFWriter(out, ARCH)
    for key, value in first.metadata.items():
        if key.startswith("split.") or key == "general.architecture":
            continue
        vtype = GGUFValueType(first.kv_types[key])
        sub = GGUFValueType(first.array_types[key]) if vtype == GGUFValueType.ARRAY else None
        if key == "general.alignment":
            writer.data_alignment = int(value)
        writer.add_key_value(key, value, vtype, sub_type=sub)
    tensors = [(f, t) for f in files for t in f.tensors.values()]
    for _, t in tensors:
        # The element shape in numpy order with raw_dtype set writes ne = reversed(shape) for every type
        # (any non-uint8 dtype: with raw_dtype given it only selects "shape is in elements, not bytes").
        writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=t.qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for f, t in tensors:
        writer.write_tensor_data(f.raw(t.name))
    writer.close()


@dataclass
class InstallResult:
    manifest: Path
    manifest_data: dict[str, Any]
    modelfile: str


def install(
    gguf_path: str | os.PathLike[str],
    name: str,
    models_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    num_ctx: int | None = None,
    license_text: str = LICENSE_MIT,
    info: GGUFInfo | None = None,
) -> InstallResult:
    """Installs a DSV4 GGUF into an Ollama models directory as `name` (`NAME[:TAG]`).  ``info``: the
    ``inspect_gguf`` result of `gguf_path` when the caller has it (the headers are not parsed again)."""
    model, tag = parse_name(name)
    info = info if info is not None else inspect_gguf(gguf_path)
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    manifest_path = root / "manifests" / REGISTRY / NAMESPACE / model / tag
    inside = (root / "manifests").resolve()
    if not manifest_path.resolve().is_relative_to(inside):  # a symlinked model folder pointing elsewhere
        raise OllamaExportError(
            f"{manifest_path}: resolves to {manifest_path.resolve()}, outside {inside}; a link in the models "
            "directory points out of it. Remove the link or choose another --name"
        )
    if manifest_path.exists() and not force:
        raise OllamaExportError(f"{manifest_path}: {model}:{tag} is already installed; pass --force to replace it")
    num_ctx = num_ctx or min(info.context_length or DEFAULT_NUM_CTX, DEFAULT_NUM_CTX)
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    for folder in (blobs, manifest_path.parent):
        if folder.is_dir():
            _remove_stale_temps(folder)
    need = info.size + (1 << 20)
    free = shutil.disk_usage(blobs).free
    if free < need:
        raise _disk_full(OSError(errno.ENOSPC, f"{free} bytes free"), blobs, need)

    writer = _BlobWriter(blobs)
    new_dirs: list[Path] = []  # folders made for the manifest, removed again on failure
    template = ollama_template()
    try:
        if len(info.files) == 1:
            model_layer = writer.write_chunks(_file_chunks(info.files[0], f"copy {info.files[0].name}"))
        else:
            model_layer = writer.write_merged(info.headers or info.files)
        layers = [
            {"mediaType": MEDIA["model"], **model_layer},
            {"mediaType": MEDIA["template"], **writer.write_bytes(template.encode())},
            {"mediaType": MEDIA["license"], **writer.write_bytes(license_text.encode())},
            {"mediaType": MEDIA["params"], **writer.write_bytes(_json_blob(parameters(num_ctx)))},
        ]
        config = {
            "model_format": "gguf",
            "model_family": ARCH,
            "model_families": [ARCH],
            "model_type": human_count(info.n_params),
            "file_type": info.file_type,
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
        config_layer = {"mediaType": MEDIA["config"], **writer.write_bytes(_json_blob(config))}
        manifest = {"schemaVersion": 2, "mediaType": MEDIA["manifest"], "config": config_layer, "layers": layers}
        for layer in (config_layer, *layers):  # every blob the manifest names is in place, at its size
            blob = blobs / layer["digest"].replace(":", "-")
            if not blob.is_file() or blob.stat().st_size != layer["size"]:
                raise OllamaExportError(f"{blob}: missing or resized while exporting; nothing was installed")
        missing = [p for p in (manifest_path.parent, *manifest_path.parent.parents) if not p.exists()]
        new_dirs.extend(reversed(missing))
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = _mkstemp(manifest_path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(manifest).encode())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, manifest_path)  # last step: the model appears only when complete
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    except OSError as exc:
        writer.rollback(new_dirs)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(exc, blobs, need) from exc
        raise
    except BaseException:
        writer.rollback(new_dirs)
        raise
    source = info.files[0].parent if len(info.files) > 1 else info.files[0]
    return InstallResult(manifest_path, manifest, modelfile(source.resolve(), num_ctx, license_text))


# ---------------------------------------------------------------------------------------------------
# HTTP API (POST /api/blobs + POST /api/create)
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------


def add_ollama_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="DeepSeek-V4 GGUF (for a split model: its first shard)")
    parser.add_argument("--name", required=True, help="Ollama model name, NAME[:TAG] (tag defaults to latest)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="Ollama models directory to install into (default: $OLLAMA_MODELS or ~/.ollama/models)",
    )
    where.add_argument(
        "--api", default=None, help="upload through a running server instead, e.g. http://127.0.0.1:11434"
    )
    where.add_argument("--modelfile-only", action="store_true", help="only write the Modelfile")
    parser.add_argument(
        "--modelfile",
        type=Path,
        default=None,
        help="where to write the Modelfile (default: Modelfile next to the GGUF)",
    )
    parser.add_argument(
        "--num-ctx",
        type=int,
        default=None,
        help=f"context length parameter (default: min(model context, {DEFAULT_NUM_CTX}))",
    )
    parser.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="replace an existing model of the same name and tag, and a different --modelfile",
    )


def _check_modelfile_target(target: Path, text: str, inputs: list[Path], force: bool) -> None:
    """Never write the Modelfile over the model itself; replace another existing file only with --overwrite
    (the same text again is no replacement: reruns and resumed installs pass)."""
    if not target.exists():
        return
    for f in inputs:
        if os.path.samefile(target, f):
            raise OllamaExportError(f"{target}: is an input of this command (the model); give another --modelfile")
    data = text.encode("utf-8")
    same = target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data
    if not force and not same:
        raise OllamaExportError(f"{target}: already exists; choose another --modelfile or pass --overwrite")


def run_ollama(args: argparse.Namespace) -> int:
    try:
        parse_name(args.name)
        if args.api:
            check_server(args.api)  # a server that does not answer fails before the GGUF is parsed
        info = inspect_gguf(args.model)
        num_ctx = args.num_ctx or min(info.context_length or DEFAULT_NUM_CTX, DEFAULT_NUM_CTX)
        source = (info.files[0].parent if len(info.files) > 1 else info.files[0]).resolve()
        target = args.modelfile or args.model.parent / "Modelfile"
        if not target.parent.is_dir():
            raise OllamaExportError(
                f"{target}: the folder {target.parent} does not exist; create it or give another --modelfile"
            )
        text = modelfile(source, num_ctx)
        _check_modelfile_target(target, text, info.files, args.force)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        print(f"wrote {target}")
        if args.api:
            install_via_api(args.model, args.name, args.api, force=args.force, num_ctx=num_ctx, info=info)
            print(f"created {args.name} on {args.api}")
        elif not args.modelfile_only:
            result = install(args.model, args.name, args.models_dir, force=args.force, num_ctx=num_ctx, info=info)
            print(f"installed {args.name} -> {result.manifest}")
    except OllamaExportError as exc:
        print(f"dsv4-gguf ollama: error: {exc}", file=sys.stderr)
        return 1
    return 0


def ollama_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dsv4-gguf ollama", description=__doc__.splitlines()[0])
    add_ollama_arguments(parser)
    return run_ollama(parser.parse_args(argv))
