"""The core on aarch64 gives x86's bits (issue 22).  The core is cross-built for aarch64 with Debian's
g++-aarch64-linux-gnu and its digest driver (digest_driver.cpp: every registered quant type quantized with and
without an imatrix, dequantized, dotted, at 1 and 4 threads; the runtime ops; a small model's logits) runs under
qemu-aarch64 twice, with DSV4_KERNELS=ref and DSV4_KERNELS=neon, the NEON run once on a CPU model with the dotprod
instructions (`max`) and once without (`cortex-a57`); the same driver built natively on x86-64 runs the reference
kernels (DSV4_KERNELS=ref), and every output digest must be equal.  Each run's first line names the level it
resolved, and the test asserts it: a NEON run that silently fell back to the reference fails.  On x86 the AVX2 and
AVX-512 levels must give the reference's digests too.

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


# qemu-aarch64 CPU models: `max` has every feature qemu emulates (dotprod included), cortex-a57 is ARMv8.0 NEON only
QEMU_DOTPROD, QEMU_NO_DOTPROD = "max", "cortex-a57"


def _digests(proc, impl: str | None = None, dotprod: bool | None = None) -> list[tuple[str, str]]:
    """The driver's (name, digest) rows; with `impl`, its "# impl" line must name that level (and, where
    `dotprod` is given, say whether the CPU has dotprod)."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    head = [ln for ln in lines if ln.startswith("# ")]
    assert len(head) == 1 and head[0].startswith("# impl "), proc.stdout[:500]
    _, _, level, _, dp = head[0].split()
    if impl is not None:
        assert level == impl, f"asked for the {impl} kernels, the driver ran {level}"
    if dotprod is not None:
        assert dp == str(int(dotprod)), head[0]
    rows = [tuple(line.split(" ", 1)) for line in lines if not line.startswith("# ")]
    assert rows and all(len(r) == 2 for r in rows), proc.stdout[-2000:]
    return rows


def _aarch64(builds, args: list[str], level: str, cpu: str):
    return cross_build.run_driver(builds["aarch64"], "aarch64", args, {"DSV4_KERNELS": level, "QEMU_CPU": cpu})


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
    return _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], {"DSV4_KERNELS": "ref"}), "ref")


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


@pytest.mark.parametrize(
    ("level", "cpu"), [("ref", QEMU_DOTPROD), ("neon", QEMU_DOTPROD), ("neon", QEMU_NO_DOTPROD)], ids=str
)
def test_aarch64_kernels_and_ops_equal_x86_reference(builds, x86_ref, level, cpu):
    """Every output of the aarch64 build, at the reference level and at the NEON level (SDOT dots on `max`, the
    vmull dots on cortex-a57), equals x86's reference bytes."""
    got = _digests(_aarch64(builds, ["kernels"], level, cpu), level, dotprod=cpu == QEMU_DOTPROD)
    _compare(x86_ref, got, f"aarch64 {level} (qemu -cpu {cpu})")


def test_aarch64_default_level_is_neon(builds):
    """Without DSV4_KERNELS the aarch64 build picks NEON, and asking for a level it lacks is an error naming the
    variable and the levels it has (never a silent fallback)."""
    r = cross_build.run_driver(builds["aarch64"], "aarch64", ["kernels"], {"QEMU_CPU": QEMU_DOTPROD})
    assert r.returncode == 0 and r.stdout.startswith("# impl neon dotprod 1\n"), r.stdout[:200] + r.stderr[-500:]
    for bad in ("avx2", "avx512", "sse"):
        r = _aarch64(builds, ["kernels"], bad, QEMU_DOTPROD)
        assert r.returncode == 2 and not r.stdout.strip(), (bad, r.stdout[:300])
        assert f"DSV4_KERNELS={bad}" in r.stderr or f"DSV4_KERNELS='{bad}'" in r.stderr, r.stderr
        assert "ref, neon" in r.stderr, r.stderr


@pytest.mark.parametrize("cpu", [QEMU_DOTPROD, QEMU_NO_DOTPROD])
def test_aarch64_neon_dots_every_length(builds, cpu):
    """dot_f32, the fused BF16 dot and axpy of the NEON level against the reference for every length 0..300, and
    the NEON integer dots (Q8_0, Q4_0, MXFP4, Q4_K, Q6_K; SDOT and vmull forms) on random blocks, value by value."""
    r = cross_build.run_driver(builds["aarch64"], "aarch64", ["levels"], {"QEMU_CPU": cpu})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert f"neon=1 dotprod={int(cpu == QEMU_DOTPROD)}" in r.stdout, r.stdout[-500:]
    assert "mismatches=0" in r.stdout and "checked=0" not in r.stdout, r.stdout[-2000:]


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_x86_simd_levels_equal_reference(builds, x86_ref, level):
    """Every kernel and op at the AVX2 and AVX-512 levels gives the reference's digests (dot_f32 included)."""
    info = _C.build_info()
    if not info[f"cpu_{level}"]:
        pytest.skip(f"this CPU has no {level}")
    got = _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], {"DSV4_KERNELS": level}), level)
    _compare(x86_ref, got, level)


def test_x86_force_avx2_alias(builds, x86_ref):
    """DSV4_FORCE_AVX2=1 (the older name) still selects the AVX2 level, DSV4_FORCE_REF=1 the reference."""
    if not _C.build_info()["cpu_avx2"]:
        pytest.skip("this CPU has no AVX2")
    env = {"DSV4_FORCE_AVX2": "1"}
    _compare(x86_ref, _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], env), "avx2"), "avx2")
    env = {"DSV4_FORCE_REF": "1"}
    _compare(x86_ref, _digests(cross_build.run_driver(builds["native"], "native", ["kernels"], env), "ref"), "ref")


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
    threads; on aarch64 at the reference and the NEON level (with and without dotprod)."""
    path = str(small_gguf("Q8_0"))
    ref = _digests(cross_build.run_driver(builds["native"], "native", ["model", path], {"DSV4_KERNELS": "ref"}), "ref")
    assert len(ref) == 16
    _compare(ref, _digests(cross_build.run_driver(builds["native"], "native", ["model", path])), "x86 default level")
    for level, cpu in (("ref", QEMU_DOTPROD), ("neon", QEMU_DOTPROD), ("neon", QEMU_NO_DOTPROD)):
        got = _digests(_aarch64(builds, ["model", path], level, cpu), level, dotprod=cpu == QEMU_DOTPROD)
        _compare(ref, got, f"aarch64 {level} (qemu -cpu {cpu})")


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
