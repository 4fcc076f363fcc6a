"""The checkpoint tensor layout implied by a ``ModelArgs``: the names, dtypes and shapes of DeepSeek's
Hugging Face release (``deepseek-ai/DeepSeek-V4-Flash`` / ``-Pro``), as its ``inference/model.py`` declares
them; for the real configs the census equals the release's ``model.safetensors.index.json`` totals.

One function, :func:`checkpoint_tensors`, enumerates every tensor of a release checkpoint with its
safetensors dtype and shape, scale tensors included.  The census (`dsv4-gguf synth --dry-run`), the
synthetic checkpoint writer and the checkpoint validator all derive from it, so the presence rules
live in exactly one place.  It knows nothing about files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from .config import ModelArgs

__all__ = ["TensorSpec", "checkpoint_tensors", "census", "Census", "DTYPE_SIZES", "block_prefix"]

# Bytes per element of each safetensors dtype the release uses.  I8 holds two FP4 values per byte,
# which the *shape* already accounts for (``[out, in/2]``).
DTYPE_SIZES: dict[str, int] = {
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I8": 1,
    "BF16": 2,
    "F16": 2,
    "F32": 4,
    "I32": 4,
    "I64": 8,
}


@dataclass(frozen=True)
class TensorSpec:
    """One checkpoint tensor.

    ``kind`` says how it is stored: ``fp8`` (E4M3 weight with a 128x128 E8M0 ``.scale``), ``fp4``
    (packed e2m1 pairs with an E8M0 ``.scale`` per 32 inputs), ``scale`` (one of those scales),
    ``plain`` (BF16/F32/I64 stored as is).  ``block`` is the block index or ``None`` for top-level.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    kind: str
    block: int | None = None

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for d in self.shape:
            n *= d
        return n

    @property
    def logical_shape(self) -> tuple[int, ...]:
        """Shape of the dequantized weight (``fp4`` rows hold two values per byte)."""
        if self.kind == "fp4":
            return (self.shape[0], self.shape[1] * 2)
        return self.shape


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def block_prefix(args: ModelArgs, block: int) -> str:
    """``layers.{i}`` for main blocks, ``mtp.{k}`` for MTP blocks."""
    return f"layers.{block}" if block < args.n_layers else f"mtp.{block - args.n_layers}"


def _fp8(name: str, out: int, inp: int, block: int | None) -> Iterator[TensorSpec]:
    yield TensorSpec(f"{name}.weight", "F8_E4M3", (out, inp), "fp8", block)
    yield TensorSpec(f"{name}.scale", "F8_E8M0", (_ceil(out, 128), _ceil(inp, 128)), "scale", block)


