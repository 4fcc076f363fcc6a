"""dsv4-gguf: DeepSeek-V4 checkpoints to GGUF, and the tools around them."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import PRESETS, ConfigError, ModelArgs, load_config, preset  # noqa: E402

__all__ = [
    "__version__",
    "ModelArgs",
    "ConfigError",
    "PRESETS",
    "preset",
    "load_config",
    "build_info",
    "open_gguf",
    "load",
]


def __getattr__(name: str):
    # Lazy: keeps ``import dsv4_gguf`` free of numpy and the native extension.
    if name == "open_gguf":
        from .gguf_model import open_gguf

        return open_gguf
    if name == "load":  # the C++ runtime (dsv4_gguf.runtime)
        from .runtime import load

        return load
    raise AttributeError(f"module 'dsv4_gguf' has no attribute {name!r}")


def build_info() -> dict:
    """Features of the compiled core (SIMD, CUDA, compiler)."""
    from . import _C

    return dict(_C.build_info())
