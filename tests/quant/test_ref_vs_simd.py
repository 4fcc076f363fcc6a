"""Every SIMD level (AVX2, and AVX-512 where the CPU has it) is bit-exact with the scalar references:
quantize (with and without imatrix), dequantize, the dot products and the tiled rows x tokens products,
on odd shapes and adversarial data; DSV4_KERNELS (and its aliases DSV4_FORCE_REF / DSV4_FORCE_AVX2) select
the level, and a level this CPU lacks is an error; and threading does not change a single byte.  (The NEON
level is checked under qemu: tests/arch.)"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import _C, quants
from dsv4_gguf.constants import QTYPES, WEIGHT_QTYPES

pytestmark = pytest.mark.skipif(
    not _C.build_info()["cpu_avx2"], reason="this CPU has no AVX2: only the reference path exists"
)
# The SIMD levels this CPU runs (a CPU with AVX-512 runs both, so both are tested there).
LEVELS = ["avx2"] + (["avx512"] if _C.build_info()["cpu_avx512"] else [])


def nasty_rows(cols: int) -> np.ndarray:
    """Rows that stress the searches: zeros, constants, one outlier, tiny values, ties, all-negative."""
    rng = np.random.default_rng(7)
    rows = [
        np.zeros(cols),
        np.full(cols, 0.75),
        np.where(np.arange(cols) % 97 == 3, 40.0, rng.normal(0, 0.01, cols)),
        rng.normal(0, 1e-30, cols),
        np.round(rng.normal(0, 2, cols) * 2) / 2,
        -np.abs(rng.standard_normal(cols)),
        np.abs(rng.standard_normal(cols)),
        rng.standard_normal(cols) * 1e4,
    ]
    return np.asarray(rows, dtype=np.float32)


CASES = [(t, im) for t in WEIGHT_QTYPES for im in (False, True) if im or not QTYPES[t].needs_imatrix]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype,with_imatrix", CASES, ids=lambda v: v.name if isinstance(v, T) else str(v))
def test_quantize_dequantize_dot_bit_exact(qtype, with_imatrix, level, heavy_tailed, make_imatrix):
    x = np.concatenate([heavy_tailed[:24, :768], nasty_rows(768)])
    im = make_imatrix(x) if with_imatrix else None
    q_ref = quants.quantize(x, qtype, im, impl="ref")
    q_simd = quants.quantize(x, qtype, im, impl=level)
    assert np.array_equal(q_ref.view(np.uint8), q_simd.view(np.uint8)), f"{qtype.name} quantize ref != simd"
    qb = q_ref.view(np.uint8)
    d_ref = quants.dequantize(qb, qtype, impl="ref")
    d_simd = quants.dequantize(qb, qtype, impl=level)
    assert np.array_equal(d_ref.view(np.uint32), d_simd.view(np.uint32)), f"{qtype.name} dequantize ref != simd"
    v = np.random.default_rng(1).standard_normal(768).astype(np.float32)
    y_ref = quants.matvec(qb, v, qtype, impl="ref")
    y_simd = quants.matvec(qb, v, qtype, impl=level)
    assert np.array_equal(y_ref.view(np.uint32), y_simd.view(np.uint32)), f"{qtype.name} dot ref != simd"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", [t for t in WEIGHT_QTYPES if t not in (T.F32, T.F16, T.BF16)], ids=lambda t: t.name)
@pytest.mark.parametrize("rows", [1, 3, 4, 7, 701])
def test_multi_row_dot_equals_one_row_dot(qtype, rows, level, heavy_tailed, make_imatrix):
    """matvec runs several rows per kernel call (shared activation) and hands row chunks to threads (701
    rows: three chunks, the last short); every row must equal the one-row vec_dot of both impls bit for bit.
    An odd block count exercises the lone last block of the two-blocks-per-step 32-element kernels."""
    block = QTYPES[qtype].block_size
    cols = block * (25 if block == 32 else 3)
    x = np.ascontiguousarray(np.resize(heavy_tailed[:, :cols], (rows, cols)))
    qb = quants.quantize(x, qtype, make_imatrix(x) if QTYPES[qtype].needs_imatrix else None).view(np.uint8)
    qb = qb.reshape(rows, -1)
    v = np.random.default_rng(3).standard_normal(cols).astype(np.float32)
    at = QTYPES[qtype].vec_dot_type
    a = quants.quantize(v[None], at).view(np.uint8).reshape(-1)
    one = np.array([_C.vec_dot(int(qtype), qb[r], a, cols, level) for r in range(rows)], np.float32)
    one_ref = np.array([_C.vec_dot(int(qtype), qb[r], a, cols, "ref") for r in range(rows)], np.float32)
    assert np.array_equal(one.view(np.uint32), one_ref.view(np.uint32)), f"{qtype.name} vec_dot ref != simd"
    for threads in (1, 2, 3):
        got = quants.matvec(qb, v, qtype, impl=level, threads=threads)
        assert np.array_equal(got.view(np.uint32), one.view(np.uint32)), f"{qtype.name} rows={rows} threads={threads}"


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", [t for t in WEIGHT_QTYPES if t not in (T.F32, T.F16, T.BF16)], ids=lambda t: t.name)
def test_tiled_matmul_equals_one_row_dot(qtype, level, heavy_tailed, make_imatrix):
    """The rows x tokens product (prefill's path: each weight block decoded once per tile of tokens)
    equals the reference one-row dot for every (row, token): row tiles cut at every remainder (67-row
    chunks, 4-row tiles), token tiles cut at every remainder (4-token tiles: 37, 38, 39 tokens leave 1, 2
    and 3), 2-4 tokens (a verify step), and a block count that leaves 1, 2 and 3 blocks past the last 4-block
    group of the 32-element types."""
    block = QTYPES[qtype].block_size
    at = QTYPES[qtype].vec_dot_type
    rng = np.random.default_rng(5)
    for nblocks in (25, 26, 27, 8) if block == 32 else (3,):
        cols = block * nblocks
        w = np.ascontiguousarray(np.resize(heavy_tailed[:, :cols], (139, cols)))
        im = make_imatrix(w) if QTYPES[qtype].needs_imatrix else None
        qb = quants.quantize(w, qtype, im).view(np.uint8).reshape(139, -1)
        x = (rng.standard_normal((39, cols)) * rng.uniform(0.01, 30, (39, 1))).astype(np.float32)
        x[3] = 0.0  # an all-zero activation row (zero scales)
        got = quants.matmul(qb, x[:37], qtype, impl=level, threads=2)
        a = quants.quantize(x, at).view(np.uint8).reshape(39, -1)
        for t in (0, 1, 3, 17, 35, 36):
            want = np.array([_C.vec_dot(int(qtype), qb[r], a[t], cols, "ref") for r in range(139)], np.float32)
            assert np.array_equal(got[t].view(np.uint32), want.view(np.uint32)), f"{qtype.name} cols={cols} token {t}"
        for ntok in (2, 3, 4):  # a verify step's few tokens: rows streamed one at a time, each token exact
            few = quants.matmul(qb, x[:ntok], qtype, impl=level, threads=2)
            for t in range(ntok):
                want = np.array([_C.vec_dot(int(qtype), qb[r], a[t], cols, "ref") for r in range(139)], np.float32)
                assert np.array_equal(few[t].view(np.uint32), want.view(np.uint32)), f"{qtype.name} {ntok} tokens, {t}"
        for ntok in (38, 39):
            more = quants.matmul(qb, x[:ntok], qtype, impl=level, threads=2)
            assert np.array_equal(more[: len(got)].view(np.uint32), got.view(np.uint32)), f"{qtype.name} {ntok} tokens"
            got = more
        for t in range(39):
            assert np.array_equal(got[t].view(np.uint32), quants.matvec(qb, x[t], qtype, impl="ref").view(np.uint32))


def test_q8_k_activation_bit_exact():
    x = np.concatenate([np.random.default_rng(2).standard_normal((6, 512)), nasty_rows(512)]).astype(np.float32)
    for level in LEVELS:
        assert np.array_equal(quants.quantize(x, T.Q8_K, impl="ref"), quants.quantize(x, T.Q8_K, impl=level))


def test_threads_do_not_change_bytes(gaussian):
    x = np.ascontiguousarray(np.tile(gaussian, (4, 1)))
    one = quants.quantize(x, T.Q4_K, threads=1)
    assert np.array_equal(one, quants.quantize(x, T.Q4_K, threads=2))
    assert np.array_equal(one, quants.quantize(x, T.Q4_K, threads=7))


def test_gil_released_during_quantize(gaussian):
    """Two Python threads quantizing at once both finish with correct bytes (the GIL is released)."""
    x = np.ascontiguousarray(np.tile(gaussian, (8, 1)))
    want = quants.quantize(x, T.Q6_K, threads=1)
    out: list[np.ndarray] = []
    ths = [threading.Thread(target=lambda: out.append(quants.quantize(x, T.Q6_K, threads=1))) for _ in range(2)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(out) == 2 and all(np.array_equal(o, want) for o in out)


def test_force_ref_env_selects_reference():
    code = "from dsv4_gguf import _C; print(_C.build_info()['kernel_impl'])"
    env = dict(os.environ, DSV4_FORCE_REF="1")
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "ref"
    env["DSV4_FORCE_REF"] = "0"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == LEVELS[-1]
    env["DSV4_FORCE_AVX2"] = "1"
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert got.stdout.strip() == "avx2"


def _level_in_subprocess(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "from dsv4_gguf import _C; print(_C.build_info()['kernel_impl'])"
    clean = {k: v for k, v in os.environ.items() if k not in ("DSV4_KERNELS", "DSV4_FORCE_REF", "DSV4_FORCE_AVX2")}
    return subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True)


def test_dsv4_kernels_env_selects_every_level():
    """DSV4_KERNELS=ref|avx2|avx512 runs that level (over the older aliases too), and the bytes are the
    reference's at each."""
    info = _C.build_info()
    assert info["arch"] == "x86_64" and info["kernel_levels_compiled"] == ("ref", "avx2", "avx512")
    assert info["kernel_levels_supported"][:2] == ("ref", "avx2")
    for level in info["kernel_levels_supported"]:
        got = _level_in_subprocess({"DSV4_KERNELS": level, "DSV4_FORCE_REF": "1"})
        assert got.returncode == 0 and got.stdout.strip() == level, got.stderr[-1000:]
    code = (
        "import sys, numpy as np; from dsv4_gguf import quants; from gguf import GGMLQuantizationType as T;"
        "x = np.random.default_rng(5).standard_normal((4, 512)).astype(np.float32);"
        "sys.stdout.write(quants.quantize(x, T.Q4_K).tobytes().hex())"
    )
    outs = {}
    for level in info["kernel_levels_supported"]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DSV4_")} | {"DSV4_KERNELS": level}
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outs[level] = r.stdout
    assert len(set(outs.values())) == 1 and len(outs["ref"]) == 4 * 2 * 144 * 2, {k: len(v) for k, v in outs.items()}


def test_dsv4_kernels_env_rejects_unavailable_level():
    """A level this CPU or build lacks (NEON on x86; AVX-512 where the CPU has none) or an unknown name is an
    error naming the variable and the levels available: never a silent fallback."""
    supported = _C.build_info()["kernel_levels_supported"]
    for bad in [lv for lv in ("avx512", "neon") if lv not in supported] + ["avx3"]:
        got = _level_in_subprocess({"DSV4_KERNELS": bad})
        assert got.returncode != 0 and not got.stdout.strip(), (bad, got.stdout)
        assert "DSV4_KERNELS" in got.stderr and bad in got.stderr, got.stderr[-1000:]
        assert ", ".join(supported) in got.stderr, got.stderr[-1000:]  # the levels this machine has
    with pytest.raises(RuntimeError, match="'neon' kernels"):
        quants.quantize(np.zeros((1, 32), np.float32), T.Q8_0, impl="neon")


@pytest.mark.skipif(not _C.build_info()["cpu_avx512"], reason="this CPU has no AVX-512 F/BW/DQ/VL/VNNI")
def test_avx512_level_is_default_and_named():
    """On an AVX-512 CPU the level is chosen by default and can be asked for by name."""
    assert _C.build_info()["kernel_impl"] == "avx512" or _C.build_info()["force_avx2"]
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    assert quants.quantize(x, T.Q8_0, impl="avx512").shape == quants.quantize(x, T.Q8_0, impl="ref").shape
