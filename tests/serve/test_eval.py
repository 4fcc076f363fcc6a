"""`dsv4-gguf eval kld` with our server as the reference (`--ref-url`: `/v1/completions` with vLLM's
`prompt_logprobs`) and the same GGUF in process as the candidate: the two are the same runtime on the same
tokens, so the KL divergence is exactly 0 and the top tokens agree everywhere."""

from __future__ import annotations

import json

import numpy as np
from support.serving import NAME

from dsv4_gguf.cli import main

TEXT = (
    "Sparse attention keeps a compressed entry per block of tokens and an exact window of recent ones. "
    "The indexer picks which compressed entries each query reads. "
) * 12


def test_backend_rows_equal_runtime(server, serve_gguf):
    from dsv4_gguf.eval.backends.http import OpenAIBackend
    from dsv4_gguf.eval.backends.runtime import RuntimeBackend

    remote = OpenAIBackend(server.url, NAME, prompt_logprobs=True)
    with RuntimeBackend(serve_gguf, n_ctx=512, threads=1) as local:
        toks = local.tokenize(TEXT)[:200]
        assert remote.tokenize(TEXT)[:200] == toks and remote.bos_id == local.bos_id
        ids = [local.bos_id, *toks]
        a, b = remote.prompt_topk(ids, 100, 16), local.prompt_topk(ids, 100, 16)
    for name in ("target", "target_lp", "top_ids", "top_lp"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_eval_kld_against_the_server_is_zero(server, serve_gguf, tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    args = ["eval", "kld", "--data", str(data), "--model", str(serve_gguf), "--ref-url", server.url]
    args += ["--ref-model", NAME, "--ctx", "128", "--chunks", "2", "--top-k", "20", "--threads", "1", "--out", str(out)]
    assert main(args) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["n_positions"] == 2 * (128 - 1 - 64)
    assert r["kld_mean"] == 0.0 and r["same_top_p"] == 1.0
