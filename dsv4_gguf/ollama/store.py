"""Direct install into an Ollama models store: content-addressed ``blobs/sha256-<hex>`` +
``manifests/<host>/<namespace>/<model>/<tag>``, the layout of Ollama's ``manifest`` and ``types/model`` packages.

Every blob is written atomically (temp file + fsync + read-back sha256 check + rename) before the manifest, so
a failed or killed install never leaves a manifest pointing at missing or wrong blobs; a failed one also
removes what it added (blobs, folders, temp files; a killed one's temp files go on the next run). Split GGUFs
are merged into one model blob as Ollama's create does. It does not validate the GGUF with llama-quantize
(Ollama's create does) or quantize.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..templates import ollama_template
from .model import (
    ARCH,
    DEFAULT_NUM_CTX,
    LICENSE_MIT,
    MEDIA,
    NAMESPACE,
    REGISTRY,
    GGUFInfo,
    OllamaExportError,
    _read_header,
    human_count,
    inspect_gguf,
    modelfile,
    parameters,
    parse_name,
)

_CHUNK = 16 << 20


def _json_blob(value: Any) -> bytes:
    # Go's json.Encoder output, which is what Ollama's create writes: compact, trailing newline.
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


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

    from ..gguf_io import GGUFFile

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
