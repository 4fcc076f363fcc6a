"""Speculative decoding with the MTP draft block: one draft token per step, verified by one batched forward.

A step feeds ``[x, d]`` (the last sampled token and the MTP block's draft for the token after it) as one
two-token chunk after ``Session.checkpoint()``: the logits of ``x`` decide whether ``d`` is accepted, those
of ``d`` give the next token for free when it is.  On a rejection ``Session.rollback`` drops ``d``'s
position exactly (KV window rows, compressor states, entry counts, MTP streams; no replay), so the session
is the one plain decoding would have.

- Greedy (``temperature <= 0``): ``d`` is accepted iff it is the target's argmax, so the tokens are those of
  plain greedy decoding (chunked and one-token forwards give bit-identical logits in this runtime).
- Sampling: the standard speculative-sampling rule (Leviathan et al. 2023, Chen et al. 2023): ``d`` drawn
  from the draft distribution ``q`` is kept with probability ``min(1, p(d) / q(d))``, else the token is
  drawn from ``max(0, p - q)`` renormalised; the output distribution is the target's ``p`` (temperature
  and top-p applied to both).
- ``draft="auto"``: keeps speculating while the measured tokens per second of a step (1 + acceptance over
  the time of verify + draft) beat those of a plain decode step, measured as it goes; when they do not,
  decodes plainly and tries one step again every ``PROBE_EVERY`` tokens, so that a poor drafter costs
  little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["DRAFTS", "SpecStats", "accept_or_resample", "probs", "sample", "speculate"]

DRAFTS = (1,)  # draft tokens per step this runtime verifies (the MTP block applied once)
PROBE_EVERY = 16  # draft="auto" with speculation off: plain tokens between two trial steps
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
    """draft="auto": speculate while a step's expected tokens per second beat plain decoding's."""

    def __init__(self) -> None:
        self.acc = 0.5  # acceptance estimate (EMA)
        self.t_step: float | None = None  # seconds of verify + draft (EMA)
        self.t_plain: float | None = None  # seconds of a plain decode step (EMA)
        self.off_since = 0

    @staticmethod
    def _ema(old: float | None, new: float) -> float:
        return new if old is None else (1 - _EMA) * old + _EMA * new

    def spec_step(self, accepted: bool, seconds: float) -> None:
        self.acc = (1 - _EMA) * self.acc + _EMA * float(accepted)
        self.t_step = self._ema(self.t_step, seconds)

    def plain_step(self, seconds: float) -> None:
        self.t_plain = self._ema(self.t_plain, seconds)
        self.off_since += 1

    def speculate(self) -> bool:
        if self.t_step is None:
            return True  # measure a step first
        if self.t_plain is None:
            return False  # then a plain one
        on = (1 + self.acc) / self.t_step > 1 / self.t_plain
        if on or self.off_since >= PROBE_EVERY:
            self.off_since = 0
            return True
        return False


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
    session (as in plain decoding, up to one accepted draft).  ``drafter(i, mtp_token)`` (greedy only, for
    benchmarks): the token to verify as output token ``i`` instead of the MTP block's greedy draft (which is
    still computed, so a step costs what it costs with the real drafter)."""
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
    fed = list(prompt)  # tokens of the positions the MTP block has not consumed yet start at mtp_pos
    dlog: np.ndarray | None = None
    while True:
        room = sess.ctx - sess.pos
        if room <= 0:
            return
        if room < 2 or (auto is not None and not auto.speculate()):
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
        q = None if greedy else probs(dlog, temperature, top_p)
        d = int(np.argmax(dlog)) if q is None else int(rng.choice(q.size, p=q))
        if drafter is not None:
            d = int(drafter(n_out, d))
        t1 = clock()
        sess.checkpoint()
        lg = sess.prefill([x, d], all_logits=True)
        t2 = clock()
        st.steps += 1
        st.drafted += 1
        if greedy:
            ok, y = d == int(np.argmax(lg[0])), int(np.argmax(lg[0]))
        else:
            ok, y = accept_or_resample(probs(lg[0], temperature, top_p), q, d, rng)
        if ok:
            st.accepted += 1
            y = sample(lg[1], temperature, top_p, rng)
            fed.extend((x, d))
            n_out += 1
            yield d
            t3 = clock()
            dlog = sess.mtp([d, y])
        else:
            sess.rollback(sess.pos - 1)
            fed.append(x)
            t3 = clock()
            dlog = sess.mtp([y])
        t4 = clock()
        st.verify_s += t2 - t1
        st.draft_s += (t1 - t0) + (t4 - t3)
        if auto is not None:
            auto.spec_step(ok, (t1 - t0) + (t2 - t1) + (t4 - t3))
        x = y
        n_out += 1
        yield x
