"""PyTorch reference of DeepSeek-V4 (Flash / Pro), following DeepSeek's ``inference/model.py`` and
``inference/kernel.py`` (Hugging Face ``deepseek-ai/DeepSeek-V4-Flash`` / ``-Pro``, current revision).

One top-down file whose classes and parameter names mirror the official ``inference/model.py``, so
``state_dict()`` keys are the checkpoint tensor names.  Unlike the official code it runs on CPU, keeps
all per-layer cache state in explicit :class:`State` objects (copyable), and accepts chunks of any
length from any position (prefill, single-token decode and chunked continuation are one code path).
It deliberately does not do tensor parallelism, FP8/FP4 GEMMs or file I/O beyond the two loaders.
Every choice made where the official code is silent, or where we deliberately differ, is listed in
docs/reference-model.md.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelArgs

__all__ = [
    "RefOptions",
    "Taps",
    "State",
    "AttnState",
    "CompressorState",
    "RMSNorm",
    "Linear",
    "Compressor",
    "Indexer",
    "Attention",
    "Gate",
    "Expert",
    "MoE",
    "Block",
    "MTPBlock",
    "ParallelHead",
    "Transformer",
    "load_weights",
    "fp8_fake_quant",
    "fp4_fake_quant",
    "e2m1_round",
    "hadamard",
    "hc_split_sinkhorn",
    "rope_freqs",
    "yarn_correction_range",
    "apply_rotary_emb",
]

FP8_MAX = 448.0
FP4_MAX = 6.0
ACT_BLOCK = 128  # FP8 activation block of the official linear() (kernel.py act_quant)
KV_FP8_BLOCK = 64  # KV fake-quant block (official Attention: act_quant(kv[..., :-rd], 64, ...))
FP4_BLOCK = 32


@dataclass(frozen=True)
class RefOptions:
    """Numerics switches.

    ``qat``: the official QAT simulation (FP8 fake-quant of window/compressed KV, Hadamard + FP4
    fake-quant of indexer q/k), as in the current official revision.  ``fp8_act``: quantise the inputs of
    the FP8/FP4-stored linears to e4m3 in 128-blocks like the official ``fp8_gemm``/``fp4_gemm`` path
    (off by default: weight-only engines such as llama.cpp do not do it).  ``act_dtype``: dtype of
    activations, residual streams and KV caches at the official cast points (``torch.bfloat16`` mimics
    the official code; the default float32 keeps parity comparisons tight; ``torch.float64`` runs every op
    in float64, weights included, so different chunkings agree to ~1e-14 even with QAT on).
    """

    qat: bool = True
    fp8_act: bool = False
    act_dtype: torch.dtype = torch.float32


class Taps:
    """Collects named intermediates (``layers.{i}.q``, ``mtp.0.attn_out``, ``logits``, ...).

    ``names``: fnmatch patterns of the taps to keep (``None`` = all).  A tap recorded twice (several
    chunks) is concatenated along the sequence axis when ``concat`` is true, else overwritten.
    """

    def __init__(self, names: Iterable[str] | None = None, concat: bool = True):
        self.patterns = None if names is None else list(names)
        self.concat = concat
        self.data: dict[str, torch.Tensor] = {}

    def want(self, name: str) -> bool:
        return self.patterns is None or any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def put(self, name: str, t: torch.Tensor) -> None:
        if not self.want(name):
            return
        t = t.detach().clone()
        if self.concat and name in self.data:
            prev = self.data[name]
            if prev.dim() == 3 and t.dim() == 3 and prev.size(-1) != t.size(-1):
                # per-query masks over a growing entry list: pad the narrower with zeros (False)
                w = max(prev.size(-1), t.size(-1))
                prev, t = (torch.cat([v, v.new_zeros(*v.shape[:-1], w - v.size(-1))], -1) for v in (prev, t))
            t = torch.cat([prev, t], dim=1)  # every tap is [b, s, ...] or [b, n_entries, ...]
        self.data[name] = t

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.data[name]

    def __contains__(self, name: str) -> bool:
        return name in self.data

    def keys(self):
        return self.data.keys()


@dataclass
class _Ctx:
    """Per-call context passed down explicitly (no module globals)."""

    opts: RefOptions
    taps: Taps | None
    prefix: str = ""

    def tap(self, name: str, t: torch.Tensor) -> None:
        if self.taps is not None:
            self.taps.put(self.prefix + name, t)

    def at(self, prefix: str) -> _Ctx:
        return replace(self, prefix=prefix)


# ---------------------------------------------------------------------------------------------------
# Numerics helpers: the fake-quant of the official kernel.py (act_quant, fp4_act_quant with inplace=True)


def _mdt(x: torch.Tensor) -> torch.dtype:
    """Math dtype: fp32 as in the official code, float64 when the activations are float64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _f(x: torch.Tensor) -> torch.Tensor:
    return x.to(_mdt(x))


def _pow2_ceil_log2(x: torch.Tensor) -> torch.Tensor:
    """``2**ceil(log2(x))`` for positive normal fp32 ``x``, exactly (the official fast_round_scale)."""
    m, e = torch.frexp(x)  # x = m * 2**e, m in [0.5, 1)
    e = torch.where(m == 0.5, e - 1, e)
    return torch.ldexp(torch.ones_like(x), e)


