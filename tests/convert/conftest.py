"""Conversion-tier fixtures: llama.cpp helpers and cheap checkpoint copies (hard links; a file is un-shared before
a test corrupts it).  The tiny checkpoint converted per variant (`convert_tiny`) is in tests/conftest.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def llama_logits() -> Callable[[Path], np.ndarray]:
    """Load a GGUF in llama.cpp (llama-cpp-python), evaluate a short prompt, return its logits."""
    llama_cpp = pytest.importorskip("llama_cpp")

    def run(path: Path, text: bytes = b"DeepSeek-V4 in GGUF: one, two, three.") -> np.ndarray:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, n_batch=64, logits_all=True, verbose=False)
        try:
            toks = llm.tokenize(text, add_bos=True)
            llm.eval(toks)
            return np.array(llm.scores[: len(toks)], dtype=np.float32)
        finally:
            llm.close()

    return run


def _mtp_probe_script(path: Path) -> str:
    return f"""
import llama_cpp, ctypes, sys
llama_cpp.llama_backend_init()
mp = llama_cpp.llama_model_default_params()
mp.load_mtp = True
m = llama_cpp.llama_model_load_from_file({str(path)!r}.encode(), mp)
if not m:
    sys.exit(3)
buf = (ctypes.c_char * 128)()
llama_cpp.llama_model_desc(m, buf, 128)
print(buf.value.decode())
llama_cpp.llama_model_free(m)
"""


@pytest.fixture(scope="session")
def llama_load_mtp() -> Callable[[Path], str]:
    """Load an MTP sidecar with ``load_mtp`` in a subprocess (llama.cpp uses it as a draft model, so only
    the load is checked); returns llama.cpp's model description."""
    pytest.importorskip("llama_cpp")
    import subprocess
    import sys

    def run(path: Path) -> str:
        r = subprocess.run([sys.executable, "-c", _mtp_probe_script(path)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"llama.cpp could not load {path.name}: {r.stderr[-2000:]}"
        return r.stdout.strip()

    return run


def link_copy(src: Path, dst: Path) -> Path:
    """Copy a checkpoint folder with hard links (cheap); call :func:`own` before modifying a file."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def own(path: Path) -> Path:
    """Break the hard link of ``path`` so edits do not reach the original."""
    tmp = path.with_name(path.name + ".own")
    shutil.copyfile(path, tmp)
    os.replace(tmp, path)
    return path


@pytest.fixture()
def ckpt_copy(tiny_ckpt: Path, tmp_path: Path) -> Path:
    return link_copy(tiny_ckpt, tmp_path / "ckpt")


# Relative RMS error budget per stored type, measured on the synthetic tiny weights (heavy-tailed rows,
# outlier columns) with ~25% headroom; a type over budget means a wrong block layout or scale, not noise.
REL_RMSE_BUDGET = {
    "Q8_0": 0.010,  # measured 0.0064-0.0078 (8-bit, 32-element blocks)
    "Q6_K": 0.030,  # measured ~0.020
    "Q5_K": 0.050,  # measured ~0.038
    "Q4_K": 0.100,  # measured ~0.078-0.081
    "Q3_K": 0.200,  # measured ~0.15
    "Q2_K": 0.400,  # measured ~0.32
    "IQ2_XXS": 0.550,  # measured ~0.44 (weight-energy importance, no imatrix)
    "IQ1_S": 0.750,  # measured 0.59-0.61 (1.56 bpw, weight-energy importance, no imatrix)
    "IQ3_XXS": 0.350,  # measured 0.27-0.28
    "IQ3_S": 0.250,  # measured ~0.20
    "F16": 0.0005,  # rounding to 11 significant bits: <= 2^-11 = 4.9e-4 per normal value; measured <= 0.0002
}


@pytest.fixture(scope="session")
def check_variant(convert_tiny, llama_logits, tiny_ckpt, tiny_args):
    """Every must-show check for one lossy variant (main file only; the MTP sidecar path is covered by
    the lossless tests): llama.cpp forward, `gguf` reader, our reader, verify statistics."""

    def run(variant: str) -> dict:
        import gguf
        from dsv4_gguf.quantize.verify import verify

        from dsv4_gguf import open_gguf
        from dsv4_gguf.checkpoint import Checkpoint

        path = convert_tiny(variant, mtp=False)
        logits = llama_logits(path)
        assert np.isfinite(logits).all() and logits.std() > 0
        r = gguf.GGUFReader(path)
        m = open_gguf(path)
        assert m.args == tiny_args.replace(n_mtp_layers=0, compress_ratios=tiny_args.compress_ratios[:-1])
        types = {t.name: t.tensor_type.name for t in r.tensors}
        assert types == {n: m.info(n).qtype.name for n in m.names()}
        with Checkpoint(tiny_ckpt) as ck:
            reps = verify(m, ck)
        stats: dict[str, float] = {}
        for rep in reps:
            if rep.qtype in ("F32", "BF16", "I32", "MXFP4"):
                assert rep.exact, f"{variant}: {rep.name} ({rep.qtype}) should be exact"
            else:
                assert rep.rel_rmse <= REL_RMSE_BUDGET[rep.qtype], (variant, rep.name, rep.rel_rmse)
                stats[rep.qtype] = max(stats.get(rep.qtype, 0.0), rep.rel_rmse)
        return {"types": types, "stats": stats}

    return run
