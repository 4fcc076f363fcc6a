"""PyTorch reference of DeepSeek-V4 (see model.py) and its test helpers."""

from __future__ import annotations

from .model import (
    AttnState,
    CompressorState,
    RefOptions,
    State,
    Taps,
    Transformer,
    load_weights,
)
from .random_init import random_weights

__all__ = [
    "AttnState",
    "CompressorState",
    "RefOptions",
    "State",
    "Taps",
    "Transformer",
    "load_weights",
    "random_weights",
]
