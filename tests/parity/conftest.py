"""Fixtures of the reference-model tests: seeded random-weight models built from the tiny preset.

``small`` is the tiny preset with a 1,024-token vocabulary (the head matmul dominates otherwise); the
architecture (SWA, HCA, CSA, hash layers, MTP) is unchanged.  Measured errors are printed at the end.
"""

from __future__ import annotations

import pytest
import torch

from dsv4_gguf.config import PRESETS
from dsv4_gguf.reference import RefOptions, Transformer, load_weights, random_weights
from dsv4_gguf.reference.tolerances import assert_close

_ERRORS: dict[str, float] = {}


def build(args, seed: int = 0, opts: RefOptions | None = None) -> Transformer:
    model = Transformer(args, opts)
    load_weights(model, random_weights(args, seed))
    return model


@pytest.fixture(scope="session")
def small_args():
    return PRESETS["tiny"].replace(vocab_size=1024)


@pytest.fixture(scope="session")
def small_model(small_args):
    return build(small_args, seed=0)


@pytest.fixture(scope="session")
def small_model_noqat(small_args):
    return build(small_args, seed=0, opts=RefOptions(qat=False))


@pytest.fixture(scope="session")
def small_model_f64(small_args):
    """float64 activations: chunking differences drop to ~1e-14, so the QAT rounding grids see the same
    inputs on every path and the comparison can be tight with QAT on."""
    return build(small_args, seed=0, opts=RefOptions(act_dtype=torch.float64))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The models are tiny: intra-op threading only adds overhead on the shared 2-core machines.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def close():
    """``close(got, ref, key, what)``: assert_close that also records the measured max error."""

    def _close(got, ref, key, what):
        err = assert_close(got, ref, key, what)
        _ERRORS[what] = max(err, _ERRORS.get(what, 0.0))
        return err

    return _close


def pytest_terminal_summary(terminalreporter):
    if _ERRORS:
        terminalreporter.section("reference-model measured max |got-ref|")
        for k, v in sorted(_ERRORS.items()):
            terminalreporter.write_line(f"{k:<60s} {v:.3e}")


@pytest.fixture(scope="session")
def tokens(small_args):
    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, small_args.vocab_size, (2, 400), generator=g)
