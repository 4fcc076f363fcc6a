"""Fixtures of the runtime tests: seeded random-weight tiny models written as deepseek4 GGUFs (one per
type recipe, see gguf_fixture.py) and the PyTorch reference on the same dequantized weights.

``small`` = the tiny preset with a 1,024-token vocabulary (architecture unchanged: SWA, HCA, CSA, hash
layers); the head matmul would dominate otherwise.  Measured numbers are printed at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import gguf_fixture as gf

MEASURED: dict[str, str] = {}


@pytest.fixture(scope="session")
def gguf_fixture():
    """The test-GGUF writer module (gguf_fixture.py)."""
    return gf


@pytest.fixture(scope="session")
def small_args():
    from dsv4_gguf.config import PRESETS

    return PRESETS["tiny"].replace(vocab_size=1024)


@pytest.fixture(scope="session")
def small_weights(small_args):
    from dsv4_gguf.reference import random_weights

    return {k: v.numpy() for k, v in random_weights(small_args, 0).items()}


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("rt_gguf")


@pytest.fixture(scope="session")
def small_gguf(gguf_dir, small_args, small_weights):
    """variant -> path of the small model's GGUF (written on first use)."""
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            cache[variant] = gf.write_gguf(gguf_dir / f"small_{variant}.gguf", small_args, small_weights, variant)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def tokens600(small_args) -> np.ndarray:
    return np.random.default_rng(1234).integers(0, small_args.vocab_size, 600).astype(np.int32)


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("runtime measured numbers")
        for k, v in sorted(MEASURED.items()):
            terminalreporter.write_line(f"{k:<58s} {v}")
