"""Ollama export for DeepSeek-V4 GGUFs: a Modelfile, and either a direct install into an Ollama models store or
an upload through Ollama's HTTP API.

- ``model``: names and their validation (``parse_name``), the constants (``ARCH``, ``MEDIA``, ...),
  ``OllamaExportError``, the input GGUF check (``inspect_gguf`` -> ``GGUFInfo``) and the Modelfile text.
- ``store``: the direct install into a models directory (``install``, ``merge_split_gguf``, the atomic blob
  writer).
- ``api``: the upload through a running server (``check_server``, ``install_via_api``).
- ``cli``: ``dsv4-gguf ollama`` (``add_ollama_arguments``, ``run_ollama``, ``ollama_main``).

The names below are re-exported for callers; a test that replaces one must patch it on the submodule that
calls it (e.g. ``dsv4_gguf.ollama.cli.inspect_gguf``), not here.
"""

from __future__ import annotations

from .api import check_server, install_via_api
from .cli import add_ollama_arguments, ollama_main, run_ollama
from .model import (
    ARCH,
    DEFAULT_NUM_CTX,
    DEFAULT_PARAMS,
    FILE_TYPES,
    LICENSE_MIT,
    MEDIA,
    NAMESPACE,
    REGISTRY,
    GGUFInfo,
    OllamaExportError,
    human_count,
    inspect_gguf,
    modelfile,
    parameters,
    parse_name,
)
from .store import InstallResult, default_models_dir, install, merge_split_gguf

__all__ = [
    "ARCH",
    "DEFAULT_NUM_CTX",
    "DEFAULT_PARAMS",
    "FILE_TYPES",
    "LICENSE_MIT",
    "MEDIA",
    "NAMESPACE",
    "REGISTRY",
    "GGUFInfo",
    "InstallResult",
    "OllamaExportError",
    "add_ollama_arguments",
    "check_server",
    "default_models_dir",
    "human_count",
    "inspect_gguf",
    "install",
    "install_via_api",
    "merge_split_gguf",
    "modelfile",
    "ollama_main",
    "parameters",
    "parse_name",
    "run_ollama",
]
