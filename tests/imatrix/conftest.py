"""Fixtures of the imatrix tests: the tiny reference-model weights as an F32 GGUF (runtime vs reference),
the tiny synthetic checkpoint converted to SOURCE, calibration and held-out text."""

from __future__ import annotations

import random
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def source_gguf(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic checkpoint converted to SOURCE (lossless; with its tokenizer), no MTP."""
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("im-src") / "tiny-SOURCE.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "SOURCE", "--no-mtp"]) == 0
    return out


def words_text(seed: int, n: int, vocab: str) -> str:
    rng = random.Random(seed)
    words = vocab.split()
    return " ".join(rng.choice(words) for _ in range(n))


CALIB_WORDS = (
    "def return import class for while if else print value list the a river walks under tree at dawn "
    "and dusk forest model token layer expert weight"
)
HELD_WORDS = (
    "the a tapir walks under tree at dawn and dusk river forest quietly eats leaves while birds sing over "
    "water in morning light"
)


@pytest.fixture(scope="session")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small calibration text for the format tests (the KLD test uses the shipped corpus)."""
    p = tmp_path_factory.mktemp("text") / "calib.txt"
    p.write_text(words_text(1, 900, CALIB_WORDS), encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("text") / "held_out.txt"
    p.write_text(words_text(7, 1600, HELD_WORDS), encoding="utf-8")
    return p
