"""Dequantization is bit-exact with the gguf package's numpy dequantizers, for every type, on random
blocks and adversarial ones (all-zero blocks, zero/subnormal/huge fp16 scales, extreme E8M0 exponents),
through both the reference and the SIMD kernels."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq

from dsv4_gguf import _C, quants
from dsv4_gguf.constants import QTYPES

# byte offsets of the fp16 scale fields inside each block
FP16_FIELDS = {
    T.Q8_0: (0,),
    T.Q4_0: (0,),
    T.Q4_1: (0, 2),
    T.Q5_0: (0,),
    T.Q5_1: (0, 2),
    T.IQ4_NL: (0,),
    T.Q2_K: (80, 82),
    T.Q3_K: (108,),
    T.Q4_K: (0, 2),
    T.Q5_K: (0, 2),
    T.Q6_K: (208,),
    T.IQ4_XS: (0,),
    T.IQ2_XXS: (0,),
    T.IQ2_XS: (0,),
    T.IQ2_S: (0,),
    T.IQ3_XXS: (0,),
    T.IQ3_S: (0,),
    T.IQ1_S: (0,),
}
# IQ1_M keeps its fp16 super-block scale in the top nibbles of the four u16 words at bytes 48..56
BLOCK_TYPES = (*FP16_FIELDS, T.MXFP4, T.IQ1_M)
IMPLS = ["ref", "simd"] if _C.build_info()["cpu_avx2"] else ["ref"]


def adversarial_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """fp16 bit patterns: +-0, subnormals, random normals, the largest finite values (no inf/NaN)."""
    kind = rng.integers(0, 4, n)
    sign = rng.integers(0, 2, n).astype(np.uint16) << 15
    sub = rng.integers(1, 0x400, n).astype(np.uint16)
    normal = (rng.integers(1, 31, n).astype(np.uint16) << 10) | rng.integers(0, 0x400, n).astype(np.uint16)
    huge = np.uint16(0x7BFF) - rng.integers(0, 4, n).astype(np.uint16)
    bits = np.select([kind == 0, kind == 1, kind == 2], [np.zeros(n, np.uint16), sub, normal], huge)
    return (bits | sign).astype(np.uint16)


def random_blocks(qtype: T, rows: int, nblocks: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = QTYPES[qtype].type_size
    blocks = rng.integers(0, 256, (rows * nblocks, size), dtype=np.uint8)
    if qtype == T.MXFP4:
        e = rng.integers(0, 255, rows * nblocks).astype(np.uint8)  # 255 (NaN scale) excluded
        e[::7] = 0
        e[1::7] = 1
        e[2::7] = 254
        blocks[:, 0] = e
    if qtype == T.IQ1_M:
        sc = blocks[:, 48:56].copy().view(np.uint16) & np.uint16(0x0FFF)
        d = adversarial_halves(rng, rows * nblocks)[:, None] >> np.array([0, 4, 8, 12], np.uint16)
        blocks[:, 48:56] = (sc | ((d & np.uint16(0xF)) << np.uint16(12))).view(np.uint8)
    for off in FP16_FIELDS.get(qtype, ()):
        blocks[:, off : off + 2] = adversarial_halves(rng, rows * nblocks).view(np.uint8).reshape(-1, 2)
    blocks[::5] = 0  # whole zero blocks
    return blocks.reshape(rows, nblocks * size)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_block_types_match_gguf(qtype, impl):
    data = random_blocks(qtype, rows=8, nblocks=12, seed=int(qtype))
    ours = quants.dequantize(data, qtype, impl=impl)
    with np.errstate(over="ignore"):  # E8M0 254 times code 12 overflows to inf in both decoders
        ref = gq.dequantize(data, qtype).astype(np.float32, copy=False)
    assert not np.isnan(ours).any()
    assert same_bits(ours, ref.reshape(ours.shape)), f"{qtype.name} ({impl}) differs from gguf.quants"


@pytest.mark.parametrize("impl", IMPLS)
def test_float_types_match_gguf(impl):
    rng = np.random.default_rng(3)
    h = rng.integers(0, 1 << 16, (4, 256), dtype=np.uint16)
    h_f16 = h[(h & 0x7C00) != 0x7C00][: 4 * 200].reshape(4, 200)  # finite halves
    h_bf16 = h[(h & 0x7F80) != 0x7F80][: 4 * 200].reshape(4, 200)  # finite bfloat16
    got = quants.dequantize(h_f16.view(np.uint8), T.F16, impl=impl)
    assert same_bits(got, gq.dequantize(h_f16.view(np.uint8), T.F16).astype(np.float32))
    got = quants.dequantize(h_bf16.view(np.uint8), T.BF16, impl=impl)
    assert same_bits(got, gq.dequantize(h_bf16.view(np.uint8), T.BF16).reshape(got.shape))
    f = rng.standard_normal((3, 64)).astype(np.float32)
    assert same_bits(quants.dequantize(f.view(np.uint8), T.F32, impl=impl), f)


@pytest.mark.parametrize("qtype", BLOCK_TYPES, ids=lambda t: t.name)
def test_round_trip_bytes_decode_like_gguf(qtype, gaussian):
    """Our quantizer's output (not just random bytes) decodes identically too."""
    im = "energy" if QTYPES[qtype].needs_imatrix else None
    q = quants.quantize(gaussian[:8], qtype, im)
    assert same_bits(quants.dequantize(q, qtype), gq.dequantize(q, qtype).reshape(8, -1).astype(np.float32))
