"""MRCR scoring: the official grader exactly, a lenient variant, context bins and the labelled aggregates.

Official (openai/mrcr README): 0 unless the response starts with `random_string_to_prepend`; otherwise the
prefix is removed from response and answer and the score is `difflib.SequenceMatcher(None, response,
answer).ratio()` with default settings (autojunk on). Lenient (ours, reported separately, never mixed):
reasoning up to the last `</think>` is dropped, whitespace stripped, and when the prefix is not at the
start but occurs, the text after its last occurrence is scored (the GDM MRCR-v2 rule).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from difflib import SequenceMatcher
from typing import Any

__all__ = ["BIN_EDGES", "BIN_LABELS", "bin_index", "grade", "grade_lenient", "aggregate"]

# Bin b covers (BIN_EDGES[b], BIN_EDGES[b+1]]; the first bin also includes its lower edge 4096.
BIN_EDGES = tuple(2**p for p in range(12, 21))  # 4096 .. 1048576
BIN_LABELS = ("8K", "16K", "32K", "64K", "128K", "256K", "512K", "1M")


def bin_index(n_tokens: int) -> int | None:
    """Context bin of a prompt+answer token count, or None outside [4096, 1048576]."""
    if n_tokens < BIN_EDGES[0] or n_tokens > BIN_EDGES[-1]:
        return None
    if n_tokens == BIN_EDGES[0]:
        return 0
    return max(0, math.ceil(math.log2(n_tokens)) - 13)


def grade(response: str, answer: str, random_string_to_prepend: str) -> float:
    """The official MRCR score of one response."""
    if not response.startswith(random_string_to_prepend):
        return 0.0
    response = response.removeprefix(random_string_to_prepend)
    answer = answer.removeprefix(random_string_to_prepend)
    return float(SequenceMatcher(None, response, answer).ratio())


def grade_lenient(response: str, answer: str, random_string_to_prepend: str) -> float:
    text = response.rsplit("</think>", 1)[-1].strip()
    prefix = random_string_to_prepend
    if not text.startswith(prefix):
        if prefix not in text:
            return 0.0
        text = prefix + text.rsplit(prefix, 1)[1]
    return grade(text, answer.strip(), prefix)


def _cell() -> dict[str, Any]:
    return {"n": 0, "sum": 0.0, "sum2": 0.0, "lenient": 0.0, "prefix_hits": 0}


def aggregate(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per (needles, bin) mean with n and standard error, plus the labelled aggregates of the report:
    overall mean ("mrcr_score"), 8-needle mean over all bins present ("DeepSeek-style", an assumption),
    8-needle cumulative mean up to 128K (Google-style) and the 8-needle 1M-bin value (pointwise)."""
    cells: dict[tuple[int, int], dict[str, Any]] = defaultdict(_cell)
    scores: list[float] = []
    lenient: list[float] = []
    hits = exact = 0
    for it in items:
        s = float(it["score"])
        c = cells[(int(it["n_needles"]), int(it["bin"]))]
        c["n"] += 1
        c["sum"] += s
        c["sum2"] += s * s
        c["lenient"] += float(it["score_lenient"])
        c["prefix_hits"] += bool(it["prefix_hit"])
        scores.append(s)
        lenient.append(float(it["score_lenient"]))
        hits += bool(it["prefix_hit"])
        exact += s == 1.0
    table = []
    for (needles, b), c in sorted(cells.items()):
        mean = c["sum"] / c["n"]
        var = max(c["sum2"] / c["n"] - mean * mean, 0.0)
        table.append(
            {
                "n_needles": needles,
                "bin": b,
                "bin_label": BIN_LABELS[b],
                "n": c["n"],
                "score": mean,
                "se": math.sqrt(var / (c["n"] - 1)) if c["n"] > 1 else float("nan"),
                "score_lenient": c["lenient"] / c["n"],
                "prefix_hit_rate": c["prefix_hits"] / c["n"],
            }
        )

    def _mean8(pred: Any) -> float | None:
        vals = [r["score"] for r in table if r["n_needles"] == 8 and pred(r["bin"])]
        return sum(vals) / len(vals) if vals else None

    n = len(scores)
    return {
        "mrcr_score": sum(scores) / n if n else None,
        "mrcr_score_lenient": sum(lenient) / n if n else None,
        "mrcr_prefix_hit_rate": hits / n if n else None,
        "mrcr_exact_rate": exact / n if n else None,
        "mrcr_n": n,
        "mrcr_8needle_all_bins": _mean8(lambda b: True),
        "mrcr_8needle_upto_128k": _mean8(lambda b: b <= BIN_LABELS.index("128K")),
        "mrcr_8needle_1m": _mean8(lambda b: b == BIN_LABELS.index("1M")),
        "table": table,
    }
