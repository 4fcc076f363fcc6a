"""`eval swebench`: teacher-forced gold-patch NLL per instance (prompt = oracle text or issue, rendered
with our chat encoding; continuation = the gold patch), with a reference also KLD on the patch positions,
NLL delta and flip rate; optionally greedy patch generation, similarity to gold and predictions JSONL in
the official format. The subset's instance ids are written so the official harness can regrade them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...chat import EOS
from ..backends import log_softmax
from ..datasets.swebench import build_prompt, load_swebench, select
from ..metrics.kld import PositionStats, compare_sparse, summarize
from ..metrics.swebench import nll_summary, patch_similarity, write_predictions
from ..run import RunDir, file_digest, write_text
from .common import RefStore, model_fingerprint, model_info, open_candidate, open_reference, ref_fingerprint, save_npz

__all__ = ["run_swebench", "extract_patch"]


def extract_patch(text: str) -> str:
    """The diff in a completion: a fenced ```diff block if any, else from the first `diff --git`."""
    text = text.rsplit("</think>", 1)[-1]
    m = re.search(r"```(?:diff|patch)?\n(.*?)```", text, re.S)
    if m:
        return m.group(1)
    i = text.find("diff --git")
    return text[i:] if i >= 0 else text


def _ids(spec: str | None) -> list[str] | None:
    if not spec:
        return None
    p = Path(spec)
    text = p.read_text(encoding="utf-8") if p.is_file() else spec
    return [x for x in re.split(r"[\s,]+", text) if x]


def run_swebench(ns: argparse.Namespace, progress: Any) -> dict[str, Any]:
    minfo = model_info(ns.model, ns.variant, ns.bpw)
    rows = select(load_swebench(ns.data), ids=_ids(ns.instance_ids), repos=ns.repo, limit=ns.limit, seed=ns.seed)
    out = Path(ns.out)
    has_ref = bool(ns.ref or ns.ref_url)
    settings = {
        "ids": [r.instance_id for r in rows],
        "thinking": ns.thinking,
        "n_ctx": ns.n_ctx,
        "top_k": ns.top_k,
        "generate": ns.generate,
        "max_new_tokens": ns.max_new_tokens,
        "flip_threshold": ns.flip_threshold,
        "dataset": file_digest(ns.data) if Path(ns.data).is_file() else str(ns.data),
        "model": model_fingerprint(ns.backend, ns.model, ns.url, ns.full_hash),
        "reference": ref_fingerprint(ns) if has_ref else None,
    }
    run = RunDir(out, "swebench", settings, info=minfo, overwrite=ns.overwrite)
    write_text(out / "instance_ids.txt", "".join(r.instance_id + "\n" for r in rows))
    done = run.done()
    todo = [r for r in rows if r.instance_id not in done]
    backend = open_candidate(ns)
    # generation-only backends (llama-server, Ollama) still give patches and predictions with --generate
    score = backend.caps.logits or not ns.generate
    backend.require(tokenize=score, logits=score, generate=ns.generate)
    spans = {}
    for r in rows if score else []:
        p_ids = backend.tokenize(build_prompt(r, ns.thinking))
        c_ids = backend.tokenize(r.patch)
        spans[r.instance_id] = (p_ids + c_ids, len(p_ids) - 1)
    store = None
    if has_ref and score:
        store = RefStore(
            Path(ns.ref_cache) if ns.ref_cache else out / "ref",
            {
                "reference": settings["reference"],
                "top_k": ns.top_k,
                "thinking": ns.thinking,
                "dataset": settings["dataset"],
            },
            lambda: open_reference(ns),
            owned=not ns.ref_cache,
            discard=ns.overwrite,
        )
        missing = [r for r in todo if not store.has(r.instance_id) and len(spans[r.instance_id][0]) <= ns.n_ctx]
        if missing:
            backend.close()
            for r in progress(missing, desc="reference"):
                store.get(r.instance_id, spans[r.instance_id][0], spans[r.instance_id][1], ns.top_k)
            store.close()
            backend = open_candidate(ns)
    pos_dir = out / "positions"
    pos_dir.mkdir(exist_ok=True)
    try:
        for r in progress(todo, desc="swebench"):
            rec: dict[str, Any] = {"uid": r.instance_id, "instance_id": r.instance_id, "repo": r.repo}
            if score:
                tokens, first = spans[r.instance_id]
                rec.update(n_tokens=len(tokens) - 1 - first, prompt_tokens=first + 1)
                if len(tokens) > ns.n_ctx:
                    run.append({**rec, "skipped": f"{len(tokens)} tokens > --n-ctx {ns.n_ctx}"})
                    continue
                logits = backend.logits(tokens, first)
                target = np.asarray(tokens[first + 1 :])
                rec["nll"] = float(-log_softmax(logits)[np.arange(len(target)), target].mean())
            if store is not None:
                st = compare_sparse(store.get(r.instance_id, tokens, first, ns.top_k), logits)
                save_npz(
                    pos_dir / f"{r.instance_id.replace('/', '_')}.npz",
                    kld=st.kld,
                    nll=st.nll,
                    nll_base=st.nll_base,
                    same_top=st.same_top,
                )
                rec.update(nll_ref=float(st.nll_base.mean()), kld_mean=float(st.kld.mean()))
            if ns.generate:
                gen = backend.generate(build_prompt(r, ns.thinking), max_tokens=ns.max_new_tokens or 2048, stop=[EOS])
                rec["model_patch"] = extract_patch(gen)
                rec.update(patch_similarity(rec["model_patch"], r.patch))
            run.append(rec)
    finally:
        backend.close()
    order = {r.instance_id: i for i, r in enumerate(rows)}
    recs = sorted((x for x in run.records() if x["uid"] in order), key=lambda x: order[x["uid"]])
    scored = [x for x in recs if "skipped" not in x]
    results: dict[str, Any] = {
        "task": "swebench",
        **minfo,
        **nll_summary(scored, ns.flip_threshold),
        "swe_skipped": len(recs) - len(scored),
    }
    if store is not None and any("nll" in x for x in scored):
        st = PositionStats.concat(
            [PositionStats.load(pos_dir / f"{x['uid'].replace('/', '_')}.npz") for x in scored if "nll" in x]
        )
        results.update({k: v for k, v in summarize(st).items() if k.startswith(("kld", "same_top", "rms_dp"))})
    if ns.generate:
        model_name = ns.variant or Path(ns.model).stem
        results["predictions"] = write_predictions(out / "predictions.jsonl", model_name, recs)
    run.finish(results)
    return results
