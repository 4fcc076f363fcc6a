"""The core on aarch64 gives x86's bits (issue 22).  The core is cross-built for aarch64 with Debian's
g++-aarch64-linux-gnu and its digest driver (digest_driver.cpp: every registered quant type quantized with and
without an imatrix, dequantized, dotted, at 1 and 4 threads; the runtime ops; a small model's logits) runs under
qemu-aarch64; the same driver built natively on x86-64 runs the reference kernels (DSV4_FORCE_REF=1), and every
output digest must be equal.  On x86 the AVX2 and AVX-512 levels must give the reference's digests too.

qemu checks bits, not speed: nothing here times anything.  The tools come with scripts/setup.sh; without them the
tests skip, which CI counts as a failure (tests/conftest.py).  Cold builds take about a minute of CPU each
(cached in build/arch/ by content).
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from support import cross_build

from dsv4_gguf import _C
from dsv4_gguf.constants import QTYPES, WEIGHT_QTYPES

pytestmark = [
    pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the reference side is x86-64"),
    pytest.mark.skipif(cross_build.missing_tools() is not None, reason=str(cross_build.missing_tools())),
]


def _digests(proc) -> list[tuple[str, str]]:
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [tuple(line.split(" ", 1)) for line in proc.stdout.splitlines()]
    assert rows and all(len(r) == 2 for r in rows), proc.stdout[-2000:]
    return rows


def _compare(ref: list[tuple[str, str]], got: list[tuple[str, str]], what: str) -> None:
    assert [n for n, _ in got] == [n for n, _ in ref], f"{what}: not the same list of outputs"
    bad = [n for (n, a), (_, b) in zip(ref, got, strict=True) if a != b]
    assert not bad, f"{what}: {len(bad)} of {len(ref)} outputs differ from x86's reference: {', '.join(bad[:40])}"


@pytest.fixture(scope="module")
def builds() -> dict[str, Path]:
    try:
        return {t: cross_build.build(t) for t in ("native", "aarch64")}
    except cross_build.BuildError as e:  # a compile error on either architecture is a failure, not a skip
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def x86_ref(builds):
    return _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], {"DSV4_FORCE_REF": "1"}))


def test_driver_covers_every_type_and_op(x86_ref):
    """The driver walks the C++ QType table: every type the extension registers has its quantize and dequantize
    outputs in the digest list (weight types: their dots and the runtime's products too), and every runtime op."""
    digests = {n for n, d in x86_ref if not d.startswith("refused")}
    cpp_types = [row[1] for row in _C.qtype_table()]
    assert sorted(cpp_types) == sorted(t.name for t in QTYPES)
    for name in cpp_types:
        for out in ("quantize", "dequantize"):
            assert any(n.startswith(f"{name}.") and n.endswith(f".{out}") for n in digests), (name, out)
    for t in WEIGHT_QTYPES:
        for out in ("matvec", "matmul", "linear_exact", "linear_quant"):
            assert any(n.startswith(f"{t.name}.") and n.endswith(f".{out}") for n in digests), (t.name, out)
    ops = ("dot_f32", "axpy_f32", "rms_norm", "rope_freqs", "rope_tail", "fp8_fake_quant", "fp4_fake_quant")
    ops += ("hadamard", "hc_coeffs", "hc_mixes", "hc_collapse", "hc_expand", "sparse_attention", "compressor_step")
    ops += ("route", "expert_ffn", "decode_e4m3", "decode_e8m0", "decode_e2m1", "dequant_fp8", "dequant_fp4")
    ops += ("repack_fp4_to_mxfp4",)
    for op in ops:
        assert any(n.split(".")[0] == op for n in digests), op
    assert len({n for n, _ in x86_ref}) == len(x86_ref), "an output name appears twice"


def test_aarch64_kernels_and_ops_equal_x86_reference(builds, x86_ref):
    got = _digests(cross_build.run_driver(builds["aarch64"], "aarch64", ["kernels"]))
    _compare(x86_ref, got, "aarch64 (qemu)")


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_x86_simd_levels_equal_reference(builds, x86_ref, level):
    """Every kernel and op at the AVX2 and AVX-512 levels gives the reference's digests (dot_f32 included)."""
    info = _C.build_info()
    if not info[f"cpu_{level}"]:
        pytest.skip(f"this CPU has no {level}")
    env = {"DSV4_FORCE_AVX2": "1"} if level == "avx2" else {}
    got = _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], env))
    _compare(x86_ref, got, level)


def test_x86_f32_dots_every_length(builds):
    """dot_f32, the fused BF16 dot and axpy of each SIMD level against the reference for every length 0..300
    (all tails of the 32- and 8-element steps), value by value."""
    if not _C.build_info()["cpu_avx2"]:
        pytest.skip("this CPU has no AVX2: the reference is the only level")
    r = cross_build.run_driver(builds["native"], "native", ["levels"])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "mismatches=0" in r.stdout and "checked=0" not in r.stdout, r.stdout[-2000:]


def test_aarch64_model_logits_equal_x86_reference(builds, small_gguf):
    """A whole model (the small test model, Q8_0): prefill and decode logits, exact and quantized path, 1 and 4
    threads."""
    path = str(small_gguf("Q8_0"))
    ref = _digests(cross_build.run_driver(builds["native"], "native", ["model", path], {"DSV4_FORCE_REF": "1"}))
    assert len(ref) == 16
    _compare(ref, _digests(cross_build.run_driver(builds["native"], "native", ["model", path])), "x86 default level")
    _compare(ref, _digests(cross_build.run_driver(builds["aarch64"], "aarch64", ["model", path])), "aarch64 (qemu)")


def test_aarch64_module_builds():
    """The pybind11 module links for aarch64 too (compiled, not imported: qemu-user has no aarch64 Python here)."""
    try:
        out = cross_build.build("aarch64", targets=("digest_driver", "_C"))
    except cross_build.BuildError as e:
        pytest.fail(str(e))
    mods = list(out.glob("dsv4/csrc/_C*.so"))
    assert len(mods) == 1, mods
    assert cross_build.elf_machine(mods[0]) == (3, 183)  # a shared object for aarch64
    assert cross_build.elf_machine(out / "digest_driver") == (2, 183)
