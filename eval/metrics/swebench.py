"""SWE-bench proxies: teacher-forced gold-patch NLL, its delta and flip rate against a reference, generated
patch similarity, and predictions in the official format (`instance_id`, `model_name_or_path`,
`model_patch`) for grading with the official Docker harness elsewhere. No Docker, no resolved rate here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

__all__ = ["changed_lines", "patch_similarity", "nll_summary", "write_predictions"]


def changed_lines(patch: str) -> set[tuple[str, str]]:
    """(file, '+line' / '-line') pairs of a unified diff; context and headers excluded."""
    out: set[tuple[str, str]] = set()
    cur = ""
    for line in patch.splitlines():
        if line.startswith("+++ "):
            cur = line[4:].strip().removeprefix("b/")
        elif line.startswith("--- ") or line.startswith("diff --git") or line.startswith("@@"):
            continue
        elif line[:1] in "+-" and line[:1]:
            out.add((cur, line))
    return out


def patch_similarity(generated: str, gold: str) -> dict[str, float]:
    g, r = changed_lines(generated), changed_lines(gold)
    tp = len(g & r)
    prec = tp / len(g) if g else 0.0
    rec = tp / len(r) if r else 0.0
    files_g, files_r = {f for f, _ in g}, {f for f, _ in r}
    return {
        "diff_ratio": float(SequenceMatcher(None, generated, gold).ratio()),
        "line_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
        "files_match": float(files_g == files_r and bool(files_r)),
    }


def nll_summary(items: Sequence[Mapping[str, Any]], flip_threshold: float) -> dict[str, Any]:
    """Mean per-token NLL over instances; with a reference: mean delta and the flip rate, the share of
    instances whose per-token NLL moved by more than `flip_threshold` nats (either direction)."""
    out: dict[str, Any] = {"swe_n": len(items), "nll_mean": None}
    scored = [i for i in items if i.get("nll") is not None]  # generation-only backends give no NLL
    if scored:
        nll = [float(i["nll"]) for i in scored]
        tokens = sum(int(i["n_tokens"]) for i in scored)
        out.update(
            {
                "nll_mean": sum(nll) / len(nll),
                "nll_token_mean": sum(float(i["nll"]) * int(i["n_tokens"]) for i in scored) / tokens,
                "patch_tokens": tokens,
            }
        )
    if scored and all(i.get("nll_ref") is not None for i in scored):
        d = [float(i["nll"]) - float(i["nll_ref"]) for i in scored]
        out.update(
            {
                "nll_ref_mean": sum(float(i["nll_ref"]) for i in scored) / len(scored),
                "nll_delta_mean": sum(d) / len(d),
                "flip_rate": sum(abs(x) > flip_threshold for x in d) / len(d),
                "flip_threshold": flip_threshold,
            }
        )
    gen = [i for i in items if i.get("line_f1") is not None]
    if gen:
        out.update(
            {
                "gen_n": len(gen),
                "line_f1_mean": sum(float(i["line_f1"]) for i in gen) / len(gen),
                "diff_ratio_mean": sum(float(i["diff_ratio"]) for i in gen) / len(gen),
            }
        )
    return out


def write_predictions(path: str | Path, model_name: str, items: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for it in items:
            if it.get("model_patch") is None:
                continue
            f.write(
                json.dumps(
                    {
                        "instance_id": it["instance_id"],
                        "model_name_or_path": model_name,
                        "model_patch": it["model_patch"],
                    }
                )
                + "\n"
            )
            n += 1
    tmp.replace(path)
    return n
