"""Reading DeepSeek-V4 release checkpoints: sharded safetensors, zero-copy, with FP8/FP4 decode.

`SafetensorsFile` parses one shard's header defensively (every offset and size is checked against the
file before anything is mapped) and hands out read-only numpy views of a shared ``mmap``.  The
`safetensors` package writes these files fine but its numpy reader cannot return float8 tensors and
does not validate hostile headers the way a converter needs, hence this small reader.
`Checkpoint` ties the index, the config and the layout rules of ``layout.checkpoint_tensors`` together and
dequantizes with the `_C` kernels, as DeepSeek's ``inference/convert.py`` and llama.cpp's converter decode
them: FP8 e4m3 weights times an E8M0 scale (``2^(byte-127)``) per 128x128 block, and FP4 routed experts
(e2m1 pairs, element 2k in the low nibble, 2k+1 in the high one) times an E8M0 scale per 32 inputs.
"""

from __future__ import annotations

import io
import json
import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np

from .config import ModelArgs, load_config
from .layout import TensorSpec, checkpoint_tensors

__all__ = ["CheckpointError", "SafetensorsFile", "Checkpoint", "NUMPY_DTYPES", "INDEX_NAME"]

INDEX_NAME = "model.safetensors.index.json"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors format's own limit
MAX_INDEX_BYTES = 100 * 1024 * 1024  # the index of DeepSeek-V4 Pro is ~4 MB
MAX_DIMS = 8
MAX_ELEMENTS = 2**62  # a shape whose element count passes this is corrupt (and would overflow int64 sizes)

NUMPY_DTYPES: dict[str, np.dtype] = {
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E8M0": np.dtype(ml_dtypes.float8_e8m0fnu),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "I16": np.dtype(np.int16),
    "I32": np.dtype(np.int32),
    "I64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
}


class CheckpointError(ValueError):
    """A checkpoint file or directory is missing, corrupt or does not match the DeepSeek-V4 layout."""


def _json_object(raw: bytes | str, what: str) -> object:
    """``json.loads`` that rejects duplicate keys (the last one would silently win) and deep nesting."""

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        out: dict[str, object] = {}
        for k, v in items:
            if k in out:
                raise CheckpointError(f"{what}: duplicate key '{k}'; the file is corrupt")
            out[k] = v
        return out

    try:
        return json.loads(raw, object_pairs_hook=pairs)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what}: not valid JSON ({e}); the file is corrupt") from None
    except RecursionError:
        raise CheckpointError(f"{what}: JSON nested too deeply; the file is corrupt") from None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offset of the first byte
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


