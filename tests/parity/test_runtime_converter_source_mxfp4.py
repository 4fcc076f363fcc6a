"""Runtime vs reference on the converter's SOURCE, MXFP4_MOE GGUFs of the tiny checkpoint (issue 7,
must-show 1); the body and the rule are in tests/support/converter_parity.py and tests/support/parity.py."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from support import converter_parity as _mod  # noqa: E402

tokens = _mod.tokens
converted = _mod.converted
test_converter_variant_parity, _report = _mod.make(["SOURCE", "MXFP4_MOE"])
