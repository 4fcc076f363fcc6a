"""`eval kld`: distribution metrics of a candidate GGUF against a reference on a plain text, chunked like
llama-perplexity (chunks of --ctx tokens, first token replaced by BOS, the second half of each chunk
scored). The reference is another model run here (--ref, stored as sparse top-k), a vLLM/SGLang server
(--ref-url) or a llama.cpp `.kld` base file (--ref-kld: its tokens and full rows are used as they are).
The reference pass finishes (and its model is closed) before the candidate is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..metrics.kld import PositionStats, compare_full, compare_sparse, summarize
from ..metrics.kld_file import KldFile, scored_first
from ..run import RunDir, RunError, file_digest
from .common import (
    RefStore,
    model_fingerprint,
    model_info,
    open_candidate,
    open_reference,
    ref_fingerprint,
    save_npz,
    tokens_digest,
)

__all__ = ["run_kld"]


def _chunks(tokens: list[int], ctx: int, bos: int | None, limit: int | None) -> list[list[int]]:
    """llama-perplexity's chunking: the text is tokenized with BOS in front, cut into --ctx pieces, and each
    piece's first token is replaced by BOS for the forward pass."""
    if bos is not None:
        tokens = [bos, *tokens]
    n = len(tokens) // ctx
    if limit:
        n = min(n, limit)
    if n == 0:
        raise RunError(f"the text has {len(tokens)} tokens, fewer than one --ctx {ctx} chunk; lower --ctx")
    out = [tokens[i * ctx : (i + 1) * ctx] for i in range(n)]
    if bos is not None:
        out = [[bos, *c[1:]] for c in out]
    return out


def run_kld(ns: argparse.Namespace, progress: Any) -> dict[str, Any]:
    if not ns.ref_kld and not Path(ns.data).is_file():
        raise RunError(
            f"{ns.data}: no such text file (give --data a plain text file to score, e.g. wiki.test.raw, "
            "or --ref-kld FILE.kld, which carries its tokens)"
        )
    minfo = model_info(ns.model, ns.variant, ns.bpw)
    out = Path(ns.out)
    cand_fp = model_fingerprint(ns.backend, ns.model, ns.url, ns.full_hash)
    kld_file = KldFile(ns.ref_kld) if ns.ref_kld else None
    cand = None
    store = None
    if kld_file is not None:
        cand = open_candidate(ns, prompt_logprobs=True)
        cand.require(logits=True)
        if cand.n_vocab != kld_file.n_vocab:
            raise RunError(f"{ns.ref_kld}: vocabulary {kld_file.n_vocab}, the model's is {cand.n_vocab}")
        bos = cand.bos_id  # llama-perplexity puts BOS in place of each chunk's first token, as we do
        chunk_tokens = [
            [bos if bos is not None and j == 0 else int(x) for j, x in enumerate(t)]
            for t in kld_file.tokens[: ns.chunks or kld_file.n_chunk]
        ]
        ctx = kld_file.n_ctx
        ref_fp: dict[str, Any] = {"kld_file": file_digest(ns.ref_kld, full=ns.full_hash)}
    else:
        if not (ns.ref or ns.ref_url):
            raise RunError("eval kld needs a reference: --ref B.gguf, --ref-url URL or --ref-kld FILE.kld")
        ctx = ns.ctx
        ref_fp = ref_fingerprint(ns)
        # As llama-perplexity's base file: the reference tokenizes once and stores the tokens; every
        # candidate scores exactly those tokens (candidates must share the reference's vocabulary).
        store = RefStore(
            Path(ns.ref_cache) if ns.ref_cache else out / "ref",
            {"reference": ref_fp, "data": file_digest(ns.data), "ctx": ctx, "chunks": ns.chunks, "top_k": ns.top_k},
            lambda: open_reference(ns),
            owned=not ns.ref_cache,
            discard=ns.overwrite,
        )
        toks = store.tokens()
        if toks is None:
            ref = store.backend()
            ref.require(tokenize=True)
            toks = np.asarray(
                _chunks(ref.tokenize(Path(ns.data).read_text(encoding="utf-8")), ctx, ref.bos_id, ns.chunks), np.int32
            )
            store.save_tokens(toks)
        chunk_tokens = [list(map(int, t)) for t in toks]
    first = scored_first(ctx)
    tok_hash = tokens_digest([t for c in chunk_tokens for t in c])
    settings = {
        "ctx": ctx,
        "n_chunks": len(chunk_tokens),
        "top_k": ns.top_k,
        "tokens_sha256": tok_hash,
        "data": file_digest(ns.data) if ns.data and not kld_file else None,
        "model": cand_fp,
        "reference": ref_fp,
    }
    run = RunDir(out, "kld", settings, info=minfo, overwrite=ns.overwrite)
    done = run.done()
    todo = [c for c in range(len(chunk_tokens)) if f"chunk:{c}" not in done]
    if store is not None:
        for c in progress([c for c in todo if not store.has(f"chunk:{c}")], desc="reference"):
            store.get(f"chunk:{c}", chunk_tokens[c], first, ns.top_k)
        store.close()  # the reference model is closed before the candidate is opened

    pos_dir = out / "positions"
    pos_dir.mkdir(exist_ok=True)
    try:
        for c in progress(todo, desc="candidate"):
            if cand is None:
                cand = open_candidate(ns, prompt_logprobs=True)
                cand.require(logits=True)
            top = max(chunk_tokens[c])
            if top >= cand.n_vocab:
                raise RunError(
                    f"token id {top} of the reference's tokenization is outside the candidate's "
                    f"vocabulary ({cand.n_vocab}); candidate and reference must share a tokenizer"
                )
            logits = cand.logits(chunk_tokens[c], first)
            if kld_file is not None:
                st = compare_full(
                    kld_file.rows(c), logits, np.asarray(chunk_tokens[c][first + 1 :]), cand.logits_normalized
                )
            else:
                assert store is not None
                ref_rows = store.get(f"chunk:{c}", chunk_tokens[c], first, ns.top_k)
                st = compare_sparse(ref_rows, logits, normalized=cand.logits_normalized)
            save_npz(pos_dir / f"chunk_{c:05d}.npz", kld=st.kld, nll=st.nll, nll_base=st.nll_base, same_top=st.same_top)
            run.append(
                {
                    "uid": f"chunk:{c}",
                    "chunk": c,
                    "n": len(st.kld),
                    "kld_mean": float(st.kld.mean()),
                    "nll_mean": float(st.nll.mean()),
                    "nll_base_mean": float(st.nll_base.mean()),
                }
            )
    finally:
        if cand is not None:
            cand.close()

    stats = PositionStats.concat([PositionStats.load(pos_dir / f"chunk_{c:05d}.npz") for c in range(len(chunk_tokens))])
    results: dict[str, Any] = {
        "task": "kld",
        **minfo,
        **summarize(stats),
        "nll_mean": float(stats.nll.mean()),
        "nll_base_mean": float(stats.nll_base.mean()),
    }
    run.finish(results)
    return results