class SafetensorsFile:
    """One ``.safetensors`` file: validated header, read-only zero-copy views."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            raise CheckpointError(f"{self.path}: shard file not found") from None
        # The map keeps its own descriptor; the file object is closed right away either way.
        with fh:
            self.tensors, self.metadata = self._parse_header(fh)
            size = os.fstat(fh.fileno()).st_size
            self._mm: mmap.mmap | None = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else None

    def _parse_header(self, fh: io.BufferedReader) -> tuple[dict[str, TensorInfo], dict[str, str]]:
        p = self.path
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            raise CheckpointError(
                f"{p}: truncated ({size} bytes); a safetensors file starts with an 8-byte "
                f"header length. Re-download the shard."
            )
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(
                f"{p}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit; "
                f"the file is corrupt or not a safetensors file"
            )
        if 8 + n > size:
            raise CheckpointError(
                f"{p}: header length {n} is larger than the file ({size} bytes); the shard is "
                f"truncated or corrupt. Re-download it."
            )
        header = _json_object(fh.read(n), f"{p}: header")
        if not isinstance(header, dict):
            raise CheckpointError(f"{p}: header must be a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict):
            raise CheckpointError(f"{p}: '__metadata__' must be an object")
        data_start, data_len = 8 + n, size - 8 - n
        infos: dict[str, TensorInfo] = {}
        for name, ent in header.items():
            if not isinstance(ent, dict) or not {"dtype", "shape", "data_offsets"} <= ent.keys():
                raise CheckpointError(f"{p}: tensor '{name}': header entry needs dtype, shape and data_offsets")
            dtype, shape, offs = ent["dtype"], ent["shape"], ent["data_offsets"]
            if dtype not in NUMPY_DTYPES:
                raise CheckpointError(
                    f"{p}: tensor '{name}' has unknown dtype {dtype!r}; supported: {', '.join(NUMPY_DTYPES)}"
                )
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise CheckpointError(f"{p}: tensor '{name}' has an invalid shape {shape!r}")
            if len(shape) > MAX_DIMS:
                raise CheckpointError(f"{p}: tensor '{name}' has {len(shape)} dimensions (limit {MAX_DIMS})")
            count = 1
            for d in shape:
                count *= d
            if count > MAX_ELEMENTS or max(shape, default=0) > MAX_ELEMENTS:
                raise CheckpointError(
                    f"{p}: tensor '{name}' has shape {shape} whose element count overflows "
                    f"(a dimension or the product > 2^62); the header is corrupt"
                )
            if (
                not isinstance(offs, list)
                or len(offs) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            ):
                raise CheckpointError(f"{p}: tensor '{name}' has invalid data_offsets {offs!r}")
            b, e = offs
            expect = NUMPY_DTYPES[dtype].itemsize * count
            if b < 0 or e < b:
                raise CheckpointError(f"{p}: tensor '{name}' has invalid data_offsets [{b}, {e}]")
            if e - b != expect:
                raise CheckpointError(
                    f"{p}: tensor '{name}' occupies {e - b} bytes but {dtype}{shape} needs "
                    f"{expect}; the header is corrupt"
                )
            if e > data_len:
                raise CheckpointError(
                    f"{p}: tensor '{name}' data_offsets [{b}, {e}] run past the end of the data "
                    f"({data_len} bytes); the shard is truncated. Re-download it."
                )
            infos[name] = TensorInfo(name, dtype, tuple(shape), data_start + b, data_start + e)
        spans = sorted((i.begin, i.end, i.name) for i in infos.values() if i.end > i.begin)
        for (_b0, e0, n0), (b1, _e1, n1) in zip(spans, spans[1:], strict=False):
            if b1 < e0:
                raise CheckpointError(f"{p}: tensors '{n0}' and '{n1}' overlap in the file; the header is corrupt")
        return infos, {str(k): str(v) for k, v in meta.items()}

    def keys(self) -> list[str]:
        return list(self.tensors)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named '{name}'") from None

    def view(self, name: str) -> np.ndarray:
        """Read-only array over the mapped file (no copy)."""
        i = self.info(name)
        dt = NUMPY_DTYPES[i.dtype]
        if i.nbytes == 0 or self._mm is None:
            return np.zeros(i.shape, dtype=dt)
        return np.frombuffer(self._mm, dtype=dt, count=i.nbytes // dt.itemsize, offset=i.begin).reshape(i.shape)

    def close(self) -> None:
        """Unmap now if no view is alive; otherwise the map goes when the last view does."""
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SAFE_SHARD = re.compile(r"^[A-Za-z0-9._-]+\.safetensors$")


class Checkpoint:
    """A DeepSeek-V4 checkpoint directory (``config.json`` + index + shards)."""

    def __init__(self, path: str | os.PathLike[str], *, validate: bool = True, args: ModelArgs | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise CheckpointError(
                f"{self.path}: not a directory; pass the checkpoint folder that holds config.json and {INDEX_NAME}"
            )
        self.args = args if args is not None else load_config(self.path)
        self.weight_map = self._read_index()
        self._shards: dict[str, SafetensorsFile] = {}
        self.specs: dict[str, TensorSpec] = {t.name: t for t in checkpoint_tensors(self.args)}
        if validate:
            try:
                self.validate()
            except BaseException:
                self.close()
                raise

    # ---- index and shards ----
    def _read_index(self) -> dict[str, str]:
        idx = self.path / INDEX_NAME
        if not idx.is_file():
            single = self.path / "model.safetensors"
            if single.is_file():
                return {k: single.name for k in self._open(single.name).keys()}
            raise CheckpointError(f"{self.path}: no {INDEX_NAME} (and no single model.safetensors)")
        size = idx.stat().st_size
        if size > MAX_INDEX_BYTES:
            raise CheckpointError(
                f"{idx}: {size} bytes is over the {MAX_INDEX_BYTES}-byte limit for an index; the file is corrupt"
            )
        raw = _json_object(idx.read_bytes(), str(idx))
        wm = raw.get("weight_map") if isinstance(raw, dict) else None
        if not isinstance(wm, dict):
            raise CheckpointError(f"{idx}: missing the 'weight_map' object")
        for name, shard in wm.items():
            if not isinstance(shard, str) or not _SAFE_SHARD.match(shard):
                raise CheckpointError(
                    f"{idx}: tensor '{name}' maps to {shard!r}, which is not a plain "
                    f"'*.safetensors' file name in the checkpoint folder"
                )
        for shard in sorted(set(wm.values())):
            if not (self.path / shard).is_file():
                raise CheckpointError(
                    f"{self.path}: shard '{shard}' named in {INDEX_NAME} is missing; "
                    f"download it (or re-run the download to complete the checkpoint)"
                )
        meta = raw.get("metadata")
        total = meta.get("total_size") if isinstance(meta, dict) else None
        self._index_total = total if isinstance(total, int) and not isinstance(total, bool) else None
        return dict(wm)

    def _open(self, shard: str) -> SafetensorsFile:
        f = self._shards.get(shard)
        if f is None:
            f = self._shards[shard] = SafetensorsFile(self.path / shard)
        return f

    def shard_names(self) -> list[str]:
        return sorted(set(self.weight_map.values()))

    def names(self) -> list[str]:
        return list(self.weight_map)

    def info(self, name: str) -> TensorInfo:
        shard = self.weight_map.get(name)
        if shard is None:
            raise CheckpointError(f"{self.path}: tensor '{name}' is not in {INDEX_NAME}")
        f = self._open(shard)
        if name not in f.tensors:
            raise CheckpointError(
                f"{self.path / shard}: tensor '{name}' is listed in {INDEX_NAME} but not "
                f"stored in this shard; the index and shards are from different downloads"
            )
        return f.tensors[name]

    def view(self, name: str) -> np.ndarray:
        """Raw stored tensor, zero-copy (float8 as ml_dtypes, packed FP4 as int8)."""
        self.info(name)
        return self._open(self.weight_map[name]).view(name)

    # ---- validation (the presence rules of layout.checkpoint_tensors) ----
    def validate(self) -> None:
        """Check every shard header and the layout; raise one error listing every problem found."""
        problems: list[str] = []
        stored: dict[str, TensorInfo] = {}
        for shard in self.shard_names():
            f = self._open(shard)  # header validation happens here
            for name in f.keys():
                if self.weight_map.get(name) != shard:
                    problems.append(f"tensor '{name}' is stored in '{shard}' but {INDEX_NAME} does not map it there")
        for name in self.weight_map:
            try:
                stored[name] = self.info(name)
            except CheckpointError as e:
                problems.append(str(e))
        if self._index_total is not None and not problems:
            total = sum(i.nbytes for i in stored.values())
            if total != self._index_total:
                problems.append(
                    f"{INDEX_NAME} says total_size {self._index_total} but the shards hold {total} tensor bytes"
                )
        for name, spec in self.specs.items():
            got = stored.get(name)
            if got is None:
                if name in self.weight_map:
                    continue  # already reported
                problems.append(self._explain_missing(spec))
                continue
            if got.dtype != spec.dtype or got.shape != spec.shape:
                problems.append(
                    f"tensor '{name}' is {got.dtype}{list(got.shape)}, expected "
                    f"{spec.dtype}{list(spec.shape)} for this config.json"
                )
        for name in stored:
            if name not in self.specs:
                problems.append(self._explain_unexpected(name))
        if problems:
            head = "\n  - ".join(problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise CheckpointError(
                f"{self.path}: checkpoint does not match the DeepSeek-V4 layout for its config.json:\n  - {head}{more}"
            )

    def _explain_missing(self, spec: TensorSpec) -> str:
        if spec.kind == "scale":
            w = spec.name[: -len(".scale")] + ".weight"
            return (
                f"scale tensor '{spec.name}' ({spec.dtype}{list(spec.shape)}) is missing: weight '{w}' "
                f"cannot be dequantized without it; the checkpoint is incomplete"
            )
        if spec.name.endswith(".tid2eid"):
            return (
                f"hash-routed block {spec.block} (< n_hash_layers={self.args.n_hash_layers}) needs "
                f"'{spec.name}'; it is missing"
            )
        if spec.name.endswith(".gate.bias"):
            return f"block {spec.block} is not hash-routed and needs '{spec.name}'; it is missing"
        return f"tensor '{spec.name}' ({spec.dtype}{list(spec.shape)}) is missing"

    def _explain_unexpected(self, name: str) -> str:
        m = re.match(r"^(layers|mtp)\.(\d+)\.", name)
        if m:
            block = int(m.group(2)) + (self.args.n_layers if m.group(1) == "mtp" else 0)
            if block >= self.args.n_blocks:
                return f"tensor '{name}' belongs to block {block}, but config.json has {self.args.n_blocks} blocks"
            r = self.args.ratio(block)
            if ".attn.indexer." in name and r != 4:
                return (
                    f"tensor '{name}' is an indexer tensor, but block {block} has compress ratio {r}; "
                    f"an indexer exists only for ratio 4"
                )
            if ".attn.compressor." in name and r == 0:
                return (
                    f"tensor '{name}' is a compressor tensor, but block {block} has compress ratio 0; "
                    f"a compressor exists only for ratio > 0"
                )
            if name.endswith(".gate.bias") and self.args.is_hash_layer(block):
                return (
                    f"tensor '{name}': hash-routed block {block} has 'tid2eid' and must not have "
                    f"'gate.bias' (tid2eid xor gate.bias)"
                )
            if name.endswith(".tid2eid") and not self.args.is_hash_layer(block):
                return (
                    f"tensor '{name}': block {block} is not hash-routed (n_hash_layers="
                    f"{self.args.n_hash_layers}) and must not have 'tid2eid'"
                )
        return f"tensor '{name}' is not part of the DeepSeek-V4 layout for this config.json"

    # ---- decoding ----
    def weights(self) -> Iterator[TensorSpec]:
        """Model parameters in layout order (scale tensors excluded; they belong to their weight)."""
        return (s for s in self.specs.values() if s.kind != "scale")

    def dequantize(self, name: str, threads: int = 0) -> np.ndarray:
        """The logical tensor: FP8/FP4 with scales applied and BF16/F16 widened, as float32;
        integer tensors (``tid2eid``) as int64."""
        from . import _C

        spec = self.specs.get(name)
        raw = self.view(name)
        kind = spec.kind if spec else ("fp8" if raw.dtype == NUMPY_DTYPES["F8_E4M3"] else "plain")
        if kind in ("fp8", "fp4"):
            sname = name[: -len(".weight")] + ".scale"
            if sname not in self.weight_map:
                raise CheckpointError(f"{self.path}: weight '{name}' has no scale tensor '{sname}'")
            scale = self.view(sname)
            if scale.dtype != NUMPY_DTYPES["F8_E8M0"]:
                raise CheckpointError(
                    f"{self.path}: scale '{sname}' is {scale.dtype}, expected F8_E8M0 "
                    f"(FP8-mixed Base checkpoints with float32 scales are not supported)"
                )
            w8, s8 = raw.view(np.uint8), scale.view(np.uint8)
            try:
                if kind == "fp8":
                    return _C.dequant_fp8(w8, s8, threads=threads)
                return _C.dequant_fp4(w8, s8, threads=threads)
            except ValueError as e:
                raise CheckpointError(f"{self.path}: '{name}': {e}") from None
        if raw.dtype.kind in "iub":
            return np.array(raw, dtype=np.int64)
        return raw.astype(np.float32)

    def close(self) -> None:
        for f in self._shards.values():
            f.close()
        self._shards.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
