"""Runtime input checks (issue 11): out-of-range, mistyped or empty token ids and context overflow are
refused with an error naming the token, the index or the limit and the fix, through the Python facade and
directly on ``_C.Session``; a refused call consumes nothing (the next logits equal a clean session's)."""

from __future__ import annotations

import numpy as np
import pytest
from hardening.runtime_support import tiny_gguf

from dsv4_gguf import runtime


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return runtime.load(tiny_gguf(tmp_path_factory.mktemp("rt_inputs") / "a.gguf"), threads=2)


def _same_as_clean(model, s, prefix: np.ndarray, nxt: np.ndarray) -> bool:
    clean = model.session(ctx=s.ctx)
    if len(prefix):
        clean.prefill(prefix)
    return np.array_equal(s.prefill(nxt, all_logits=True), clean.prefill(nxt, all_logits=True))


@pytest.mark.parametrize(("bad", "index"), [(-1, 1), (1024, 2), (2**31 - 1, 0), (2**40, 1), (-(2**63), 2)])
def test_out_of_range_token_ids(model, bad, index):
    s = model.session(ctx=32)
    s.prefill([5, 6])
    toks = np.array([3, 4, 7], dtype=np.int64)
    toks[index] = bad
    with pytest.raises(IndexError, match=rf"token id {bad} at index {index} is outside the vocabulary \[0, 1024\)"):
        s.prefill(toks)
    with pytest.raises(IndexError, match=rf"token id {bad} at index 0 is outside the vocabulary"):
        s.decode(bad)
    assert s.pos == 2 and _same_as_clean(model, s, np.array([5, 6]), np.array([9, 10]))


def test_out_of_range_ids_on_the_extension_directly(model):
    """_C.Session checks ids itself (a caller that bypasses the facade must not index past the embedding)."""
    s = model.session(ctx=32)
    raw = s._s
    for bad in (-1, 1024, np.iinfo(np.int32).max, np.iinfo(np.int32).min):
        with pytest.raises(IndexError, match=rf"token id {bad} at index 1 is outside the vocabulary \[0, 1024\)"):
            raw.forward(np.array([0, bad], dtype=np.int32))
    with pytest.raises(TypeError, match="expected an int32 array, got dtype int64"):
        raw.forward(np.array([1, 2], dtype=np.int64))
    with pytest.raises(ValueError, match="C-contiguous 1-D"):
        raw.forward(np.arange(8, dtype=np.int32)[::2])
    with pytest.raises(ValueError, match="C-contiguous 1-D"):
        raw.forward(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="no tokens given"):
        raw.forward(np.zeros(0, dtype=np.int32))
    with pytest.raises(ValueError, match="create the session with mtp=True"):
        raw.mtp_forward(np.array([1], dtype=np.int32))
    assert s.pos == 0 and _same_as_clean(model, s, np.array([], dtype=np.int32), np.array([1, 2]))


@pytest.mark.parametrize(
    ("tokens", "error", "message"),
    [
        ([], ValueError, r"non-empty 1-D sequence of ids, got shape \(0,\)"),
        ([[1, 2]], ValueError, r"non-empty 1-D sequence of ids, got shape \(1, 2\)"),
        ([1.0, 2.0], TypeError, "must be integers, got dtype float64"),
        ([True, False], TypeError, "must be integers, got dtype bool"),
        (["1"], TypeError, "must be integers, got dtype <U1"),
        ([2**70], TypeError, "must be integers, got dtype object"),
    ],
)
def test_mistyped_tokens(model, tokens, error, message):
    s = model.session(ctx=32)
    with pytest.raises(error, match=message):
        s.prefill(tokens)
    assert s.pos == 0


def test_context_overflow(model):
    s = model.session(ctx=20)
    s.prefill(np.arange(12))
    with pytest.raises(
        ValueError,
        match=r"context overflow: the session holds 12 tokens and 9 more exceed its "
        r"context of 20; create the session with a larger ctx",
    ):
        s.prefill(np.arange(9), chunk_size=4)  # checked before the first chunk: nothing is consumed
    with pytest.raises(ValueError, match=r"holds 12 tokens and 9 more exceed its context of 20"):
        s._s.forward(np.arange(9, dtype=np.int32))  # the extension's own check
    assert s.pos == 12
    s.prefill(np.arange(8))
    assert s.pos == s.ctx == 20
    with pytest.raises(ValueError, match=r"holds 20 tokens and 1 more exceed its context of 20"):
        s.decode(3)
    assert s.pos == 20
    s.reset()
    assert s.pos == 0 and _same_as_clean(model, s, np.array([], dtype=np.int32), np.arange(5))


@pytest.mark.parametrize(
    ("ctx", "message"),
    [
        (0, r"ctx must be an integer in \[1, 4294967296\]"),
        (-5, r"got -5"),
        (2**32 + 1, r"got 4294967297"),
        (2**70, r"got 1180591620717411303424"),
        (1.5, r"got 1.5"),
        (True, r"got True"),
    ],
)
def test_bad_ctx(model, ctx, message):
    with pytest.raises(ValueError, match=message):
        model.session(ctx=ctx)


def test_bad_ctx_on_the_extension_directly(model):
    from dsv4_gguf import _C

    with pytest.raises(ValueError, match="ctx must be positive, got 0"):
        _C.Session(model._rt, 0)
    with pytest.raises(ValueError, match=r"ctx 4294967297 exceeds the runtime's limit of 4294967296 tokens"):
        _C.Session(model._rt, 2**32 + 1)
    with pytest.raises(ValueError, match="kv_dtype must be 'f32', 'bf16' or 'fp8', got 'f16'"):
        _C.Session(model._rt, 16, "f16")
    s = _C.Session(model._rt, 2**32, "fp8")  # the largest context: capacity is reserved lazily, not committed
    assert s.kv_bytes_total() > 0 and s.ctx == 2**32
