"""The runtime-vs-reference rule itself (tests/support/parity.py), on made-up logits and selection taps: the
exact-mode KLD bound covers the positions before a near-tie choice flip in the second half of the run, the
whole run otherwise, and a difference before the flip or an early flip's aftermath still fails."""

from __future__ import annotations

import numpy as np
import pytest
from support import parity

T, V = 40, 16


def _run(flip_at: int | None, kld_at: int, margin: float = 0.01):
    """Reference and runtime logits equal except at ``kld_at`` (a large divergence there), and router taps that
    differ from ``flip_at`` on (with runtime ``margin`` at the flip)."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((T, V)) * 3
    got = ref.copy()
    got[kld_at] = np.roll(got[kld_at], 1)
    r_idx = np.zeros((T, 2), np.int32)
    g_idx = r_idx.copy()
    marg = np.ones((T, 1), np.float32)
    if flip_at is not None:
        g_idx[flip_at:, 1] = 1
        marg[flip_at] = margin
    ref_taps = {"layers.0.router_idx": r_idx}
    got_taps = {"layers.0.router_idx": g_idx, "layers.0.router_margin": marg}
    return parity.compare(ref, got, ref_taps, got_taps)


def test_kld_after_a_late_near_tie_flip_is_not_bounded():
    c = _run(flip_at=30, kld_at=33)
    assert c.mean_kld > 1e-3 and c.mean_kld_bounded == 0
    parity.check(c, "late flip", min_top1=0.9, max_mean_kld=1e-3)


@pytest.mark.parametrize(
    "flip_at, kld_at, why",
    [
        (30, 10, "a difference before the flip"),
        (10, 15, "an early flip: every position stays bounded"),
        (None, 33, "no flip at all"),
    ],
)
def test_kld_bound_still_fails(flip_at, kld_at, why):
    c = _run(flip_at=flip_at, kld_at=kld_at)
    with pytest.raises(AssertionError, match="mean KLD"):
        parity.check(c, why, min_top1=0.9, max_mean_kld=1e-3)


def test_a_wide_margin_flip_is_a_bug():
    c = _run(flip_at=30, kld_at=33, margin=0.5)
    with pytest.raises(AssertionError, match="wide margin"):
        parity.check(c, "wide", min_top1=0.9, max_mean_kld=1e-3)
