"""Shared fixtures: synthetic checkpoints generated from seeds (never committed binaries)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dsv4_gguf.config import PRESETS, ModelArgs


@pytest.fixture(scope="session")
def tiny_args() -> ModelArgs:
    return PRESETS["tiny"]


@pytest.fixture(scope="session")
def micro_args() -> ModelArgs:
    """The tiny layout with a 1024-token vocabulary: every structural feature, a few MB on disk."""
    return dataclasses.replace(PRESETS["tiny"], vocab_size=1024).validate()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory, tiny_args: ModelArgs) -> Path:
    """The tiny synthetic checkpoint (seed 0, several shards), written once per test session."""
    from dsv4_gguf.synth import write_synthetic

    return write_synthetic(tiny_args, tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def micro_ckpt(tmp_path_factory: pytest.TempPathFactory, micro_args: ModelArgs) -> Path:
    """A micro checkpoint split into many small shards; tests copy it before corrupting it."""
    from dsv4_gguf.synth import write_synthetic

    return write_synthetic(micro_args, tmp_path_factory.mktemp("ckpt") / "micro", seed=1,
                           max_shard_bytes=1 << 20)
