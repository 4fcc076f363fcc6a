"""Fixtures for the quant-kernel tier: the ggml peer (llama-cpp-python's libggml via ctypes) and
seeded test matrices (Gaussian, heavy-tailed, and rows of dequantized synthetic DSV4 tensors)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

# the ggml binding lives with the benchmarks (which must not import from tests/); the tests load it from there
PEER = Path(__file__).resolve().parents[2] / "benchmarks" / "ggml_peer.py"


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"quant_tests_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def ggml():
    """ggml through llama-cpp-python; skipped (with the reason) only when llama_cpp is not importable."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        pytest.skip(f"llama-cpp-python (the ggml peer) is not importable: {e}")
    peer = load_module(PEER).load()
    assert peer is not None, "llama_cpp is importable but its libggml-base/libggml-cpu libraries were not found"
    return peer


@pytest.fixture(scope="session")
def gaussian() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((48, 1024)).astype(np.float32)


@pytest.fixture(scope="session")
def heavy_tailed() -> np.ndarray:
    # Student-t(2.5) with a few rows scaled up: outliers inside blocks, spread of row norms
    rng = np.random.default_rng(12)
    x = rng.standard_t(2.5, (48, 1024)) * np.exp(rng.normal(0, 1.0, (48, 1)))
    return x.astype(np.float32)


@pytest.fixture(scope="session")
def dsv4_rows(tiny_ckpt) -> np.ndarray:
    """Rows of dequantized FP8 (attention, shared experts) and FP4 (routed experts) tensors of the tiny
    synthetic checkpoint: the value distributions the converter will feed the quantizers."""
    from dsv4_gguf.checkpoint import Checkpoint

    names = [
        "layers.0.attn.wo_a.weight",
        "layers.0.ffn.shared_experts.w1.weight",
        "layers.1.ffn.shared_experts.w2.weight",
        "layers.0.ffn.experts.0.w1.weight",
        "layers.1.ffn.experts.3.w2.weight",
    ]
    with Checkpoint(tiny_ckpt) as ck:
        mats = [np.asarray(ck.dequantize(n), dtype=np.float32) for n in names]
    mats = [m for m in mats if m.shape[-1] % 256 == 0]
    assert mats, "no synthetic DSV4 tensor with a row length divisible by 256"
    cols = mats[0].shape[-1]
    rows = np.concatenate([m[:, :cols][:48] for m in mats if m.shape[-1] >= cols], axis=0)
    return np.ascontiguousarray(rows, dtype=np.float32)


@pytest.fixture(scope="session")
def make_imatrix():
    """A plausible imatrix for a matrix: activation energies, log-normal across columns."""

    def make(x: np.ndarray, seed: int = 5) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.exp(rng.normal(0.0, 1.0, x.shape[-1])).astype(np.float32)

    return make
