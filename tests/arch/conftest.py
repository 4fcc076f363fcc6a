"""Fixtures of the cross-architecture tests: the small test model's GGUF per recipe (tests/support/small_model.py),
made once per session."""

from __future__ import annotations

import pytest
from support import small_model


@pytest.fixture(scope="session")
def small_gguf(tmp_path_factory):
    """variant (a recipe name) -> path of the small model's GGUF (converted on first use)."""
    models = small_model.SmallModels(tmp_path_factory.mktemp("arch_small"), small_model.small_args(), seed=0)
    return models.gguf
