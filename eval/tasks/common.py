"""What the tasks share: opening the candidate and reference backends from CLI options, fingerprints for
the manifest, and the sparse reference store (computed once, reused by every variant and on resume)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import Backend, SparseRows, open_backend
from ..run import RunError, file_digest, gguf_info, write_json

__all__ = [
    "open_candidate",
    "open_reference",
    "ref_backend",
    "model_fingerprint",
    "RefStore",
    "save_npz",
    "tokens_digest",
]


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def tokens_digest(tokens: Sequence[int]) -> str:
    import hashlib

    return hashlib.sha256(np.asarray(tokens, "<i4").tobytes()).hexdigest()


def open_candidate(ns: argparse.Namespace, prompt_logprobs: bool = False) -> Backend:
    """The candidate; ``prompt_logprobs``: a server candidate is scored through full-vocabulary
    ``prompt_logprobs`` (-1), which OpenAI-compatible servers may lack (llama-server does)."""
    return open_backend(
        ns.backend,
        ns.model,
        url=ns.url,
        n_ctx=ns.n_ctx,
        threads=ns.threads,
        prompt_logprobs=prompt_logprobs,
        seed=ns.seed,
    )


def ref_backend(ns: argparse.Namespace) -> str:
    """--ref-backend, else --backend; a server backend (openai, ollama) is the candidate's, at --url, so a
    --ref file is then run here by ``auto``."""
    if ns.ref_backend:
        return str(ns.ref_backend)
    return "auto" if ns.backend in ("openai", "ollama") else str(ns.backend)


def open_reference(ns: argparse.Namespace) -> Backend | None:
    if ns.ref_url:
        return open_backend("openai", ns.ref_model or "default", url=ns.ref_url, prompt_logprobs=True, seed=ns.seed)
    if ns.ref:
        return open_backend(ref_backend(ns), ns.ref, n_ctx=ns.n_ctx, threads=ns.threads, seed=ns.seed)
    return None


def model_fingerprint(kind: str, model: str | None, url: str | None, full_hash: bool) -> dict[str, Any]:
    """What identifies a model in the manifest: the file hash for GGUFs, the server and name otherwise."""
    if model is None and url is None:
        return {}
    fp: dict[str, Any] = {"backend": kind}
    if url:
        fp.update(url=url, model=model)
    elif model and Path(model).suffix == ".gguf":
        fp["file"] = file_digest(model, full=full_hash)
    elif kind == "fake" and model:  # the interrupt simulation is not a property of the model
        fp["model"] = ",".join(p for p in model.split(",") if not p.strip().startswith("fail_after"))
    else:
        fp["model"] = model
    return fp


def ref_fingerprint(ns: argparse.Namespace) -> dict[str, Any]:
    if ns.ref_url:
        return model_fingerprint("openai", ns.ref_model or "default", ns.ref_url, ns.full_hash)
    return model_fingerprint(ref_backend(ns), ns.ref, None, ns.full_hash)


def model_info(model: str | None, variant: str | None, bpw: float | None) -> dict[str, Any]:
    info: dict[str, Any] = {}
    if model and Path(model).suffix == ".gguf" and Path(model).is_file():
        info.update(gguf_info(model))
    if bpw is not None:
        info["bpw"] = bpw
    if variant is None and model:
        variant = Path(model).stem if Path(model).suffix == ".gguf" else model
    info["variant"] = variant
    return info


class RefStore:
    """Sparse top-k reference rows, one `.npz` per item, in a folder with a `ref.json` saying what made
    them. Shared across candidate runs with --ref-cache; a mismatch (other model, k, text) is an error,
    unless the cache holds no rows or tokens yet (a run that failed before storing any).  ``owned``: the
    run's own cache (RUN_DIR/ref, no --ref-cache), which ``discard`` (--overwrite) empties first."""

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        opener: Callable[[], Backend | None],
        owned: bool = False,
        discard: bool = False,
    ) -> None:
        self.path = path
        if owned and discard and path.is_dir():
            shutil.rmtree(path)
        self.path.mkdir(parents=True, exist_ok=True)
        meta = json.loads(json.dumps(meta, default=str))
        mp = self.path / "ref.json"
        stored = (self.path / "tokens.npy").exists() or any(self.path.glob("*.npz"))
        if mp.exists() and stored:
            old = json.loads(mp.read_text(encoding="utf-8"))
            if old != meta:
                k = sorted(x for x in set(old) | set(meta) if old.get(x) != meta.get(x))[0]
                fix = "pass --overwrite to start the run over" if owned else "use another --ref-cache"
                raise RunError(
                    f"{self.path}: reference cache made with {k}={old.get(k)!r}, this run needs {meta.get(k)!r}; {fix}"
                )
        else:
            write_json(mp, meta)
        self._opener = opener
        self._backend: Backend | None = None

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._opener()
            if self._backend is None:
                raise RunError("no reference given (--ref, --ref-url or --ref-kld)")
        return self._backend

    def tokens(self) -> np.ndarray | None:
        f = self.path / "tokens.npy"
        return np.load(f) if f.exists() else None

    def save_tokens(self, tokens: np.ndarray) -> None:
        tmp = self.path / "tokens.tmp.npy"
        np.save(tmp, np.asarray(tokens, np.int32))
        os.replace(tmp, self.path / "tokens.npy")

    def _file(self, uid: str) -> Path:
        return self.path / (uid.replace("/", "_").replace(":", "_") + ".npz")

    def has(self, uid: str) -> bool:
        return self._file(uid).exists()

    def get(self, uid: str, tokens: Sequence[int], first: int, k: int) -> SparseRows:
        f = self._file(uid)
        if f.exists():
            rows = SparseRows.load(f)
            if not np.array_equal(rows.target, np.asarray(tokens[first + 1 :])):
                raise RunError(
                    f"{f}: the stored reference scored other tokens than this run's '{uid}' (another "
                    "tokenizer, prompt or dataset version); use another --ref-cache"
                )
            return rows
        be = self.backend()
        be.require(prompt_topk=True)
        rows = be.prompt_topk(tokens, first, k)
        save_npz(f, target=rows.target, target_lp=rows.target_lp, top_ids=rows.top_ids, top_lp=rows.top_lp)
        return rows

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
