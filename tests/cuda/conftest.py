"""Fixtures of the CUDA backend tests: the runtime tests' small model (tests/support/small_model.py: seeded
``random_weights`` in the release format, converted by the converter) as GGUFs, converted on first use.  Skip
markers come from tests/ci_policy.py: ``needs_cuda_build`` (host execution of the kernel code) and
``needs_cuda_device`` (the "no CUDA device:" reason, the one skip CI accepts).
"""

from __future__ import annotations

import pytest
from support import small_model


@pytest.fixture(scope="session")
def small_args():
    return small_model.small_args()


@pytest.fixture(scope="session")
def small_models(tmp_path_factory, small_args) -> small_model.SmallModels:
    return small_model.SmallModels(tmp_path_factory.mktemp("cuda_small"), small_args, seed=0)


@pytest.fixture(scope="session")
def small_gguf(small_models):
    """variant (a recipe name) -> path of the small model's GGUF (converted on first use)."""
    return small_models.gguf
