"""E4M3 / E8M0 / E2M1 decode kernels of `_C`: scalar reference == AVX2 == an independent numpy decode."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from dsv4_gguf import _C, build_info

IMPLS = ["ref", "simd"] if build_info()["cpu_avx2"] else ["ref"]
ALL = np.arange(256, dtype=np.uint8)


@pytest.mark.parametrize("impl", IMPLS)
def test_e4m3_all_codes(impl, npdecode):
    ref = ALL.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    assert npdecode.same_bits(_C.decode_e4m3(ALL, impl), ref)
    # odd lengths exercise the SIMD tail
    assert npdecode.same_bits(_C.decode_e4m3(ALL[:251], impl), ref[:251])


@pytest.mark.parametrize("impl", IMPLS)
def test_e8m0_all_codes(impl, npdecode):
    got = _C.decode_e8m0(ALL, impl)
    assert npdecode.same_bits(got, npdecode.e8m0(ALL))
    assert npdecode.same_bits(got, ALL.view(ml_dtypes.float8_e8m0fnu).astype(np.float32))
    assert got[0] == np.float32(2.0**-127) and got[127] == 1.0 and np.isnan(got[255])


@pytest.mark.parametrize("impl", IMPLS)
def test_e2m1_all_bytes(impl, npdecode):
    got = _C.decode_e2m1(ALL.reshape(16, 16), impl)
    assert got.shape == (16, 32)
    expect = np.stack([npdecode.E2M1[ALL & 0xF], npdecode.E2M1[ALL >> 4]], axis=-1).reshape(16, 32)
    assert npdecode.same_bits(got, expect)
    assert npdecode.same_bits(_C.decode_e2m1(ALL[:13], impl), expect.reshape(-1)[:26])


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(128, 256), (200, 300), (7, 1000), (1, 5)])
def test_dequant_fp8_matches_numpy(impl, shape, npdecode):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    w = rng.integers(0, 256, size=shape, dtype=np.uint8)
    s = rng.integers(100, 150, size=(-(-shape[0] // 128), -(-shape[1] // 128)), dtype=np.uint8)
    s.flat[0] = 0  # smallest scale: products become float32 subnormals
    assert npdecode.same_bits(_C.dequant_fp8(w, s, impl), npdecode.fp8_block(w, s))
    assert npdecode.same_bits(_C.dequant_fp8(w, s, impl, threads=3), npdecode.fp8_block(w, s))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(64, 64), (33, 1024), (1, 32)])
def test_dequant_fp4_matches_numpy(impl, shape, npdecode):
    rows, cols = shape
    rng = np.random.default_rng(rows + cols)
    w = rng.integers(0, 256, size=(rows, cols // 2), dtype=np.uint8)
    s = rng.integers(0, 255, size=(rows, cols // 32), dtype=np.uint8)
    assert npdecode.same_bits(_C.dequant_fp4(w, s, impl), npdecode.fp4_group(w, s))
    assert npdecode.same_bits(_C.dequant_fp4(w, s, impl, threads=2), npdecode.fp4_group(w, s))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="expected a uint8 array"):
        _C.decode_e4m3(np.zeros(8, np.float32))
    with pytest.raises(TypeError, match="uint8"):
        _C.decode_e4m3(np.zeros(8, ml_dtypes.float8_e4m3fn))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.decode_e4m3(np.zeros((8, 8), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="impl must be"):
        _C.decode_e4m3(ALL, "fast")
    with pytest.raises(ValueError, match="scale shape"):
        _C.dequant_fp8(np.zeros((130, 128), np.uint8), np.zeros((1, 1), np.uint8))
    with pytest.raises(ValueError, match="multiple of 32"):
        _C.dequant_fp4(np.zeros((4, 8), np.uint8), np.zeros((4, 0), np.uint8))
    with pytest.raises(ValueError, match="scale shape"):
        _C.dequant_fp4(np.zeros((4, 16), np.uint8), np.zeros((4, 2), np.uint8))
    with pytest.raises(ValueError, match="2-D"):
        _C.dequant_fp8(np.zeros(128, np.uint8), np.zeros((1, 1), np.uint8))


def test_build_info_reports_features(npdecode):
    info = build_info()
    for key in ("version", "compiler", "simd_compiled", "cpu_avx2", "kernel_impl", "cuda", "cuda_devices"):
        assert key in info
    # the architecture, the levels compiled in, those this CPU runs, and the one in use
    assert info["arch"] in ("x86_64", "aarch64", "other")
    assert set(info["kernel_levels_supported"]) <= set(info["kernel_levels_compiled"])
    assert info["kernel_levels_compiled"][0] == "ref" and "ref" in info["kernel_levels_supported"]
    assert info["simd_compiled"] == info["kernel_levels_compiled"][1:]
    assert info["kernel_impl"] in info["kernel_levels_supported"]  # the level chosen at run time
    assert ("neon" in info["kernel_levels_compiled"]) == (info["arch"] == "aarch64")
    if shutil.which("nvcc") and os.environ.get("DSV4_CUDA", "AUTO").upper() != "OFF":
        # nvcc on PATH: the default (AUTO) build must have compiled the CUDA target
        assert info["cuda"] is True and info["cuda_archs"]
        if info["cuda_devices"] == 0:
            with pytest.raises(RuntimeError, match="no CUDA device"):
                _C.cuda_hooks.decode_e4m3(ALL)
        else:
            assert npdecode.same_bits(
                _C.cuda_hooks.decode_e4m3(ALL), ALL.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
            )


def test_force_ref_environment_override():
    code = "from dsv4_gguf import build_info; print(build_info()['kernel_impl'])"
    env = dict(os.environ, DSV4_FORCE_REF="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ref"
