"""Fixtures of the CUDA backend tests: the runtime tests' seeded small models (tests/support/gguf_fixture.py)
as GGUFs, written on first use.  Skip markers come from tests/ci_policy.py: ``needs_cuda_build`` (host
execution of the kernel code) and ``needs_cuda_device`` (the "no CUDA device:" reason, the one skip CI accepts).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gguf_fixture():
    from support import gguf_fixture

    return gguf_fixture


@pytest.fixture(scope="session")
def small_args():
    from dsv4_gguf.config import PRESETS

    return dataclasses.replace(PRESETS["tiny"], vocab_size=1024).validate()


@pytest.fixture(scope="session")
def small_weights(small_args):
    from dsv4_gguf.reference import random_weights

    return {k: v.numpy() for k, v in random_weights(small_args, 0).items()}


@pytest.fixture(scope="session")
def small_gguf(tmp_path_factory, small_args, small_weights, gguf_fixture):
    """variant -> path of the small model's GGUF (written on first use)."""
    d = tmp_path_factory.mktemp("cuda_gguf")
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            cache[variant] = gguf_fixture.write_gguf(d / f"small_{variant}.gguf", small_args, small_weights, variant)
        return cache[variant]

    return get
