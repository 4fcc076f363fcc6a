"""Distribution metrics of a candidate against a reference, as `llama-perplexity --kl-divergence` defines
them (tools/perplexity/perplexity.cpp): mean (± sigma/sqrt(n-1)), median and percentile KLD, same top p,
delta-p statistics with RMS delta-p, PPL(Q), PPL(base), their ratio, ln ratio and correlation.

Two reference forms. Sparse (what this harness stores): top-k reference log-probabilities plus the target's;
KLD is then taken over the k ids plus one "rest" bucket holding the remaining mass of each side, an exact
KLD of the coarsened distributions (a lower bound of the full one; equal when k covers the vocabulary).
Full rows (read from llama.cpp `.kld` files): summed over ids with base log-probability > -16, exactly as
llama.cpp does. The percentile rule is llama.cpp's (linear interpolation at fraction*(n-1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backends.base import SparseRows, log_softmax

__all__ = ["PositionStats", "compare_sparse", "compare_full", "summarize", "percentile"]


@dataclass
class PositionStats:
    """Per-position values for one scored span; concatenated across spans before `summarize`."""

    kld: np.ndarray  # float64 [n]
    nll: np.ndarray  # candidate -log q(target)
    nll_base: np.ndarray  # reference -log p(target)
    same_top: np.ndarray  # bool: argmax q == argmax p

    @property
    def p_diff(self) -> np.ndarray:
        return np.exp(-self.nll) - np.exp(-self.nll_base)

    @staticmethod
    def concat(parts: list[PositionStats]) -> PositionStats:
        return PositionStats(
            *(
                np.concatenate([getattr(p, f) for p in parts]) if parts else np.zeros(0)
                for f in ("kld", "nll", "nll_base", "same_top")
            )
        )

    def save(self, path: object) -> None:
        np.savez(path, kld=self.kld, nll=self.nll, nll_base=self.nll_base, same_top=self.same_top)

    @staticmethod
    def load(path: object) -> PositionStats:
        with np.load(path) as z:  # type: ignore[arg-type]
            return PositionStats(z["kld"], z["nll"], z["nll_base"], z["same_top"].astype(bool))


def compare_sparse(ref: SparseRows, logits: np.ndarray, block: int = 64, normalized: bool = False) -> PositionStats:
    """Candidate logits [n, vocab] against a sparse reference of the same n positions (``normalized``: the
    rows are log-probabilities already, taken as they are)."""
    n = len(ref)
    if logits.shape[0] != n:
        raise ValueError(
            f"candidate has {logits.shape[0]} rows, reference {n}: the two runs scored "
            "different positions (same tokens and --ctx are required)"
        )
    kld = np.empty(n)
    nll = np.empty(n)
    same = np.empty(n, bool)
    valid = ref.top_ids >= 0
    for s in range(0, n, block):
        e = min(n, s + block)
        lq = np.asarray(logits[s:e], np.float64) if normalized else log_softmax(logits[s:e])
        r = np.arange(e - s)
        ids = np.where(valid[s:e], ref.top_ids[s:e], 0)
        lp = np.where(valid[s:e], ref.top_lp[s:e], -np.inf)
        p = np.exp(lp)
        lq_top = np.take_along_axis(lq, ids, axis=-1)
        terms = np.where(p > 0, p * (lp - lq_top), 0.0)
        p_rest = np.maximum(1.0 - p.sum(axis=-1), 0.0)
        q_rest = np.maximum(1.0 - np.where(valid[s:e], np.exp(lq_top), 0.0).sum(axis=-1), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            rest = np.where(p_rest > 0, p_rest * (np.log(np.maximum(p_rest, 1e-300)) - np.log(q_rest)), 0.0)
        kld[s:e] = terms.sum(axis=-1) + rest
        nll[s:e] = -lq[r, ref.target[s:e]]
        same[s:e] = lq.argmax(axis=-1) == ref.top_ids[s:e, 0]
    return PositionStats(kld, nll, -ref.target_lp.astype(np.float64), same)


def compare_full(
    base_lp: np.ndarray, logits: np.ndarray, target: np.ndarray, normalized: bool = False
) -> PositionStats:
    """Candidate logits against full reference log-probability rows (llama.cpp's -16 cut-off)."""
    lq = np.asarray(logits, np.float64) if normalized else log_softmax(logits)
    base_lp = np.asarray(base_lp, np.float64)
    r = np.arange(lq.shape[0])
    keep = base_lp > -16.0
    kld = np.where(keep, np.exp(base_lp) * (base_lp - lq), 0.0).sum(axis=-1)
    return PositionStats(kld, -lq[r, target], -base_lp[r, target], lq.argmax(-1) == base_lp.argmax(-1))


def percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear interpolation at fraction*(n-1) of the sorted values."""
    v = sorted_values
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = fraction * (len(v) - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def _mean_unc(x: np.ndarray) -> tuple[float, float]:
    n = len(x)
    f = float(x.mean())
    var = float((x * x).mean() - f * f)
    return f, (math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def summarize(st: PositionStats) -> dict[str, float]:
    """The llama-perplexity statistic set under stable names (see docs/eval.md for the list)."""
    n = len(st.kld)
    if n == 0:
        raise ValueError("no scored positions: the text is shorter than one --ctx chunk")
    kld_sorted = np.sort(st.kld)
    dp = st.p_diff
    dp_sorted = np.sort(dp)
    ln_q, ln_q_unc = _mean_unc(st.nll)
    ln_b, ln_b_unc = _mean_unc(st.nll_base)
    cov = float((st.nll * st.nll_base).mean() - st.nll.mean() * st.nll_base.mean()) / (n - 1) if n >= 10 else 0.0
    ln_ratio = ln_q - ln_b
    ln_ratio_unc = math.sqrt(max(ln_q_unc**2 + ln_b_unc**2 - 2 * cov, 0.0))
    kld_mean, kld_unc = _mean_unc(st.kld)
    mse, mse_unc = _mean_unc(dp * dp)
    same = float(st.same_top.mean())
    out = {
        "n_positions": float(n),
        "ppl_q": math.exp(ln_q),
        "ppl_base": math.exp(ln_b),
        "ln_ppl_ratio": ln_ratio,
        "ln_ppl_ratio_unc": ln_ratio_unc,
        "ppl_ratio": math.exp(ln_ratio),
        "ppl_ratio_unc": math.exp(ln_ratio) * ln_ratio_unc,
        "ppl_cor": cov / (ln_q_unc * ln_b_unc) if ln_q_unc > 0 and ln_b_unc > 0 else float("nan"),
        "kld_mean": kld_mean,
        "kld_mean_unc": kld_unc,
        "kld_max": float(kld_sorted[-1]),
        "kld_p999": percentile(kld_sorted, 0.999),
        "kld_p99": percentile(kld_sorted, 0.99),
        "kld_p95": percentile(kld_sorted, 0.95),
        "kld_p90": percentile(kld_sorted, 0.90),
        "kld_median": float(np.median(kld_sorted)),
        "kld_p10": percentile(kld_sorted, 0.10),
        "kld_min": float(kld_sorted[0]),
        "dp_mean": float(dp.mean()),
        "dp_max": float(dp_sorted[-1]),
        "dp_min": float(dp_sorted[0]),
        "dp_p99": percentile(dp_sorted, 0.99),
        "dp_median": float(np.median(dp_sorted)),
        "dp_p01": percentile(dp_sorted, 0.01),
        "rms_dp": math.sqrt(mse),
        "rms_dp_unc": 0.5 / math.sqrt(mse) * mse_unc if mse > 0 else 0.0,
        "same_top_p": same,
        "same_top_p_unc": math.sqrt(same * (1 - same) / (n - 1)) if n > 1 else 0.0,
    }
    return out
