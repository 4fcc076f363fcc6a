"""Runtime vs reference on the converter's Q8_0, Q6_K, Q3_K_M GGUFs of the tiny checkpoint (issue 7,
must-show 1); the body and the rule are in tests/runtime/converter_parity.py and tests/runtime/parity.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

_spec = importlib.util.spec_from_file_location(
    "rt_converter_parity_b", Path(__file__).resolve().parents[1] / "runtime" / "converter_parity.py")
_mod = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _mod
_spec.loader.exec_module(_mod)

tokens = _mod.tokens
converted = _mod.converted
test_converter_variant_parity, _report = _mod.make(['Q8_0', 'Q6_K', 'Q3_K_M'])
