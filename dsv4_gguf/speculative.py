"""Speculative decoding with the MTP draft block: k = 1-3 draft tokens per step, verified by one batched forward.

A step drafts ``d1`` with the MTP block (DeepSeek-V4's ``MTPBlock``) from the last sampled token ``x``, and
``d2``, ``d3`` by applying the block to its own output (``Session.mtp_self``, provisional positions), then
feeds ``[x, d1..dk]`` as one chunk after ``Session.checkpoint()``: the logits of each position decide the
next draft, those after the last kept draft give one more token for free.  ``Session.rollback`` drops the
positions of rejected drafts exactly (KV window rows, compressor states, entry counts, MTP streams and the
provisional MTP positions; no replay), so the session is the one plain decoding would have.

- Greedy (``temperature <= 0``): a draft is kept iff it is the target's argmax, so the tokens are those of
  plain greedy decoding (chunked and one-token forwards give bit-identical logits in this runtime).
- Sampling: the standard speculative-sampling rule (Leviathan et al. 2023, Chen et al. 2023): draft ``d``
  drawn from the draft distribution ``q`` is kept with probability ``min(1, p(d) / q(d))``, else the token is
  drawn from ``max(0, p - q)`` renormalised and the step ends; the output distribution is the target's
  ``p`` (temperature and top-p applied to both).
- ``draft="auto"``: picks k (or a plain decode step) with the most expected tokens per second from the
  measured per-draft acceptance and step times (``_Auto``).  Acceptance is measured by probes: plain steps
  that also draft their token with the MTP block and compare (greedy: the argmax; sampling: the acceptance
  probability sum(min(p, q))).  While plain decoding wins, a probe runs after ``PROBE_EVERY`` tokens, the
  interval doubling up to ``PROBE_MAX``, and never sooner than its measured cost allows (``PROBE_BUDGET``), so
  that a poor drafter costs one MTP pass now and then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DRAFTS", "SHADOW", "SpecStats", "accept_or_resample", "probs", "sample", "speculate"]

DRAFTS = (1, 2, 3)  # draft tokens per step: the MTP block once, then applied to its own output
PROBE_EVERY = 16  # draft="auto" with speculation off: plain tokens before a probe (doubling)
PROBE_MAX = 256
PROBE_BUDGET = 0.01  # ... and at least t_mtp / (PROBE_BUDGET * t_plain) tokens: probes at most ~1 % of decode time
SHADOW = -1  # draft="auto": a plain step that also checks the MTP block's draft (measures acceptance)
VERIFY_PRIOR = 1.25  # draft="auto": a k = 1 verify step in plain steps, until one has been timed
_EMA = 0.25


def probs(logits: np.ndarray, temperature: float, top_p: float) -> np.ndarray:
    """The sampling distribution of ``logits`` (float64): softmax at ``temperature``, then the top-p nucleus
    (smallest set of most likely tokens whose mass reaches ``top_p``), renormalised."""
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = np.cumsum(p[order]) - p[order] < top_p
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return p


def sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    p = probs(logits, temperature, top_p)
    return int(rng.choice(p.size, p=p))


def accept_or_resample(p: np.ndarray, q: np.ndarray, d: int, rng: np.random.Generator) -> tuple[bool, int]:
    """The speculative-sampling rule for a draft ``d`` drawn from ``q``: keep it with probability
    ``min(1, p[d] / q[d])``, else draw from ``max(0, p - q)`` renormalised.  The token returned is distributed
    as ``p`` (the target), whatever ``q`` is."""
    if rng.random() < min(1.0, p[d] / q[d]):
        return True, d
    r = np.maximum(p - q, 0.0)
    return False, int(rng.choice(r.size, p=r / r.sum()))


@dataclass
class SpecStats:
    """Counts of one speculative generation: ``steps`` verify steps, ``accepted`` drafts kept of
    ``drafted``, ``plain`` tokens decoded without a draft (draft="auto" off, or at the context end), ``probes`` of
    them with a draft checked against their logits."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    plain: int = 0
    probes: int = 0  # plain steps of draft="auto" that also drafted with the MTP block, to measure acceptance
    verify_s: float = 0.0
    draft_s: float = 0.0
    plain_s: float = 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class _Auto:
    """draft="auto": each step, the number of drafts k (0 = a plain decode step) with the most expected tokens per
    second: (1 + a + ... + a^k) / t(k), with a the per-draft acceptance and t(k) the measured seconds of a step
    with k drafts (verify + drafting), both exponential moving averages.

    Acceptance is also measured without speculating: a probe (`SHADOW`) is a plain decode step that also drafts
    its token with the MTP block and checks the draft against the step's own logits, so that a poor drafter costs
    one MTP pass per probe instead of a wasted verify step.  The first step is a probe.  Until a k = 1 step has
    been timed, t(1) is estimated as the probes' MTP time plus `VERIFY_PRIOR` plain steps; larger k are tried
    once k = 1 wins.  While plain decoding wins, a probe runs after `PROBE_EVERY` plain tokens, the interval
    doubling up to `PROBE_MAX`, but never after fewer than t_mtp / (`PROBE_BUDGET` t_plain) plain tokens: where an
    MTP pass costs most of a decode step (flash-slice: 0.5-1 of one, with its catch-up) probes every 16 tokens
    took ~5 % of the first 64 tokens' time; where it is cheap (the real Flash: a draft reads ~7 % of a token's
    bytes) the interval stays `PROBE_EVERY`."""

    def __init__(self, ks: Sequence[int] = DRAFTS) -> None:
        self.ks = tuple(ks)
        self.acc = 0.5  # per-draft acceptance (EMA)
        self.t: dict[int, float] = {}  # k -> seconds of a step (k = 0: plain decode)
        self.t_mtp: float | None = None  # seconds of the MTP pass of a probe
        self.probed = False
        self.off_since = 0
        self.interval = PROBE_EVERY

    def _ema(self, k: int, seconds: float) -> None:
        old = self.t.get(k)
        self.t[k] = seconds if old is None else (1 - _EMA) * old + _EMA * seconds

    def spec_step(self, k: int, accepted: int, seconds: float) -> None:
        seen = accepted + (accepted < k)  # drafts whose verdict was looked at
        self.acc = (1 - _EMA) * self.acc + _EMA * (accepted / seen)
        self._ema(k, seconds)

    def plain_step(self, seconds: float) -> None:
        self._ema(0, seconds)
        self.off_since += 1

    def probe(self, hit: float, mtp_seconds: float, plain_seconds: float) -> None:
        """A probe's outcome: ``hit`` the draft's acceptance probability (greedy: 1 or 0)."""
        self.acc = (1 - _EMA) * self.acc + _EMA * hit
        self.t_mtp = mtp_seconds if self.t_mtp is None else (1 - _EMA) * self.t_mtp + _EMA * mtp_seconds
        self._ema(0, plain_seconds)
        self.probed = True
        self.off_since = 0

    def _t(self, k: int) -> float | None:
        if k in self.t:
            return self.t[k]
        if k == self.ks[0] and 0 in self.t and self.t_mtp is not None:
            return self.t_mtp + VERIFY_PRIOR * self.t[0]
        return None

    def rate(self, k: int) -> float:
        t = self._t(k)
        assert t is not None
        return sum(self.acc**i for i in range(k + 1)) / t

    def choose(self) -> int:
        """Drafts for the next step (0: decode plainly; `SHADOW`: decode plainly and probe the drafter)."""
        if not self.probed:
            return SHADOW
        known = [k for k in self.ks if self._t(k) is not None]
        best = max(known, key=self.rate)
        if self.rate(best) > self.rate(0):
            self.interval = PROBE_EVERY
            self.off_since = 0
            nxt = next((k for k in self.ks if self._t(k) is None), None)
            return nxt if nxt is not None and best == max(known) else best  # try the next larger k once
        floor = 0 if self.t_mtp is None else math.ceil(self.t_mtp / (PROBE_BUDGET * max(self.t[0], 1e-9)))
        floor = min(floor, PROBE_MAX)
        if self.off_since >= max(self.interval, floor):
            self.interval = min(2 * self.interval, PROBE_MAX)
            return SHADOW
        return 0