def _fp4(name: str, out: int, inp: int, block: int | None) -> Iterator[TensorSpec]:
    yield TensorSpec(f"{name}.weight", "I8", (out, inp // 2), "fp4", block)
    yield TensorSpec(f"{name}.scale", "F8_E8M0", (out, inp // 32), "scale", block)


def _plain(name: str, dtype: str, shape: tuple[int, ...], block: int | None) -> TensorSpec:
    return TensorSpec(name, dtype, shape, "plain", block)


def block_tensors(args: ModelArgs, block: int) -> Iterator[TensorSpec]:
    """All tensors of one block (main layer or MTP block), in a stable order."""
    a, b = args, block
    p = block_prefix(a, b)
    D, hc = a.dim, a.hc_mult
    n_mix = (2 + hc) * hc
    ratio = a.ratio(b)
    if b >= a.n_layers:  # MTP-only inputs (official MTPBlock: separate e_proj/h_proj, own norms and hc_head)
        yield from _fp8(f"{p}.e_proj", D, D, b)
        yield from _fp8(f"{p}.h_proj", D, D, b)
        for n in ("enorm", "hnorm", "norm"):
            yield _plain(f"{p}.{n}.weight", "BF16", (D,), b)
        yield _plain(f"{p}.hc_head_fn", "F32", (hc, hc * D), b)
        yield _plain(f"{p}.hc_head_base", "F32", (hc,), b)
        yield _plain(f"{p}.hc_head_scale", "F32", (1,), b)
    yield _plain(f"{p}.attn_norm.weight", "BF16", (D,), b)
    yield _plain(f"{p}.ffn_norm.weight", "BF16", (D,), b)
    for sub in ("attn", "ffn"):
        yield _plain(f"{p}.hc_{sub}_fn", "F32", (n_mix, hc * D), b)
        yield _plain(f"{p}.hc_{sub}_base", "F32", (n_mix,), b)
        yield _plain(f"{p}.hc_{sub}_scale", "F32", (3,), b)
    # attention
    H, hd = a.n_heads, a.head_dim
    yield _plain(f"{p}.attn.attn_sink", "F32", (H,), b)
    yield from _fp8(f"{p}.attn.wq_a", a.q_lora_rank, D, b)
    yield _plain(f"{p}.attn.q_norm.weight", "BF16", (a.q_lora_rank,), b)
    yield from _fp8(f"{p}.attn.wq_b", H * hd, a.q_lora_rank, b)
    yield from _fp8(f"{p}.attn.wkv", hd, D, b)
    yield _plain(f"{p}.attn.kv_norm.weight", "BF16", (hd,), b)
    yield from _fp8(f"{p}.attn.wo_a", a.o_groups * a.o_lora_rank, H * hd // a.o_groups, b)
    yield from _fp8(f"{p}.attn.wo_b", D, a.o_groups * a.o_lora_rank, b)
    if ratio > 0:
        coff = 2 if ratio == 4 else 1
        yield from _compressor(f"{p}.attn.compressor", D, hd, ratio, coff, b)
    if ratio == 4:
        yield from _fp8(f"{p}.attn.indexer.wq_b", a.index_n_heads * a.index_head_dim, a.q_lora_rank, b)
        yield _plain(f"{p}.attn.indexer.weights_proj.weight", "BF16", (a.index_n_heads, D), b)
        yield from _compressor(f"{p}.attn.indexer.compressor", D, a.index_head_dim, 4, 2, b)
    # MoE
    E, I = a.n_routed_experts, a.moe_inter_dim
    yield _plain(f"{p}.ffn.gate.weight", "BF16", (E, D), b)
    if a.is_hash_layer(b):
        yield _plain(f"{p}.ffn.gate.tid2eid", "I64", (a.vocab_size, a.n_activated_experts), b)
    else:
        yield _plain(f"{p}.ffn.gate.bias", "F32", (E,), b)
    yield from _fp8(f"{p}.ffn.shared_experts.w1", I, D, b)
    yield from _fp8(f"{p}.ffn.shared_experts.w2", D, I, b)
    yield from _fp8(f"{p}.ffn.shared_experts.w3", I, D, b)
    expert = _fp4 if a.expert_dtype == "fp4" else _fp8
    for e in range(E):
        yield from expert(f"{p}.ffn.experts.{e}.w1", I, D, b)
        yield from expert(f"{p}.ffn.experts.{e}.w2", D, I, b)
        yield from expert(f"{p}.ffn.experts.{e}.w3", I, D, b)


def _compressor(p: str, D: int, d: int, m: int, coff: int, b: int) -> Iterator[TensorSpec]:
    yield _plain(f"{p}.wkv.weight", "BF16", (coff * d, D), b)
    yield _plain(f"{p}.wgate.weight", "BF16", (coff * d, D), b)
    yield _plain(f"{p}.ape", "F32", (m, coff * d), b)
    yield _plain(f"{p}.norm.weight", "BF16", (d,), b)


def checkpoint_tensors(args: ModelArgs) -> Iterator[TensorSpec]:
    """Every tensor of a release checkpoint for ``args``: top-level first, then blocks in order."""
    D, V, hc = args.dim, args.vocab_size, args.hc_mult
    yield _plain("embed.weight", "BF16", (V, D), None)
    yield _plain("head.weight", "BF16", (V, D), None)
    yield _plain("norm.weight", "BF16", (D,), None)
    yield _plain("hc_head_fn", "F32", (hc, hc * D), None)
    yield _plain("hc_head_base", "F32", (hc,), None)
    yield _plain("hc_head_scale", "F32", (1,), None)
    for b in range(args.n_blocks):
        yield from block_tensors(args, b)


@dataclass(frozen=True)
class Census:
    tensors: int
    nbytes: int
    by_dtype: dict[str, int]
    bytes_by_dtype: dict[str, int]

    def format(self, title: str = "") -> str:
        lines = [f"{title}tensors: {self.tensors:,}", f"{title}bytes:   {self.nbytes:,}"]
        for dt in sorted(self.by_dtype):
            lines.append(f"  {dt:<8} {self.by_dtype[dt]:>8,} tensors {self.bytes_by_dtype[dt]:>20,} bytes")
        return "\n".join(lines)


def census(args: ModelArgs) -> Census:
    """Tensor count, total bytes (the index's ``total_size``) and the per-dtype histogram."""
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    for t in checkpoint_tensors(args):
        count[t.dtype] += 1
        size[t.dtype] += t.nbytes
    return Census(sum(count.values()), sum(size.values()), dict(count), dict(size))
