"""Fixtures of the runtime tests: the small model (tests/support/small_model.py: seeded ``random_weights`` in the
release format, converted to GGUF by the converter, one file per recipe, each made once per session).

``small`` = the tiny preset with a 1,024-token vocabulary (architecture unchanged: SWA, HCA, CSA, hash
layers); the head matmul would dominate otherwise.  Measured numbers are printed at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import small_model

MEASURED: dict[str, str] = {}


@pytest.fixture(scope="session")
def small_args():
    return small_model.small_args()


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, small_args) -> small_model.SmallModels:
    return small_model.SmallModels(tmp_path_factory.mktemp("rt_small"), small_args, seed=0)


@pytest.fixture(scope="session")
def small_gguf(small_models):
    """variant (a recipe name) -> path of the small model's GGUF (converted on first use)."""
    return small_models.gguf


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
