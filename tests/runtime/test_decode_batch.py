"""Batched decode (``runtime.decode_batch``: several sessions, one token each, one forward pass) on the
converter's tiny GGUFs.

- Exactness: every step's logits of every session, and every session's state afterwards (its saved state
  file, byte for byte), equal those of the same session decoded alone, for batches of 1-4 sessions at
  different positions whose steps complete m = 4 (CSA, indexer) and m = 128 (HCA) compressed blocks and
  wrap the 128-row attention window; with mixed KV dtypes, an undo journal (rollback after batched steps)
  and the MTP block's pending streams (MTP draft logits after batched steps).
- Errors: every refusal (empty batch, length mismatch, a session twice, sessions of two models, taps, a
  busy session, a full context, a bad token id, CUDA) leaves every session as it was: continuing gives the
  logits of sessions that never saw the refused call.
"""

from __future__ import annotations

import numpy as np
import pytest

from dsv4_gguf import runtime

VARIANTS = ["MXFP4_MOE", "Q4_K_M"]
# Start positions: 122 and 125 cross the first m = 128 block (position 127) and the window wrap (128), 251
# the second m = 128 block (255), 3 the first m = 4 blocks; every run crosses several m = 4 edges.
STARTS = (122, 3, 251, 125)
STEPS = 10
CTX = 300


@pytest.fixture(scope="module", params=VARIANTS)
def model(request, convert_tiny):
    return runtime.load(convert_tiny(request.param), threads=2)


def _pairs(model, starts, kv=None, mtp=False, seed=0):
    """Two identical sets of sessions prefilled with the same random prompts of lengths ``starts``."""
    rng = np.random.default_rng(seed)
    kv = kv or ["f32"] * len(starts)
    batch, alone = ([model.session(ctx=CTX, kv_dtype=dt, mtp=mtp) for dt in kv] for _ in range(2))
    for a, b, p in zip(batch, alone, starts, strict=True):
        prompt = rng.integers(0, model.vocab_size, p)
        a.prefill(prompt)
        b.prefill(prompt)
    return batch, alone


def _step(batch, alone, toks):
    got = runtime.decode_batch(batch, toks)
    assert got.shape == (len(batch), batch[0].model.vocab_size) and got.dtype == np.float32
    for i, s in enumerate(alone):
        ref = s.decode(int(toks[i]))
        assert np.array_equal(got[i], ref), f"session {i} at position {s.pos - 1}"
    assert [s.pos for s in batch] == [s.pos for s in alone]


def _same_state(batch, alone, tmp_path):
    for i, (a, b) in enumerate(zip(batch, alone, strict=True)):
        a.save(tmp_path / f"batch{i}.state")
        b.save(tmp_path / f"alone{i}.state")
        assert (tmp_path / f"batch{i}.state").read_bytes() == (tmp_path / f"alone{i}.state").read_bytes(), i


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_batched_equals_alone(model, n, tmp_path):
    batch, alone = _pairs(model, STARTS[:n])
    toks = np.random.default_rng(n).integers(0, model.vocab_size, (STEPS, n))
    for step in range(STEPS):
        _step(batch, alone, toks[step])
    _same_state(batch, alone, tmp_path)
    # Model.decode_batch is the same call
    nxt = toks[0]
    got = model.decode_batch(batch, nxt)
    for i, s in enumerate(alone):
        assert np.array_equal(got[i], s.decode(int(nxt[i])))


def test_kv_dtypes_journal_and_mtp(model, tmp_path):
    starts, kv = (124, 6, 252), ["fp8", "bf16", "f32"]
    batch, alone = _pairs(model, starts, kv=kv, mtp=True, seed=1)
    for s in batch + alone:
        s.checkpoint()
    rng = np.random.default_rng(2)
    toks = rng.integers(0, model.vocab_size, (6, 3))
    for step in range(6):
        _step(batch, alone, toks[step])
    # undo the last 4 batched steps (they completed blocks and wrapped the window), then continue batched
    for s in batch + alone:
        s.rollback(s.pos - 4)
    for _ in range(4):
        _step(batch, alone, rng.integers(0, model.vocab_size, 3))
    _same_state(batch, alone, tmp_path)
    # the MTP block sees the streams that batched steps kept for it
    for a, b in zip(batch, alone, strict=True):
        assert a.mtp_pos == b.mtp_pos == 0
        nxt = rng.integers(0, model.vocab_size, b.pos)
        assert np.array_equal(a.mtp(nxt, all_logits=True), b.mtp(nxt, all_logits=True))


def test_refusals_leave_sessions_unchanged(model, convert_tiny, monkeypatch):
    batch, alone = _pairs(model, (40, 127), seed=3)
    full = model.session(ctx=20)
    full.prefill(np.arange(20) % model.vocab_size)
    spare = model.session(ctx=CTX)
    spare.prefill([1, 2, 3])
    other = runtime.load(convert_tiny("MXFP4_MOE"), threads=1).session(ctx=CTX)
    pos = [s.pos for s in batch]
    with pytest.raises(ValueError, match="no sessions"):
        runtime.decode_batch([], [])
    with pytest.raises(ValueError, match="one token per session"):
        runtime.decode_batch(batch, [1])
    with pytest.raises(ValueError, match="session 2 is session 0 again"):
        runtime.decode_batch([*batch, batch[0]], [1, 2, 3])
    with pytest.raises(ValueError, match="another loaded model"):
        runtime.decode_batch([*batch, other], [1, 2, 3])
    with pytest.raises(ValueError, match="every session must belong to this model"):
        model.decode_batch([other], [1])
    with pytest.raises(ValueError, match="context overflow"):
        runtime.decode_batch([*batch, full], [1, 2, 3])
    with pytest.raises(IndexError, match="outside the vocabulary"):
        runtime.decode_batch(batch, [1, model.vocab_size])
    spare.set_taps(["embed"])
    with pytest.raises(ValueError, match="session 2 has taps set"):
        runtime.decode_batch([*batch, spare], [1, 2, 3])
    spare.set_taps([])
    assert spare._busy.acquire(blocking=False)
    try:
        with pytest.raises(RuntimeError, match="in use by another thread"):
            runtime.decode_batch([*batch, spare], [1, 2, 3])
    finally:
        spare._busy.release()
    # the extension's own checks (the facade's come first)
    from dsv4_gguf import _C

    ids = np.array([1, 2, 3], dtype=np.int32)
    with pytest.raises(ValueError, match="session 2 is session 1 again"):
        _C.forward_batch([batch[0]._s, batch[1]._s, batch[1]._s], ids)
    with pytest.raises(ValueError, match="another loaded model"):
        _C.forward_batch([batch[0]._s, batch[1]._s, other._s], ids)
    with pytest.raises(TypeError, match="Session objects"):
        runtime.decode_batch([batch[0], "x"], [1, 2])
    monkeypatch.setattr(model, "_cuda", object())
    with pytest.raises(NotImplementedError, match="cuda"):
        runtime.decode_batch(batch, [1, 2])
    monkeypatch.undo()
    assert [s.pos for s in batch] == pos and full.pos == 20 and spare.pos == 3
    # nothing was half-advanced: the next steps are those of sessions that never saw the refused calls
    toks = np.random.default_rng(4).integers(0, model.vocab_size, (3, 2))
    for step in range(3):
        _step(batch, alone, toks[step])
