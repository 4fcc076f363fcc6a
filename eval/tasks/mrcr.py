"""`eval mrcr`: greedy generation on MRCR rows, official and lenient scores, per needle x bin table.

Prompts are rendered once with our DSV4 encoding and sent pre-rendered to every backend. Rows whose
native prompt plus generation budget exceed --n-ctx are recorded as skipped (and counted), not scored.
The score uses the answer content: in thinking mode the text after the last `</think>`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from ...chat import EOS
from ..datasets.mrcr import load_mrcr, parse_bins
from ..metrics.mrcr import BIN_EDGES, BIN_LABELS, aggregate, bin_index, grade, grade_lenient
from ..run import RunDir, RunError, file_digest
from .common import model_fingerprint, model_info, open_candidate

__all__ = ["run_mrcr"]


def _budget(ns: argparse.Namespace, answer_tokens: int) -> int:
    if ns.max_new_tokens:
        return int(ns.max_new_tokens)
    need = max(128, int(1.5 * answer_tokens))
    return 2 ** math.ceil(math.log2(need)) + (8192 if ns.thinking == "thinking" else 0)


def run_mrcr(ns: argparse.Namespace, progress: Any) -> dict[str, Any]:
    minfo = model_info(ns.model, ns.variant, ns.bpw)
    needles = tuple(int(x) for x in ns.needles.split(","))
    wanted = parse_bins(ns.bins)
    # with --bin-by native the bins are known only after the model's tokenizer has seen each row
    src, rows = load_mrcr(
        ns.data,
        needles=needles,
        bins=wanted if ns.bin_by == "o200k" else None,
        per_cell=ns.limit,
        seed=ns.seed,
        max_tokens=ns.max_tokens,
    )
    settings = {
        "needles": needles,
        "bins": ns.bins,
        "per_cell": ns.limit,
        "seed": ns.seed,
        "bin_by": ns.bin_by,
        "max_tokens": ns.max_tokens,
        "thinking": ns.thinking,
        "max_new_tokens": ns.max_new_tokens,
        "n_ctx": ns.n_ctx,
        "dataset": {"layout": src.layout, "files": [file_digest(f) for f in src.files]},
        "model": model_fingerprint(ns.backend, ns.model, ns.url, ns.full_hash),
    }
    info = {**minfo, "mrcr_layout": src.layout, "mrcr_rows_post_fix": sum(r.date_added is not None for r in rows)}
    if src.layout == "legacy":
        info["note"] = "old single-file MRCR layout: pre-Dec-2025 data with known wrong rows"
    run = RunDir(Path(ns.out), "mrcr", settings, info=info, overwrite=ns.overwrite)
    done = run.done()
    todo = [r for r in rows if r.uid not in done]
    backend = open_candidate(ns) if todo else None
    try:
        if backend is not None:
            backend.require(generate=True)
        for row in progress(todo, desc="mrcr"):
            assert backend is not None
            prompt = row.render(ns.thinking)
            native = answer_native = None
            if backend.caps.tokenize:
                native = len(backend.tokenize(prompt))
                answer_native = len(backend.tokenize(row.answer))
            budget = _budget(ns, answer_native or row.o200k_tokens)
            b = row.bin if ns.bin_by == "o200k" or native is None else bin_index(native + (answer_native or 0))
            rec: dict[str, Any] = {
                "uid": row.uid,
                "n_needles": row.n_needles,
                "bin": b,
                "o200k_tokens": row.o200k_tokens,
                "native_tokens": native,
            }
            if b is None or (wanted is not None and b not in wanted):
                run.append({**rec, "skipped": f"native count {native} + {answer_native} is outside --bins"})
                continue
            if native is not None and native + budget > ns.n_ctx:
                run.append({**rec, "skipped": f"needs {native} + {budget} tokens > --n-ctx {ns.n_ctx}"})
                continue
            raw = backend.generate(prompt, max_tokens=budget, stop=[EOS])
            content = raw.rsplit("</think>", 1)[-1] if ns.thinking == "thinking" else raw
            content = content.removesuffix(EOS)
            run.append(
                {
                    **rec,
                    "response": raw,
                    "score": grade(content, row.answer, row.prefix),
                    "score_lenient": grade_lenient(raw, row.answer, row.prefix),
                    "prefix_hit": content.startswith(row.prefix),
                    "max_new_tokens": budget,
                }
            )
    finally:
        if backend is not None:
            backend.close()
    order = {r.uid: i for i, r in enumerate(rows)}
    recs = sorted((r for r in run.records() if r["uid"] in order), key=lambda r: order[r["uid"]])
    scored = [r for r in recs if "score" in r]
    if recs and not scored:
        # nothing to score is a failed run, not a result: the run stays unfinished (no results.json)
        outside = sum("outside --bins" in r["skipped"] for r in recs)
        raise RunError(
            f"eval mrcr: none of the {len(recs)} rows was scored ({outside} outside the bins, "
            f"{len(recs) - outside} longer than --n-ctx {ns.n_ctx} with their answer budget); the official bins "
            f"cover {BIN_EDGES[0]:,} to {BIN_EDGES[-1]:,} prompt + answer tokens: use rows of that length, "
            f"--bins the data covers, or a larger --n-ctx (each row's reason is in {ns.out}/items.jsonl)"
        )
    if not recs:
        raise RunError(f"eval mrcr: no MRCR row matched --needles {ns.needles} --bins {ns.bins} in {ns.data}")
    agg = aggregate(scored)
    results = {"task": "mrcr", **minfo, **agg, "mrcr_skipped": len(recs) - len(scored), "bin_labels": list(BIN_LABELS)}
    run.finish(results)
    return results
