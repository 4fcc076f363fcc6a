"""Run folders: a manifest saying exactly what was measured, per-item records appended as they finish,
and resume. `RUN_DIR/manifest.json` (model file hash, variant, bits per weight, backend, dataset files and
hashes, seed, settings, versions), `items.jsonl` (one JSON line per finished item; a torn last line from a
kill is ignored), `results.json` (metrics under stable names, rewritten atomically at the end).

Resuming re-reads the manifest and refuses to continue if anything that changes results differs (settings,
model or dataset hashes); finished items are skipped and the final metrics are computed from all records in
item order, so an interrupted-then-resumed run writes the same results.json as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = ["RunDir", "RunError", "file_digest", "gguf_info", "write_json", "write_text"]

QUICK_HASH_ABOVE = 2 << 30  # files larger than this get a quick fingerprint unless --full-hash
_QUICK_SPAN = 16 << 20


class RunError(RuntimeError):
    pass


def write_text(path: Path, text: str) -> None:
    """Temp file + rename: a kill leaves the old file or the new one at ``path``, never a torn one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def file_digest(path: str | Path, full: bool = False) -> dict[str, Any]:
    """sha256 of the file, or for big files a quick fingerprint: sha256 of (size, first and last 16 MiB)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if full or size <= QUICK_HASH_ABOVE:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
            return {"name": p.name, "size": size, "sha256": h.hexdigest()}
        h.update(str(size).encode())
        h.update(f.read(_QUICK_SPAN))
        f.seek(size - _QUICK_SPAN)
        h.update(f.read(_QUICK_SPAN))
    return {"name": p.name, "size": size, "quick_sha256": h.hexdigest()}


def gguf_info(path: str | Path) -> dict[str, Any]:
    """Bits per weight of a GGUF: `bpw` over all tensors (bytes * 8 / elements) and `bpw_blocks` over the
    repeating blocks' weights (`blk.*`, integer tables such as tid2eid excluded). The two agree within a few
    percent on the real models; on small models the embedding/output matrices dominate `bpw`, and
    `bpw_blocks` is the figure that orders quant recipes. Split files: pass the first shard (only it counts)."""
    from dsv4_gguf.gguf_io import GGUFFile  # header only; gguf.GGUFReader takes ~15 s on a 129k vocab

    g = GGUFFile(path)
    ts = list(g.tensors.values())
    n_el = sum(math.prod(t.shape) for t in ts)
    n_b = sum(t.nbytes for t in ts)
    blk = [t for t in ts if t.name.startswith("blk.") and t.qtype.name not in ("I8", "I16", "I32", "I64")]
    blk_el = sum(math.prod(t.shape) for t in blk)
    info: dict[str, Any] = {
        "bpw": 8.0 * n_b / n_el if n_el else None,
        "tensor_bytes": n_b,
        "n_params": n_el,
        "bpw_blocks": 8.0 * sum(t.nbytes for t in blk) / blk_el if blk_el else None,
    }
    if "general.file_type" in g.metadata:
        info["file_type"] = int(g.metadata["general.file_type"])
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("dsv4_gguf", "numpy", "llama_cpp", "pyarrow", "tiktoken", "gguf"):
        m = sys.modules.get(mod)
        if m is not None and getattr(m, "__version__", None):
            out[mod] = str(m.__version__)
    return out


class RunDir:
    """One run folder. `settings` (task options, model and dataset fingerprints) must match to resume."""

    def __init__(
        self,
        path: str | Path,
        task: str,
        settings: dict[str, Any],
        info: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.path / "manifest.json"
        self.items_path = self.path / "items.jsonl"
        settings = json.loads(json.dumps(settings, default=str))  # normalise (tuples, paths)
        if overwrite:
            for p in (self.manifest_path, self.items_path, self.path / "results.json"):
                p.unlink(missing_ok=True)
        if self.manifest_path.exists():
            old = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            if old.get("task") != task:
                raise RunError(f"{self.path} holds a '{old.get('task')}' run, not '{task}'; use another --out")
            diff = sorted(k for k in set(old["settings"]) | set(settings) if old["settings"].get(k) != settings.get(k))
            if diff:
                k = diff[0]
                raise RunError(
                    f"{self.path}: cannot resume, '{k}' was {old['settings'].get(k)!r} and is now "
                    f"{settings.get(k)!r}; use a new --out, or --overwrite to start over"
                )
            self.resumed = True
        else:
            write_json(
                self.manifest_path, {"task": task, "settings": settings, "info": info or {}, "versions": versions()}
            )
            self.resumed = False
        self.settings = settings
        self._repair()

    def _repair(self) -> None:
        # a kill mid-write leaves a torn last line: cut it so the next append starts a fresh line (one
        # truncate call: rewriting the file would lose the finished records to a kill during the rewrite)
        if self.items_path.exists():
            data = self.items_path.read_bytes()
            if data and not data.endswith(b"\n"):
                os.truncate(self.items_path, data.rfind(b"\n") + 1)

    def records(self) -> list[dict[str, Any]]:
        if not self.items_path.exists():
            return []
        out = []
        for n, line in enumerate(self.items_path.read_text(encoding="utf-8").splitlines()):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise RunError(f"{self.items_path}: line {n + 1} is corrupt; delete it to redo that item") from None
        return out

    def done(self) -> dict[str, dict[str, Any]]:
        return {r["uid"]: r for r in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        with open(self.items_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finish(self, results: dict[str, Any]) -> None:
        write_json(self.path / "results.json", results)
