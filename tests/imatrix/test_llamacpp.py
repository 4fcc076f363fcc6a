"""Must-show 1a: an imatrix written by `dsv4-gguf imatrix` is read by llama.cpp's own loader
(common/imatrix-loader.cpp from the llama-cpp-python source, compiled unmodified into a test shim) and
used by ``llama_model_quantize`` for a full IQ2_XXS quantization (every tensor there requires an
imatrix) without error; our reader gives the same sums, counts and means.  Also: merging and resuming.

The llama.cpp source tree is $DSV4_LLAMA_CPP_SRC, else the one scripts/setup.sh unpacks from the llama-cpp-python
sdist (vendor/llama.cpp under .cache/); the test skips without it or without g++ (a failure under CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from chat.llama_jinja import DEFAULT_SRC

from dsv4_gguf.cli import main

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    llama_cpp = pytest.importorskip("llama_cpp")
    src = Path(os.environ.get("DSV4_LLAMA_CPP_SRC") or DEFAULT_SRC)
    if not (src / "common" / "imatrix-loader.cpp").is_file():
        pytest.skip(
            f"{src}: no llama.cpp tree with common/imatrix-loader.cpp; run scripts/setup.sh or set "
            "DSV4_LLAMA_CPP_SRC to vendor/llama.cpp of the llama-cpp-python 0.3.36 sdist"
        )
    if not shutil.which("g++"):
        pytest.skip("no C++ compiler: 'g++' not found on PATH (Debian: apt-get install g++)")
    lib = Path(llama_cpp.__file__).parent / "lib"
    out = tmp_path_factory.mktemp("shim") / "imatrix_shim.so"
    subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-O1",
            "-shared",
            "-fPIC",
            f"-I{src / 'common'}",
            f"-I{src / 'include'}",
            f"-I{src / 'ggml' / 'include'}",
            str(HERE / "llama_loader_shim.cpp"),
            str(src / "common" / "imatrix-loader.cpp"),
            f"-L{lib}",
            "-lggml-base",
            f"-Wl,-rpath,{lib}",
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def imatrix(source_gguf: Path, calib: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("im") / "imatrix.gguf"
    assert (
        main(
            [
                "imatrix",
                str(source_gguf),
                "--text",
                str(calib),
                "-o",
                str(out),
                "--ctx",
                "128",
                "--chunks",
                "4",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    return out


def _llama(shim: Path, im: str, src: Path, dst: Path, ftype: int, npz: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "llama_quantize_driver.py"),
            str(shim),
            im,
            str(src),
            str(dst),
            str(ftype),
            str(npz),
        ],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )


def test_llama_cpp_quantizes_with_our_imatrix(shim, imatrix, source_gguf, tmp_path):
    from dsv4_gguf.quantize.imatrix import load_imatrix, load_imatrix_raw

    from dsv4_gguf import open_gguf

    npz = tmp_path / "lc.npz"
    r = _llama(shim, str(imatrix), source_gguf, tmp_path / "lc-iq2.gguf", 19, npz)  # LLAMA_FTYPE_MOSTLY_IQ2_XXS
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    raw, ours = load_imatrix_raw(imatrix), load_imatrix(imatrix)
    assert f"have importance matrix data with {len(raw.sums)} entries" in log
    missing = {ln.split("for ")[-1].strip() for ln in log.splitlines() if "did not find weights for" in ln}
    assert missing <= {"output.weight", "token_embd.weight"}, missing  # both exempt; llama-imatrix skips them too
    got = np.load(npz)
    assert int(got["chunk_count"]) == raw.chunk_count == 4 and int(got["chunk_size"]) == 128
    assert not int(got["legacy"])
    names = {k.split(":", 1)[1] for k in got.files if k.startswith("sums:")}
    assert names == set(raw.sums)
    for n in names:  # identical bytes for sums and counts; means equal to the float32 rounding
        np.testing.assert_array_equal(got[f"sums:{n}"], raw.sums[n].astype(np.float32).reshape(-1))
        np.testing.assert_array_equal(got[f"counts:{n}"], raw.counts[n].astype(np.int64))
        np.testing.assert_allclose(got[f"mean:{n}"], ours[n].reshape(-1), rtol=2e-7, atol=0)
    m = open_gguf(tmp_path / "lc-iq2.gguf")
    assert m.info("blk.3.ffn_down_exps.weight").qtype.name == "IQ2_XXS"
    assert m.info("blk.0.attn_q_a.weight").qtype.name.startswith(("IQ2", "Q2", "IQ3", "Q4", "Q5", "Q6", "Q8"))

    r0 = _llama(shim, "-", source_gguf, tmp_path / "lc-none.gguf", 19, tmp_path / "none.npz")
    assert r0.returncode != 0 and "requires an imatrix" in (r0.stdout + r0.stderr)  # the check can fail


def test_merge_and_resume(source_gguf, tmp_path):
    from dsv4_gguf.quantize.imatrix import load_imatrix_raw
    from dsv4_gguf.quantize.imatrix_collect import collect

    rng = np.random.default_rng(3)
    chunks = [rng.integers(0, 1000, 96).astype(np.int32) for _ in range(4)]
    full, a, b = tmp_path / "full.gguf", tmp_path / "a.gguf", tmp_path / "b.gguf"
    kw = {"ctx": 96, "threads": 2, "token_chunks": chunks}
    collect(source_gguf, None, full, **kw)
    collect(source_gguf, None, a, stop_after=2, save_every=1, **kw)  # "interrupted" after 2 chunks
    assert not a.exists() and Path(str(a) + ".partial").exists()
    collect(source_gguf, None, a, resume=True, **kw)
    assert not Path(str(a) + ".partial").exists()
    f, resumed = load_imatrix_raw(full), load_imatrix_raw(a)
    assert resumed.chunk_count == 4 and set(resumed.sums) == set(f.sums)
    for n in f.sums:
        np.testing.assert_allclose(resumed.sums[n], f.sums[n], rtol=1e-6)
        np.testing.assert_array_equal(resumed.counts[n], f.counts[n])
    collect(source_gguf, None, b, stop_after=1, save_every=1, **{**kw, "token_chunks": chunks[::-1]})
    with pytest.raises(ValueError, match="another model, text"):
        collect(source_gguf, None, b, resume=True, **kw)
    m = tmp_path / "m.gguf"
    assert main(["imatrix", "--merge", str(full), str(a), "-o", str(m)]) == 0
    merged = load_imatrix_raw(m)
    assert merged.chunk_count == 8
    for n in f.sums:
        np.testing.assert_allclose(merged.sums[n], 2 * f.sums[n], rtol=1e-6)
        np.testing.assert_array_equal(merged.counts[n], 2 * f.counts[n])