def speculate(
    sess,  # noqa: ANN001 - runtime.Session made with mtp=True, the prompt prefilled
    prompt: Sequence[int],
    logits: np.ndarray,
    *,
    temperature: float,
    top_p: float,
    rng: np.random.Generator,
    draft: int | str = 1,
    stats: SpecStats | None = None,
    drafter: Callable[[int, int | None], int] | None = None,
    run_mtp: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[int]:
    """Yield generated token ids (the first one sampled from ``logits``, the prompt's last logits) until the
    caller stops or the session's context is full.  Every yielded token but the last one has been fed to the
    session (as in plain decoding, up to the accepted drafts of the last step).  ``draft``: drafts per step
    (1-3: the MTP block, then the MTP block applied to its own output) or "auto".  ``drafter(i, mtp_token)``
    (greedy only, for benchmarks): the token to verify as output token ``i`` instead of the MTP block's greedy
    draft (which is still computed, so a step costs what it costs with the real drafter).  ``run_mtp=False`` (with
    a drafter only): the MTP block does not run at all and ``mtp_token`` is None, so that a step costs only its
    verification (an oracle's free drafts: the upper bound of the speed-up curve).  The MTP block should
    have consumed the prompt already (``sess.mtp(prompt[1:])`` after prefill, as ``Model.generate`` does); else
    the first step catches up on it."""
    if drafter is not None and temperature > 0:
        raise ValueError("a drafter override needs greedy decoding (temperature 0)")
    if not run_mtp and drafter is None:
        raise ValueError("run_mtp=False needs a drafter")
    if draft not in (*DRAFTS, "auto"):
        raise ValueError(f"draft must be one of {', '.join(map(str, DRAFTS))} or 'auto', got {draft!r}")
    st = stats if stats is not None else SpecStats()
    auto = _Auto() if draft == "auto" else None
    greedy = temperature <= 0
    base = sess.pos - len(prompt)  # position of prompt[0]: the session may hold earlier turns
    if run_mtp and sess.mtp_pos + 1 < base:
        raise ValueError(
            f"the MTP block of this session stops at position {sess.mtp_pos}, before the prompt at {base}: feed it "
            "the tokens in between with session.mtp(...) first, or speculate in a fresh session"
        )
    x = sample(logits, temperature, top_p, rng)
    n_out = 1
    yield x
    fed = list(prompt)  # the tokens fed to the session from position base on
    dlog: np.ndarray | None = None
    while True:
        room = sess.ctx - sess.pos
        if room <= 0:
            return
        k = auto.choose() if auto is not None else int(draft)
        k = min(k, room - 1)
        if k == SHADOW:
            assert auto is not None
            t0 = clock()
            d: int | None = None
            dlog = None
            if run_mtp:  # the MTP block's draft for the token after x (catching up on plain tokens first)
                dlog = sess.mtp([*fed[sess.mtp_pos + 1 - base :], x])
                d = int(np.argmax(dlog))
            t1 = clock()
            logits = sess.decode(x)
            t2 = clock()
            if drafter is not None:
                d = int(drafter(n_out, d))
            if greedy:
                hit = float(d == int(np.argmax(logits)))
            else:  # the acceptance probability of a draft drawn from q: sum of min(p, q)
                assert dlog is not None
                hit = float(np.minimum(probs(logits, temperature, top_p), probs(dlog, temperature, top_p)).sum())
            auto.probe(hit, t1 - t0, t2 - t1)
            st.plain += 1
            st.probes += 1
            st.plain_s += t2 - t1
            st.draft_s += t1 - t0
            fed.append(x)
            dlog = None
            x = sample(logits, temperature, top_p, rng)
            n_out += 1
            yield x
            continue
        if k <= 0:
            t0 = clock()
            logits = sess.decode(x)
            dt = clock() - t0
            st.plain += 1
            st.plain_s += dt
            if auto is not None:
                auto.plain_step(dt)
            fed.append(x)
            dlog = None
            x = sample(logits, temperature, top_p, rng)
            n_out += 1
            yield x
            continue
        t0 = clock()
        catch_up = 0.0
        if dlog is None and run_mtp:  # the MTP block catches up on the positions decoded plainly (one batched call)
            dlog = sess.mtp([*fed[sess.mtp_pos + 1 - base :], x])
            catch_up = clock() - t0
        drafts: list[int] = []
        qs: list[np.ndarray | None] = []
        lg_d = dlog
        for i in range(k):
            q = None if greedy else probs(lg_d, temperature, top_p)
            d = None if lg_d is None else int(np.argmax(lg_d)) if q is None else int(rng.choice(q.size, p=q))
            if drafter is not None:
                d = int(drafter(n_out + i, d))
            drafts.append(d)
            qs.append(q)
            if i + 1 < k and run_mtp:
                lg_d = sess.mtp_self(d)
        t1 = clock()
        p_ck = sess.pos
        sess.checkpoint()
        lg = sess.prefill([x, *drafts], all_logits=True)
        t2 = clock()
        accepted, y = 0, None
        for i in range(k):
            if greedy:
                want = int(np.argmax(lg[i]))
                ok, tok = drafts[i] == want, want
            else:
                ok, tok = accept_or_resample(probs(lg[i], temperature, top_p), qs[i], drafts[i], rng)
            if not ok:
                y = tok
                break
            accepted += 1
        if y is None:
            y = sample(lg[k], temperature, top_p, rng)
        if accepted < k:
            sess.rollback(p_ck + 1 + accepted)  # also drops the provisional MTP positions
        elif run_mtp:
            sess.mtp_discard()
        st.steps += 1
        st.drafted += k
        st.accepted += accepted
        fed.extend((x, *drafts[:accepted]))
        for d in drafts[:accepted]:
            n_out += 1
            yield d
        t3 = clock()
        if run_mtp:
            dlog = sess.mtp([*drafts[:accepted], y])
        t4 = clock()
        st.verify_s += t2 - t1
        st.draft_s += (t1 - t0) + (t4 - t3)
        if auto is not None:  # a step's own cost: the catch-up after plain tokens is paid once per switch
            auto.spec_step(k, accepted, (t2 - t0) + (t4 - t3) - catch_up)
        x = y
        n_out += 1
        yield x