def fp8_fake_quant(x: torch.Tensor, block: int) -> torch.Tensor:
    """Round ``x`` (last dim split in blocks) through e4m3 with a power-of-two scale per block.

    amax is floored at 1e-4 and multiplied by the fp32 constant 1/448 (not divided), as in the official
    ``act_quant`` kernel; the result has the dtype of ``x``.
    """
    n = x.size(-1)
    if n % block:
        raise ValueError(f"fp8_fake_quant: last dim {n} is not a multiple of the block {block}")
    xf = _f(x).unflatten(-1, (n // block, block))
    amax = xf.abs().amax(-1, keepdim=True).clamp_min(1e-4)
    s = _pow2_ceil_log2(amax * torch.tensor(1.0 / FP8_MAX, dtype=torch.float32).to(xf.dtype))
    q = (xf / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).to(xf.dtype)
    return (q * s).flatten(-2).to(x.dtype)


_E2M1_GRID = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def e2m1_round(x: torch.Tensor) -> torch.Tensor:
    """Round fp32 values in [-6, 6] to the nearest e2m1 value, ties to the even code (RNE)."""
    g = _E2M1_GRID.to(x.device)
    a = x.abs().unsqueeze(-1)
    d = (a - g).abs()
    dmin = d.amin(-1, keepdim=True)
    # among equally near grid points prefer the even code (mantissa bit 0)
    pref = (d == dmin).float() * (2.0 - (torch.arange(8, device=x.device) % 2).float())
    v = g[pref.argmax(-1)]
    return torch.where(x < 0, -v, v)


def fp4_fake_quant(x: torch.Tensor, block: int = FP4_BLOCK) -> torch.Tensor:
    """Round through e2m1 with a power-of-two scale per block (the official ``fp4_act_quant``)."""
    n = x.size(-1)
    if n % block:
        raise ValueError(f"fp4_fake_quant: last dim {n} is not a multiple of the block {block}")
    xf = _f(x).unflatten(-1, (n // block, block))
    amax = xf.abs().amax(-1, keepdim=True).clamp_min(FP4_MAX * 2.0**-126)
    s = _pow2_ceil_log2(amax * torch.tensor(1.0 / FP4_MAX, dtype=torch.float32).to(xf.dtype))
    q = e2m1_round((xf / s).clamp(-FP4_MAX, FP4_MAX))
    return (q * s).flatten(-2).to(x.dtype)


def hadamard(x: torch.Tensor) -> torch.Tensor:
    """Normalised Walsh-Hadamard transform (Sylvester order) of the last dim, fp32 math: what the official
    ``rotate_activation`` computes with ``fast_hadamard_transform`` (no random signs, despite its comment)."""
    n = x.size(-1)
    if n & (n - 1):
        raise ValueError(f"hadamard: size {n} is not a power of two")
    y = _f(x)
    h = 1
    while h < n:
        y = y.unflatten(-1, (n // (2 * h), 2, h))
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack([a + b, a - b], dim=-2).flatten(-3)
        h *= 2
    return (y * n**-0.5).to(x.dtype)


def hc_split_sinkhorn(
    mixes: torch.Tensor, hc_scale: torch.Tensor, hc_base: torch.Tensor, hc: int, iters: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mHC coefficients as the official kernel.py ``hc_split_sinkhorn_kernel``: ``pre [..,hc]``, ``post [..,hc]``,
    ``comb [..,hc,hc]`` (fp32; row softmax, then alternating column/row normalisation)."""
    pre = torch.sigmoid(mixes[..., :hc] * hc_scale[0] + hc_base[:hc]) + eps
    post = 2 * torch.sigmoid(mixes[..., hc : 2 * hc] * hc_scale[1] + hc_base[hc : 2 * hc])
    comb = (mixes[..., 2 * hc :] * hc_scale[2] + hc_base[2 * hc :]).unflatten(-1, (hc, hc))
    comb = comb.softmax(-1) + eps
    comb = comb / (comb.sum(-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(-1, keepdim=True) + eps)
        comb = comb / (comb.sum(-2, keepdim=True) + eps)
    return pre, post, comb


# ---------------------------------------------------------------------------------------------------
# RoPE (official apply_rotary_emb): interleaved pairs on the last rope_head_dim dims, per-layer base; YaRN
# only in compressed layers (window-only layers and MTP use rope_theta without it)


def yarn_correction_range(args: ModelArgs, base: float) -> tuple[int, int]:
    """YaRN ``(low, high)`` pair indices for ``base`` (15, 25 for the released configs)."""
    dim = args.rope_head_dim

    def corr(rot: float) -> float:
        return dim * math.log(args.original_seq_len / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = math.floor(corr(args.beta_fast))
    high = math.ceil(corr(args.beta_slow))
    return max(low, 0), min(high, dim - 1)


@lru_cache(maxsize=32)
def _rope_freqs_cached(dim: int, base: float, yarn: tuple[int, int, float] | None) -> torch.Tensor:
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    if yarn is not None:
        low, high, factor = yarn
        hi = high + 0.001 if low == high else high
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (hi - low)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / factor * (1 - smooth) + freqs * smooth
    return freqs


def rope_freqs(args: ModelArgs, ratio: int) -> torch.Tensor:
    """Per-pair angular frequencies ``[rope_head_dim/2]`` fp32 of a block with compress ratio ``ratio``.

    Window-only blocks (ratio 0, MTP): base ``rope_theta`` without YaRN; compressed blocks: base
    ``compress_rope_theta`` with the YaRN ramp (no attention mscale).
    """
    if ratio == 0 or args.original_seq_len <= 0:
        base = args.rope_theta if ratio == 0 else args.compress_rope_theta
        return _rope_freqs_cached(args.rope_head_dim, float(base), None)
    low, high = yarn_correction_range(args, args.compress_rope_theta)
    return _rope_freqs_cached(args.rope_head_dim, float(args.compress_rope_theta), (low, high, float(args.rope_factor)))


def apply_rotary_emb(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Rotate adjacent pairs of ``x [b, s, (h,) rd]`` at positions ``pos [s]``; returns x's dtype."""
    ang = torch.outer(pos.to(torch.float32), freqs.to(pos.device))  # [s, rd/2]
    cis = torch.polar(torch.ones_like(ang), ang)
    if inverse:
        cis = cis.conj()
    xc = torch.view_as_complex(_f(x).unflatten(-1, (-1, 2)).contiguous())
    cis = cis.view(1, x.size(1), *([1] * (x.dim() - 3)), -1)
    return torch.view_as_real(xc * cis).flatten(-2).to(x.dtype)


def _rope_tail(x: torch.Tensor, pos: torch.Tensor, freqs: torch.Tensor, rd: int, inverse: bool = False) -> torch.Tensor:
    return torch.cat([x[..., :-rd], apply_rotary_emb(x[..., -rd:], pos, freqs, inverse)], dim=-1)


# ---------------------------------------------------------------------------------------------------
# State


@dataclass
class CompressorState:
    """Running pooling state (fp32), official layout ``[b, coff*m, coff*d]``.

    m=4: slots ``0..3`` = previous complete block (all 2d features), ``4..7`` = current partial block;
    m=128: slots ``0..127`` = current partial block.  Scores include ``ape``; empty = (0, -inf).
    """

    kv: torch.Tensor
    score: torch.Tensor


@dataclass
class AttnState:
    """Per-block attention cache: raw-KV ring buffer (slot ``p mod window``), compressed KV entries,
    indexer KV entries and the compressors' running state."""

    window: torch.Tensor  # [b, win, hd]
    comp_kv: torch.Tensor | None = None  # [b, n/m, hd]
    comp: CompressorState | None = None
    idx_kv: torch.Tensor | None = None  # [b, n/4, index_head_dim]
    idx_comp: CompressorState | None = None


@dataclass
class State:
    """Cache of one batch of sequences: ``pos`` tokens consumed by the main model (all rows share it),
    one :class:`AttnState` per main block and per MTP block (``mtp_pos`` tokens consumed by each)."""

    pos: int
    layers: list[AttnState]
    mtp: list[AttnState] = field(default_factory=list)
    mtp_pos: list[int] = field(default_factory=list)

    def clone(self) -> State:
        def c(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v.clone()
            if isinstance(v, (AttnState, CompressorState)):
                return type(v)(**{k: c(getattr(v, k)) for k in v.__dataclass_fields__})
            return v

        return State(self.pos, [c(s) for s in self.layers], [c(s) for s in self.mtp], list(self.mtp_pos))


# ---------------------------------------------------------------------------------------------------
# Modules


class RMSNorm(nn.Module):
    """fp32 RMSNorm, result cast back to the input dtype (weights stored BF16, held fp32)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = _f(x)
        xf = xf * torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.eps)
        return (self.weight * xf).to(x.dtype)


class Linear(nn.Module):
    """``y = x W^T`` with fp32 math, output in the input dtype.

    ``quantized``: the checkpoint stores this weight as FP8/FP4, so the official code quantises the
    activation to e4m3 in 128-blocks first (applied only with ``RefOptions.fp8_act``).
    """

    def __init__(self, in_features: int, out_features: int, quantized: bool = True):
        super().__init__()
        self.quantized = quantized
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=torch.float32))

    def forward(self, x: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
        xin = x
        if self.quantized and ctx.opts.fp8_act:
            xin = fp8_fake_quant(x, ACT_BLOCK)
        xm = _f(xin)
        return F.linear(xm, self.weight.to(xm.dtype)).to(x.dtype)


class Compressor(nn.Module):
    """Softmax-gated pooling of ``ratio`` tokens into one KV entry (official ``Compressor``), with its
    running state for tokens of a block not yet complete.

    ratio 4 overlaps (width 8, stride 4, coff 2); ``rotate`` marks the indexer's compressor (Hadamard +
    FP4 simulation instead of FP8 on the non-rope dims).
    """

    def __init__(self, args: ModelArgs, compress_ratio: int, head_dim: int, rotate: bool = False):
        super().__init__()
        self.ratio = compress_ratio
        self.overlap = compress_ratio == 4
        self.head_dim = head_dim
        self.rope_head_dim = args.rope_head_dim
        self.rotate = rotate
        coff = 1 + self.overlap
        self.coff = coff
        self.ape = nn.Parameter(torch.empty(compress_ratio, coff * head_dim, dtype=torch.float32))
        self.wkv = Linear(args.dim, coff * head_dim, quantized=False)
        self.wgate = Linear(args.dim, coff * head_dim, quantized=False)
        self.norm = RMSNorm(head_dim, args.norm_eps)

    def init_state(self, bsz: int, device: torch.device, dtype: torch.dtype = torch.float32) -> CompressorState:
        shape = (bsz, self.coff * self.ratio, self.coff * self.head_dim)
        return CompressorState(
            torch.zeros(shape, device=device, dtype=dtype), torch.full(shape, float("-inf"), device=device, dtype=dtype)
        )

    def forward(
        self, x: torch.Tensor, start_pos: int, st: CompressorState, freqs: torch.Tensor, ctx: _Ctx
    ) -> torch.Tensor:
        """Consume tokens ``start_pos..start_pos+s-1``; return the entries of the blocks completed by
        them ``[b, n_new, d]`` (post-processed) and advance ``st`` in place."""
        bsz, seqlen, _ = x.size()
        m, d, rd = self.ratio, self.head_dim, self.rope_head_dim
        dtype = x.dtype
        xf = _f(x)
        kv = self.wkv(xf, ctx)  # [b,s,coff*d] fp32
        pos = torch.arange(start_pos, start_pos + seqlen, device=x.device)
        score = self.wgate(xf, ctx) + self.ape[pos % m]
        off = m if self.overlap else 0
        r0 = start_pos % m
        cur_kv = torch.cat([st.kv[:, off : off + r0], kv], dim=1)  # tokens (start_pos-r0) .. end-1
        cur_sc = torch.cat([st.score[:, off : off + r0], score], dim=1)
        nb, rem = divmod(r0 + seqlen, m)
        blk_kv = cur_kv[:, : nb * m].unflatten(1, (nb, m))  # [b,nb,m,coff*d]
        blk_sc = cur_sc[:, : nb * m].unflatten(1, (nb, m))
        if self.overlap:
            # candidates of block j: first-half channels of block j-1, second-half channels of block j
            prev_kv = torch.cat([st.kv[:, None, :m], blk_kv], dim=1)[:, :nb]
            prev_sc = torch.cat([st.score[:, None, :m], blk_sc], dim=1)[:, :nb]
            pool_kv = torch.cat([prev_kv[..., :d], blk_kv[..., d:]], dim=2)  # [b,nb,2m,d]
            pool_sc = torch.cat([prev_sc[..., :d], blk_sc[..., d:]], dim=2)
        else:
            pool_kv, pool_sc = blk_kv, blk_sc
        out = (pool_kv * pool_sc.softmax(dim=2)).sum(dim=2)  # [b,nb,d] fp32
        # advance the running state
        if self.overlap and nb > 0:
            st.kv[:, :m] = blk_kv[:, -1]
            st.score[:, :m] = blk_sc[:, -1]
        st.kv[:, off : off + m] = 0.0
        st.score[:, off : off + m] = float("-inf")
        st.kv[:, off : off + rem] = cur_kv[:, nb * m :]
        st.score[:, off : off + rem] = cur_sc[:, nb * m :]
        if nb == 0:
            return out.to(dtype)
        first = (start_pos - r0) // m
        entry_pos = (first + torch.arange(nb, device=x.device)) * m  # rope at the block's first token
        out = self.norm(out.to(dtype))
        out = _rope_tail(out, entry_pos, freqs, rd)
        if ctx.opts.qat:
            if self.rotate:
                out = fp4_fake_quant(hadamard(out))
            else:
                out = torch.cat([fp8_fake_quant(out[..., :-rd], KV_FP8_BLOCK), out[..., -rd:]], dim=-1)
        elif self.rotate:
            out = hadamard(out)
        return out


class Indexer(nn.Module):
    """Lightning indexer (official ``Indexer``): picks the top-k compressed entries per query (CSA layers)."""

    def __init__(self, args: ModelArgs, compress_ratio: int = 4):
        super().__init__()
        self.n_heads = args.index_n_heads
        self.head_dim = args.index_head_dim
        self.rope_head_dim = args.rope_head_dim
        self.index_topk = args.index_topk
        self.ratio = compress_ratio
        self.wq_b = Linear(args.q_lora_rank, self.n_heads * self.head_dim)
        self.weights_proj = Linear(args.dim, self.n_heads, quantized=False)
        self.softmax_scale = self.head_dim**-0.5
        self.compressor = Compressor(args, compress_ratio, self.head_dim, rotate=True)

    def scores(self, q: torch.Tensor, w: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``score[b,s,t] = sum_h w[b,s,h] * relu(q[b,s,h] . k[b,t])`` in the activation dtype."""
        dt = q.dtype
        qk = torch.einsum("bshd,btd->bsht", _f(q), _f(k)).to(dt)
        return (qk.relu() * w.unsqueeze(-1)).sum(dim=2)

    def forward(
        self, x: torch.Tensor, qr: torch.Tensor, start_pos: int, st: AttnState, freqs: torch.Tensor, ctx: _Ctx
    ) -> torch.Tensor:
        """Return the selection mask ``[b, s, n_entries]`` over all indexer entries so far."""
        bsz, seqlen, _ = x.size()
        pos = torch.arange(start_pos, start_pos + seqlen, device=x.device)
        q = self.wq_b(qr, ctx).unflatten(-1, (self.n_heads, self.head_dim))
        q = _rope_tail(q, pos, freqs, self.rope_head_dim)
        q = hadamard(q)
        if ctx.opts.qat:
            q = fp4_fake_quant(q)
        assert st.idx_comp is not None and st.idx_kv is not None
        new = self.compressor(x, start_pos, st.idx_comp, freqs, ctx)
        st.idx_kv = torch.cat([st.idx_kv, new.to(st.idx_kv.dtype)], dim=1)
        w = self.weights_proj(x, ctx) * (self.softmax_scale * self.n_heads**-0.5)
        score = self.scores(q, w, st.idx_kv)  # [b,s,n]
        n = st.idx_kv.size(1)
        visible = torch.arange(n, device=x.device)[None, :] < ((pos + 1) // self.ratio)[:, None]
        score = _f(score).masked_fill(~visible, float("-inf"))
        k = min(self.index_topk, n)
        # stable descending sort: exact ties (e.g. all-ReLU-zero scores) resolve to the lower index
        order = torch.sort(score, dim=-1, descending=True, stable=True).indices[..., :k]
        chosen = torch.gather(visible.expand(bsz, -1, -1), -1, order)
        sel = torch.zeros(bsz, seqlen, n, dtype=torch.bool, device=x.device)
        sel.scatter_(-1, order, chosen)
        ctx.tap("idx_q", q)
        ctx.tap("idx_kv", new)
        if ctx.taps is not None and ctx.taps.want(ctx.prefix + "idx_topk"):
            idx = torch.where(sel, torch.arange(n, device=x.device), n)
            idx = idx.sort(-1).values[..., : self.index_topk]
            idx = torch.where(idx == n, -1, idx)
            if idx.size(-1) < self.index_topk:
                idx = F.pad(idx, (0, self.index_topk - idx.size(-1)), value=-1)
            ctx.tap("idx_topk", idx)  # ascending entry ids, -1 padded to index_topk
        return sel


class Attention(nn.Module):
    """Shared-latent MQA over a 128-token window plus compressed entries, one softmax with a per-head
    sink, inverse RoPE on the output and the grouped low-rank output projection (official ``Attention``)."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.args = args
        self.n_heads = args.n_heads
        self.head_dim = args.head_dim
        self.rope_head_dim = args.rope_head_dim
        self.n_groups = args.o_groups
        self.o_lora_rank = args.o_lora_rank
        self.window_size = args.window_size
        self.compress_ratio = args.compress_ratios[layer_id]
        self.eps = args.norm_eps
        self.attn_sink = nn.Parameter(torch.empty(self.n_heads, dtype=torch.float32))
        self.wq_a = Linear(args.dim, args.q_lora_rank)
        self.q_norm = RMSNorm(args.q_lora_rank, self.eps)
        self.wq_b = Linear(args.q_lora_rank, self.n_heads * self.head_dim)
        self.wkv = Linear(args.dim, self.head_dim)
        self.kv_norm = RMSNorm(self.head_dim, self.eps)
        # wo_a is FP8 in the checkpoint but the official model dequantises it and runs a BF16 einsum
        self.wo_a = Linear(
            self.n_heads * self.head_dim // self.n_groups, self.n_groups * self.o_lora_rank, quantized=False
        )
        self.wo_b = Linear(self.n_groups * self.o_lora_rank, args.dim)
        self.softmax_scale = self.head_dim**-0.5
        self.compressor: Compressor | None = None
        self.indexer: Indexer | None = None
        if self.compress_ratio:
            self.compressor = Compressor(args, self.compress_ratio, self.head_dim)
            if self.compress_ratio == 4:
                self.indexer = Indexer(args, self.compress_ratio)

    def init_state(self, bsz: int, device: torch.device, dtype: torch.dtype) -> AttnState:
        mdt = torch.float64 if dtype == torch.float64 else torch.float32  # compressor state: fp32
        st = AttnState(window=torch.zeros(bsz, self.window_size, self.head_dim, device=device, dtype=dtype))
        if self.compressor is not None:
            st.comp_kv = torch.zeros(bsz, 0, self.head_dim, device=device, dtype=dtype)
            st.comp = self.compressor.init_state(bsz, device, mdt)
        if self.indexer is not None:
            st.idx_kv = torch.zeros(bsz, 0, self.indexer.head_dim, device=device, dtype=dtype)
            st.idx_comp = self.indexer.compressor.init_state(bsz, device, mdt)
        return st

    def forward(self, x: torch.Tensor, start_pos: int, st: AttnState, ctx: _Ctx) -> torch.Tensor:
        bsz, seqlen, _ = x.size()
        dt = x.dtype
        win, ratio, rd = self.window_size, self.compress_ratio, self.rope_head_dim
        freqs = rope_freqs(self.args, ratio)
        pos = torch.arange(start_pos, start_pos + seqlen, device=x.device)
        # q: low rank, q_norm, unweighted per-head RMS, rope on the last rd dims
        qr = self.q_norm(self.wq_a(x, ctx))
        q = self.wq_b(qr, ctx).unflatten(-1, (self.n_heads, self.head_dim))
        qf = _f(q)
        q = (qf * torch.rsqrt(qf.square().mean(-1, keepdim=True) + self.eps)).to(dt)
        q = _rope_tail(q, pos, freqs, rd)
        # single latent kv (K = V), rope, FP8 simulation of the non-rope dims
        kv = self.kv_norm(self.wkv(x, ctx))
        kv = _rope_tail(kv, pos, freqs, rd)
        if ctx.opts.qat:
            kv = torch.cat([fp8_fake_quant(kv[..., :-rd], KV_FP8_BLOCK), kv[..., -rd:]], dim=-1)
        ctx.tap("q", q)
        ctx.tap("kv", kv)
        # window keys: the ring buffer's still-valid positions, then this chunk
        n_prev = min(start_pos, win)
        prev_pos = torch.arange(start_pos - n_prev, start_pos, device=x.device)
        keys = torch.cat([st.window[:, prev_pos % win].to(dt), kv], dim=1)
        key_pos = torch.cat([prev_pos, pos])
        mask = (key_pos[None, :] <= pos[:, None]) & (key_pos[None, :] > pos[:, None] - win)
        mask = mask.expand(bsz, -1, -1)
        # write the ring buffer (only the last `win` tokens of the chunk survive)
        keep = min(seqlen, win)
        st.window[:, pos[-keep:] % win] = kv[:, -keep:].to(st.window.dtype)
        if ratio:
            assert self.compressor is not None and st.comp is not None and st.comp_kv is not None
            sel = None
            if self.indexer is not None:
                sel = self.indexer(x, qr, start_pos, st, freqs, ctx)
            new = self.compressor(x, start_pos, st.comp, freqs, ctx)
            ctx.tap("comp_kv", new)
            st.comp_kv = torch.cat([st.comp_kv, new.to(st.comp_kv.dtype)], dim=1)
            n = st.comp_kv.size(1)
            # entry j (block [jm, jm+m-1]) is visible from query position jm+m-1 on (it exists once its
            # block is complete; official get_compress_topk_idxs: j < (p+1)//m)
            cmask = torch.arange(n, device=x.device)[None, :] < ((pos + 1) // ratio)[:, None]
            cmask = cmask.expand(bsz, -1, -1)
            if sel is not None:
                cmask = cmask & sel
            ctx.tap("comp_mask", cmask)
            keys = torch.cat([keys, st.comp_kv.to(dt)], dim=1)
            mask = torch.cat([mask, cmask], dim=-1)
        o = self.sparse_attn(q, keys, mask, dt)
        o = _rope_tail(o, pos, freqs, rd, inverse=True)
        # grouped low-rank output projection
        o = o.reshape(bsz, seqlen, self.n_groups, -1)
        wo_a = self.wo_a.weight.view(self.n_groups, self.o_lora_rank, -1)
        o = _f(o)
        o = torch.einsum("bsgd,grd->bsgr", o, wo_a.to(o.dtype)).to(dt)
        out = self.wo_b(o.flatten(2), ctx)
        ctx.tap("attn_out", out)
        return out

    def sparse_attn(self, q: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        """One softmax over the allowed keys plus the per-head sink (denominator only, unscaled).

        q ``[b,s,h,d]``, keys ``[b,t,d]``, mask ``[b,s,t]``.  The running max is taken over the keys
        only, as in the official kernel; probabilities are rounded to ``dt`` before the PV product.
        """
        qm, km = _f(q), _f(keys)
        z = torch.einsum("bshd,btd->bsht", qm, km) * self.softmax_scale
        z = z.masked_fill(~mask[:, :, None, :], float("-inf"))
        zmax = z.amax(-1, keepdim=True)  # finite: the query's own position is always in the window
        p = torch.exp(z - zmax)
        denom = p.sum(-1, keepdim=True) + torch.exp(self.attn_sink.view(1, 1, -1, 1) - zmax)
        o = torch.einsum("bsht,btd->bshd", p.to(dt).to(km.dtype), km) / denom
        return o.to(dt)


class Gate(nn.Module):
    """Router (official ``Gate``): sqrt(softplus) scores, bias for selection only, hash routing via tid2eid."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.topk = args.n_activated_experts
        self.route_scale = args.route_scale
        self.hash = layer_id < args.n_hash_layers
        self.weight = nn.Parameter(torch.empty(args.n_routed_experts, args.dim, dtype=torch.float32))
        self.bias: nn.Parameter | None = None
        if self.hash:
            self.register_buffer("tid2eid", torch.zeros(args.vocab_size, self.topk, dtype=torch.int64))
        else:
            self.bias = nn.Parameter(torch.empty(args.n_routed_experts, dtype=torch.float32))

    def forward(self, x: torch.Tensor, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xm = _f(x)
        scores = F.softplus(F.linear(xm, self.weight.to(xm.dtype))).sqrt()
        if self.hash:
            indices = self.tid2eid[input_ids]
        else:
            assert self.bias is not None
            indices = (scores + self.bias).topk(self.topk, dim=-1).indices
        weights = scores.gather(-1, indices)
        weights = weights / weights.sum(dim=-1, keepdim=True) * self.route_scale
        return weights, indices


class Expert(nn.Module):
    """SwiGLU with the clamp (up to [-limit, limit], gate to <= limit); routing weight applied before w2."""

    def __init__(self, dim: int, inter_dim: int, swiglu_limit: float = 0.0):
        super().__init__()
        self.w1 = Linear(dim, inter_dim)
        self.w2 = Linear(inter_dim, dim)
        self.w3 = Linear(dim, inter_dim)
        self.swiglu_limit = swiglu_limit

    def forward(self, x: torch.Tensor, ctx: _Ctx, weights: torch.Tensor | None = None) -> torch.Tensor:
        gate = _f(self.w1(x, ctx))
        up = _f(self.w3(x, ctx))
        if self.swiglu_limit > 0:
            up = up.clamp(-self.swiglu_limit, self.swiglu_limit)
            gate = gate.clamp(max=self.swiglu_limit)
        h = F.silu(gate) * up
        if weights is not None:
            h = weights * h
        return self.w2(h.to(x.dtype), ctx)


class MoE(nn.Module):
    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.dim = args.dim
        self.n_routed_experts = args.n_routed_experts
        self.gate = Gate(layer_id, args)
        self.experts = nn.ModuleList(
            [Expert(args.dim, args.moe_inter_dim, args.swiglu_limit) for _ in range(args.n_routed_experts)]
        )
        # the current official revision clamps the shared expert too (the first one did not; vLLM and
        # transformers clamp it)
        self.shared_experts = Expert(args.dim, args.moe_inter_dim, args.swiglu_limit)

    def forward(self, x: torch.Tensor, input_ids: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
        shape = x.size()
        x = x.reshape(-1, self.dim)
        weights, indices = self.gate(x, input_ids.reshape(-1))
        ctx.tap("router_idx", indices.view(*shape[:-1], -1))
        ctx.tap("router_w", weights.view(*shape[:-1], -1))
        y = torch.zeros_like(x, dtype=_mdt(x))
        counts = torch.bincount(indices.flatten(), minlength=self.n_routed_experts).tolist()
        for i in range(self.n_routed_experts):
            if counts[i] == 0:
                continue
            idx, top = torch.where(indices == i)
            y[idx] += self.experts[i](x[idx], ctx, weights[idx, top, None]).to(y.dtype)
        y += self.shared_experts(x, ctx).to(y.dtype)
        return y.to(x.dtype).view(shape)


class Block(nn.Module):
    """Attention and MoE sub-layers, each wrapped in mHC pre/post over ``hc_mult`` streams (official ``Block``)."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__()
        self.layer_id = layer_id
        self.norm_eps = args.norm_eps
        self.attn = Attention(layer_id, args)
        self.ffn = MoE(layer_id, args)
        self.attn_norm = RMSNorm(args.dim, self.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, self.norm_eps)
        self.hc_mult = hc = args.hc_mult
        self.hc_sinkhorn_iters = args.hc_sinkhorn_iters
        self.hc_eps = args.hc_eps
        mix_hc, hc_dim = (2 + hc) * hc, hc * args.dim
        self.hc_attn_fn = nn.Parameter(torch.empty(mix_hc, hc_dim, dtype=torch.float32))
        self.hc_ffn_fn = nn.Parameter(torch.empty(mix_hc, hc_dim, dtype=torch.float32))
        self.hc_attn_base = nn.Parameter(torch.empty(mix_hc, dtype=torch.float32))
        self.hc_ffn_base = nn.Parameter(torch.empty(mix_hc, dtype=torch.float32))
        self.hc_attn_scale = nn.Parameter(torch.empty(3, dtype=torch.float32))
        self.hc_ffn_scale = nn.Parameter(torch.empty(3, dtype=torch.float32))

    def hc_pre(
        self, x: torch.Tensor, hc_fn: torch.Tensor, hc_scale: torch.Tensor, hc_base: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: [b,s,hc,d] -> y [b,s,d], post [b,s,hc], comb [b,s,hc,hc] (rows j = source stream)
        shape, dtype = x.size(), x.dtype
        xf = _f(x.flatten(2))
        rsqrt = torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.norm_eps)
        mixes = F.linear(xf, hc_fn.to(xf.dtype)) * rsqrt
        pre, post, comb = hc_split_sinkhorn(mixes, hc_scale, hc_base, self.hc_mult, self.hc_sinkhorn_iters, self.hc_eps)
        y = torch.sum(pre.unsqueeze(-1) * xf.view(shape), dim=2)
        return y.to(dtype), pre, post, comb

    @staticmethod
    def hc_post(x: torch.Tensor, residual: torch.Tensor, post: torch.Tensor, comb: torch.Tensor) -> torch.Tensor:
        # X'_k = post_k * f + sum_j comb[j,k] X_j (comb consumed transposed)
        y = post.unsqueeze(-1) * _f(x.unsqueeze(-2)) + torch.sum(comb.unsqueeze(-1) * _f(residual.unsqueeze(-2)), dim=2)
        return y.to(x.dtype)

    def forward(
        self, x: torch.Tensor, start_pos: int, input_ids: torch.Tensor, st: AttnState, ctx: _Ctx
    ) -> torch.Tensor:
        residual = x
        h, pre, post, comb = self.hc_pre(x, self.hc_attn_fn, self.hc_attn_scale, self.hc_attn_base)
        ctx.tap("hc_attn_pre", pre)
        ctx.tap("hc_attn_post", post)
        ctx.tap("hc_attn_comb", comb)
        h = self.attn_norm(h)
        ctx.tap("attn_in", h)
        h = self.attn(h, start_pos, st, ctx)
        x = self.hc_post(h, residual, post, comb)
        residual = x
        h, pre, post, comb = self.hc_pre(x, self.hc_ffn_fn, self.hc_ffn_scale, self.hc_ffn_base)
        ctx.tap("hc_ffn_pre", pre)
        ctx.tap("hc_ffn_post", post)
        ctx.tap("hc_ffn_comb", comb)
        h = self.ffn_norm(h)
        ctx.tap("ffn_in", h)
        h = self.ffn(h, input_ids, ctx)
        ctx.tap("moe_out", h)
        x = self.hc_post(h, residual, post, comb)
        ctx.tap("block_out", x)
        return x


class ParallelHead(nn.Module):
    """hc_head collapse (no Sinkhorn), final norm, fp32 logits (one vocabulary shard: the whole table)."""

    def __init__(self, vocab_size: int, dim: int, norm_eps: float = 1e-6, hc_eps: float = 1e-6):
        super().__init__()
        self.norm_eps = norm_eps
        self.hc_eps = hc_eps
        self.weight = nn.Parameter(torch.empty(vocab_size, dim, dtype=torch.float32))

    def forward(
        self,
        x: torch.Tensor,
        hc_fn: torch.Tensor,
        hc_scale: torch.Tensor,
        hc_base: torch.Tensor,
        norm: RMSNorm,
        ctx: _Ctx,
        all_logits: bool = False,
    ) -> torch.Tensor:
        u = self.hc_head(x, hc_fn, hc_scale, hc_base)
        ctx.tap("hc_head_out", u)
        u = norm(u)
        if not all_logits:
            u = u[:, -1:]
        um = _f(u)
        logits = F.linear(um, self.weight.to(um.dtype))
        ctx.tap("logits", logits)
        return logits if all_logits else logits[:, 0]

    def hc_head(
        self, x: torch.Tensor, hc_fn: torch.Tensor, hc_scale: torch.Tensor, hc_base: torch.Tensor
    ) -> torch.Tensor:
        shape, dtype = x.size(), x.dtype
        xf = _f(x.flatten(2))
        rsqrt = torch.rsqrt(xf.square().mean(-1, keepdim=True) + self.norm_eps)
        mixes = F.linear(xf, hc_fn.to(xf.dtype)) * rsqrt
        pre = torch.sigmoid(mixes * hc_scale + hc_base) + self.hc_eps
        return torch.sum(pre.unsqueeze(-1) * xf.view(shape), dim=2).to(dtype)


class MTPBlock(Block):
    """Multi-token-prediction draft block (official ``MTPBlock``): separate e_proj/h_proj, own hc_head and norm;
    embedding and head are the main model's (passed in, not owned)."""

    def __init__(self, layer_id: int, args: ModelArgs):
        super().__init__(layer_id, args)
        self.e_proj = Linear(args.dim, args.dim)
        self.h_proj = Linear(args.dim, args.dim)
        self.enorm = RMSNorm(args.dim, args.norm_eps)
        self.hnorm = RMSNorm(args.dim, args.norm_eps)
        self.norm = RMSNorm(args.dim, args.norm_eps)
        hc, hc_dim = args.hc_mult, args.hc_mult * args.dim
        self.hc_head_fn = nn.Parameter(torch.empty(hc, hc_dim, dtype=torch.float32))
        self.hc_head_base = nn.Parameter(torch.empty(hc, dtype=torch.float32))
        self.hc_head_scale = nn.Parameter(torch.empty(1, dtype=torch.float32))

    def forward(
        self,
        x: torch.Tensor,
        start_pos: int,
        input_ids: torch.Tensor,  # type: ignore[override]
        st: AttnState,
        ctx: _Ctx,
        embed: nn.Embedding,
        head: ParallelHead,
        all_logits: bool = False,
    ) -> torch.Tensor:
        # x: [b,s,hc,d] pre-hc_head streams of the main model; input_ids: the tokens to embed
        e = self.enorm(embed(input_ids).to(ctx.opts.act_dtype))
        h = self.hnorm(x)
        x = self.e_proj(e, ctx).unsqueeze(2) + self.h_proj(h, ctx)
        x = super().forward(x, start_pos, input_ids, st, ctx)
        return head(x, self.hc_head_fn, self.hc_head_scale, self.hc_head_base, self.norm, ctx, all_logits)


class Transformer(nn.Module):
    """embed -> hc_mult streams -> blocks -> hc_head -> norm -> head; ``mtp`` blocks run separately."""

    def __init__(self, args: ModelArgs, opts: RefOptions | None = None):
        super().__init__()
        args.validate()
        self.args = args
        self.opts = opts or RefOptions()
        self.hc_mult = hc = args.hc_mult
        self.embed = nn.Embedding(args.vocab_size, args.dim, dtype=torch.float32)
        self.layers = nn.ModuleList([Block(i, args) for i in range(args.n_layers)])
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.head = ParallelHead(args.vocab_size, args.dim, args.norm_eps, args.hc_eps)
        self.mtp = nn.ModuleList([MTPBlock(args.n_layers + k, args) for k in range(args.n_mtp_layers)])
        self.hc_head_fn = nn.Parameter(torch.empty(hc, hc * args.dim, dtype=torch.float32))
        self.hc_head_base = nn.Parameter(torch.empty(hc, dtype=torch.float32))
        self.hc_head_scale = nn.Parameter(torch.empty(1, dtype=torch.float32))
        if self.opts.act_dtype == torch.float64:
            self.double()  # float64 math everywhere: weights held in float64 (same values)

    # ---- state ----
    def new_state(self, bsz: int = 1) -> State:
        dev, dt = self.head.weight.device, self.opts.act_dtype
        return State(
            0,
            [blk.attn.init_state(bsz, dev, dt) for blk in self.layers],
            [blk.attn.init_state(bsz, dev, dt) for blk in self.mtp],
            [0] * len(self.mtp),
        )

    # ---- forward ----
    @torch.no_grad()
    def forward(
        self,
        input_ids: torch.Tensor,
        state: State | None = None,
        *,
        all_logits: bool = False,
        taps: Taps | None = None,
        return_hidden: bool = False,
    ) -> Any:
        """Consume ``input_ids [b, s]`` at positions ``state.pos ..``; return fp32 logits of the last
        position ``[b, V]`` (``all_logits``: ``[b, s, V]``).  ``state`` is advanced in place (a fresh one
        is made when ``None``).  ``return_hidden`` also returns the pre-hc_head streams ``[b,s,hc,d]``
        (the MTP input)."""
        if input_ids.dim() != 2 or input_ids.size(1) == 0:
            raise ValueError(f"input_ids must be [batch, seq] with seq >= 1, got shape {tuple(input_ids.shape)}")
        if state is None:
            state = self.new_state(input_ids.size(0))
        if state.layers and state.layers[0].window.size(0) != input_ids.size(0):
            raise ValueError(
                f"state was made for batch {state.layers[0].window.size(0)}, input has batch "
                f"{input_ids.size(0)}; use model.new_state({input_ids.size(0)})"
            )
        ctx = _Ctx(self.opts, taps)
        start_pos = state.pos
        h = self.embed(input_ids).to(self.opts.act_dtype)
        ctx.tap("embed", h)
        h = h.unsqueeze(2).repeat(1, 1, self.hc_mult, 1)
        for i, layer in enumerate(self.layers):
            h = layer(h, start_pos, input_ids, state.layers[i], ctx.at(f"layers.{i}."))
        logits = self.head(h, self.hc_head_fn, self.hc_head_scale, self.hc_head_base, self.norm, ctx, all_logits)
        state.pos = start_pos + input_ids.size(1)
        return (logits, h) if return_hidden else logits

    @torch.no_grad()
    def forward_mtp(
        self,
        hidden: torch.Tensor,
        input_ids: torch.Tensor,
        state: State,
        k: int = 0,
        *,
        all_logits: bool = False,
        taps: Taps | None = None,
    ) -> torch.Tensor:
        """Run MTP block ``k`` on main-model streams ``hidden [b,s,hc,d]`` combined with the embeddings
        of ``input_ids [b,s]`` (caller supplies the shifted tokens: stream i with token i+1); uses and
        advances ``state.mtp[k]`` from ``state.mtp_pos[k]``."""
        ctx = _Ctx(self.opts, taps, prefix=f"mtp.{k}.")
        start = state.mtp_pos[k]
        logits = self.mtp[k](
            hidden.to(self.opts.act_dtype), start, input_ids, state.mtp[k], ctx, self.embed, self.head, all_logits
        )
        state.mtp_pos[k] = start + input_ids.size(1)
        return logits

    # ---- weights ----
    @classmethod
    def from_checkpoint(cls, path: str | Path, opts: RefOptions | None = None) -> Transformer:
        """Build from a release-layout checkpoint directory via :class:`dsv4_gguf.checkpoint.Checkpoint`
        (FP8/FP4 weights dequantized to fp32)."""
        from ..checkpoint import Checkpoint

        ckpt = Checkpoint(path)
        model = cls(ckpt.args, opts)
        load_weights(model, _LazyTensors(ckpt))
        return model


class _LazyTensors(Mapping):
    """Mapping view that dequantizes one checkpoint tensor at a time."""

    def __init__(self, ckpt: Any):
        self.ckpt = ckpt
        self._names = list(ckpt.names())
        self._set = set(self._names)

    def __contains__(self, name: object) -> bool:  # without dequantizing (Mapping's default would)
        return name in self._set

    def __getitem__(self, name: str) -> Any:
        return self.ckpt.dequantize(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def load_weights(model: Transformer, tensors: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy tensors keyed by checkpoint name (dequantized logical shapes) into ``model``.

    Every parameter/buffer must be present with its exact shape; ``<x>.scale`` entries of quantized
    weights are ignored (already applied by the dequantizer); any other unknown name is an error.  This
    is the hook for every weight source (checkpoint directory, GGUF via the name map).
    """
    targets = dict(model.state_dict(keep_vars=True))
    missing = [n for n in targets if n not in tensors]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise KeyError(f"load_weights: tensors missing from the source: {missing[:5]}{more}")
    extra = [
        n
        for n in tensors
        if n not in targets and not (n.endswith(".scale") and n[: -len(".scale")] + ".weight" in targets)
    ]
    if extra:
        raise KeyError(
            f"load_weights: source has tensors the model does not know: {extra[:5]}; "
            f"check that the config matches the checkpoint"
        )
    with torch.no_grad():
        for name, dst in targets.items():
            src = tensors[name]
            t = torch.from_numpy(np.ascontiguousarray(src)) if isinstance(src, np.ndarray) else src
            if tuple(t.shape) != tuple(dst.shape):
                raise ValueError(
                    f"load_weights: '{name}' has shape {tuple(t.shape)}, the model expects "
                    f"{tuple(dst.shape)} for this config"
                )
            if dst.dtype == torch.int64:
                if t.dtype.is_floating_point:
                    raise TypeError(f"load_weights: '{name}' must be an integer tensor, got {t.dtype}")
            elif not (t.dtype.is_floating_point):
                raise TypeError(f"load_weights: '{name}' must be a float tensor, got {t.dtype}")
            dst.copy_(t.to(dst.dtype))
