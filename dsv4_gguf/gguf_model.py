"""A ``deepseek4`` GGUF opened as a model: metadata, ModelArgs, tensors, dequantization, checkpoint-named weights.

`open_gguf(path)` accepts a single file or the first shard of a split, and picks up llama.cpp's MTP
sidecar (``mtp-<name>.gguf`` next to it) when present.  `checkpoint_weights()` inverts the converter's
name map (un-stacking experts, splitting ``nextn.eh_proj`` into ``e_proj``/``h_proj``, I32 -> int64
``tid2eid``) so the PyTorch reference loads from a GGUF exactly as from a checkpoint directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from dsv4_gguf.config import ConfigError, ModelArgs
from dsv4_gguf.constants import MTP_FILE_PREFIX
from dsv4_gguf.gguf_io import GGUFError, GGUFShards, TensorRef

from .metadata import args_from_metadata
from .names import MAIN, MTP, GTensor, gguf_tensors

__all__ = ["GGUFModel", "open_gguf", "dequantize_raw"]

Q = GGMLQuantizationType


def dequantize_raw(raw: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """Stored tensor -> float32 (int64 for integer types), shape = logical numpy shape."""
    from dsv4_gguf import quants

    if qtype in (Q.I8, Q.I16, Q.I32, Q.I64):
        return np.array(raw, dtype=np.int64)  # a copy: callers may keep or modify it
    if qtype in (Q.F32, Q.F16, Q.F64):
        return np.array(raw, dtype=np.float32)
    return quants.dequantize(np.ascontiguousarray(raw), qtype)


def _mtp_path(path: Path) -> Path:
    m = re.match(r"^(.*)-\d{5}-of-\d{5}\.gguf$", path.name)
    stem = f"{m.group(1)}.gguf" if m else path.name
    return path.with_name(MTP_FILE_PREFIX + stem)


class GGUFModel:
    """Read-only view of a converted DeepSeek-V4 GGUF (main file or split, plus optional MTP sidecar)."""

    def __init__(self, path: str | os.PathLike[str], *, mtp: str | os.PathLike[str] | bool | None = None):
        self.path = Path(path)
        self.main = GGUFShards(self.path)
        self.metadata: dict[str, Any] = self.main.metadata
        side: Path | None = None
        if mtp is None or mtp is True:
            cand = _mtp_path(self.path)
            if cand.is_file():
                side = cand
            elif mtp is True:
                raise GGUFError(f"{self.path}: MTP sidecar '{cand.name}' not found next to it")
        elif mtp:
            side = Path(mtp)
        self.mtp = GGUFShards(side) if side is not None else None
        try:
            vocab = self.main.ref("token_embd.weight").shape[0]
        except GGUFError:
            vocab = None
        try:
            self.args: ModelArgs = args_from_metadata(
                self.metadata, n_mtp_layers=None if self.mtp else 0, vocab_size=vocab
            )
        except ConfigError as e:
            raise GGUFError(f"{self.path}: {e}") from None
        except (TypeError, ValueError, OverflowError, IndexError) as e:
            # a key of the wrong GGUF type (a string where a count belongs, an empty array, inf, ...)
            raise GGUFError(
                f"{self.path}: deepseek4 metadata has a value of the wrong type or range ({e}); "
                f"the file is corrupt or not a DeepSeek-V4 GGUF"
            ) from None
        self._where: dict[str, GGUFShards] = {n: self.main for n in self.main.names()}
        self.mtp_tensors: dict[str, GGUFShards] = {n: self.mtp for n in self.mtp.names()} if self.mtp else {}

    # ---- tensors ----
    def names(self, file: str = MAIN) -> list[str]:
        return list(self._where if file == MAIN else self.mtp_tensors)

    def _src(self, name: str, file: str) -> GGUFShards:
        src = (self._where if file == MAIN else self.mtp_tensors).get(name)
        if src is None:
            raise GGUFError(f"{self.path}: no tensor named '{name}'" + (" in the MTP sidecar" if file == MTP else ""))
        return src

    def info(self, name: str, file: str = MAIN) -> TensorRef:
        return self._src(name, file).ref(name)

    def raw(self, name: str, file: str = MAIN) -> np.ndarray:
        """Zero-copy view of the stored bytes (typed for F32/F16/I32, uint8 rows otherwise)."""
        return self._src(name, file).raw(name)

    def dequantize(self, name: str, file: str = MAIN, *, torch: bool = False) -> Any:
        """float32 numpy array of the logical tensor (int64 for I32); ``torch=True`` for a torch tensor."""
        r = self.info(name, file)
        out = dequantize_raw(self.raw(name, file), r.qtype)
        if torch:
            import torch as _torch

            return _torch.from_numpy(out)
        return out

    def gtensors(self) -> list[GTensor]:
        """The converter's name map for this model (only tensors present in the files)."""
        have = {MAIN: set(self._where), MTP: set(self.mtp_tensors)}
        return [t for t in gguf_tensors(self.args, mtp=self.mtp is not None) if t.name in have[t.file]]

    def checkpoint_weights(self) -> Mapping[str, np.ndarray]:
        """Weights keyed by checkpoint name, dequantized to the checkpoint's logical shapes (lazy)."""
        return _CheckpointView(self)

    def close(self) -> None:
        pass

    def __enter__(self) -> GGUFModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CheckpointView(Mapping):
    def __init__(self, m: GGUFModel):
        self.m = m
        self._map: dict[str, tuple[GTensor, int]] = {}
        for t in m.gtensors():
            if t.file == MTP and t.block is None and not t.sources[0].startswith("mtp."):
                continue  # the sidecar's copies of embed/norm/head
            for i, s in enumerate(t.sources):
                self._map[s] = (t, i)

    def __getitem__(self, name: str) -> np.ndarray:
        t, i = self._map[name]
        raw = self.m.raw(t.name, t.file)
        q = self.m.info(t.name, t.file).qtype
        if t.assemble == "stack":
            return dequantize_raw(raw[i], q)
        full = dequantize_raw(raw, q)
        if t.assemble == "cols":
            d = t.shape[1] // 2
            return np.ascontiguousarray(full[:, i * d : (i + 1) * d])
        return full

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)


def open_gguf(path: str | os.PathLike[str], *, mtp: str | os.PathLike[str] | bool | None = None) -> GGUFModel:
    """Open a converted DeepSeek-V4 GGUF (single file or first shard); ``mtp``: sidecar path, ``False`` to
    ignore it, ``None`` (default) to use ``mtp-<name>.gguf`` when it exists."""
    return GGUFModel(path, mtp=mtp)
