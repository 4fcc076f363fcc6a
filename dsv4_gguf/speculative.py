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
  measured per-draft acceptance and step times (``_Auto``); while plain decoding wins it tries one
  speculative step after ``PROBE_EVERY`` tokens, the interval doubling up to ``PROBE_MAX``, so that a poor
  drafter costs little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DRAFTS", "SpecStats", "accept_or_resample", "probs", "sample", "speculate"]

DRAFTS = (1, 2, 3)  # draft tokens per step: the MTP block once, then applied to its own output
PROBE_EVERY = 16  # draft="auto" with speculation off: plain tokens before a trial step (doubling)
PROBE_MAX = 256
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
    ``drafted``, ``plain`` tokens decoded without a draft (draft="auto" off, or at the context end)."""

    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    plain: int = 0
    verify_s: float = 0.0
    draft_s: float = 0.0
    plain_s: float = 0.0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0


class _Auto:
    """draft="auto": each step, the number of drafts k (0 = a plain decode step) with the most expected tokens per
    second: (1 + a + ... + a^k) / t(k), with a the per-draft acceptance and t(k) the measured seconds of a step
    with k drafts (verify + drafting), both exponential moving averages.  Measures a plain step and a k = 1
    step first; larger k only once k = 1 beats plain decoding.  While plain decoding wins, one speculative step
    is tried after `PROBE_EVERY` tokens, the interval doubling (up to `PROBE_MAX`) after each probe that does
    not win, so that a poor drafter costs a few percent."""

    def __init__(self, ks: Sequence[int] = DRAFTS) -> None:
        self.ks = tuple(ks)
        self.acc = 0.5  # per-draft acceptance (EMA)
        self.t: dict[int, float] = {}  # k -> seconds of a step (k = 0: plain decode)
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

    def rate(self, k: int) -> float:
        return sum(self.acc**i for i in range(k + 1)) / self.t[k]

    def choose(self) -> int:
        """Drafts for the next step (0: decode plainly)."""
        for k in (0, self.ks[0]):
            if k not in self.t:
                return k
        known = [k for k in self.ks if k in self.t]
        best = max(known, key=self.rate)
        if self.rate(best) > self.rate(0):
            self.interval = PROBE_EVERY
            nxt = next((k for k in self.ks if k not in self.t), None)
            return nxt if nxt is not None and best == max(known) else best  # try the next larger k once
        if self.off_since >= self.interval:
            self.off_since = 0
            self.interval = min(2 * self.interval, PROBE_MAX)
            return best
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
    drafter: Callable[[int, int], int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[int]:
    """Yield generated token ids (the first one sampled from ``logits``, the prompt's last logits) until the
    caller stops or the session's context is full.  Every yielded token but the last one has been fed to the
    session (as in plain decoding, up to the accepted drafts of the last step).  ``draft``: drafts per step
    (1-3: the MTP block, then the MTP block applied to its own output) or "auto".  ``drafter(i, mtp_token)``
    (greedy only, for benchmarks): the token to verify as output token ``i`` instead of the MTP block's greedy
    draft (which is still computed, so a step costs what it costs with the real drafter)."""
    if drafter is not None and temperature > 0:
        raise ValueError("a drafter override needs greedy decoding (temperature 0)")
    if draft not in (*DRAFTS, "auto"):
        raise ValueError(f"draft must be one of {', '.join(map(str, DRAFTS))} or 'auto', got {draft!r}")
    st = stats if stats is not None else SpecStats()
    auto = _Auto() if draft == "auto" else None
    greedy = temperature <= 0
    x = sample(logits, temperature, top_p, rng)
    n_out = 1
    yield x
    fed = list(prompt)  # every token fed to the session, by position
    dlog: np.ndarray | None = None
    while True:
        room = sess.ctx - sess.pos
        if room <= 0:
            return
        k = auto.choose() if auto is not None else int(draft)
        k = min(k, room - 1)
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
        if dlog is None:  # the MTP block catches up on the positions decoded plainly (one batched call)
            dlog = sess.mtp([*fed[sess.mtp_pos + 1 :], x])
        drafts: list[int] = []
        qs: list[np.ndarray | None] = []
        lg_d = dlog
        for i in range(k):
            q = None if greedy else probs(lg_d, temperature, top_p)
            d = int(np.argmax(lg_d)) if q is None else int(rng.choice(q.size, p=q))
            if drafter is not None:
                d = int(drafter(n_out + i, d))
            drafts.append(d)
            qs.append(q)
            if i + 1 < k:
                lg_d = sess.mtp_self(d)
        t1 = clock()
        base = sess.pos
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
            sess.rollback(base + 1 + accepted)  # also drops the provisional MTP positions
        else:
            sess.mtp_discard()
        st.steps += 1
        st.drafted += k
        st.accepted += accepted
        fed.extend((x, *drafts[:accepted]))
        for d in drafts[:accepted]:
            n_out += 1
            yield d
        t3 = clock()
        dlog = sess.mtp([*drafts[:accepted], y])
        t4 = clock()
        st.verify_s += t2 - t1
        st.draft_s += (t1 - t0) + (t4 - t3)
        if auto is not None:
            auto.spec_step(k, accepted, (t2 - t0) + (t4 - t3))
        x = y
        n_out += 1
        yield x
