"""`dsv4-gguf eval kld` with our server on one side and the same GGUF in process on the other: as the reference
(`--ref-url`: `/v1/completions` with vLLM's top-k `prompt_logprobs`) and as the candidate (`--backend openai
--url`: whole rows, `prompt_logprobs: -1`).  Both sides are the same runtime on the same tokens, so the KL
divergence is exactly 0 and the top tokens agree everywhere."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
from support.serving import NAME

from dsv4_gguf.cli import main
from dsv4_gguf.serve.openai import MAX_FULL_ROWS_ENTRIES

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


def test_eval_kld_of_the_server_against_the_runtime_is_zero(server, serve_gguf, tmp_path):
    """The server as the candidate, the in-process runtime (`--ref THE.gguf`) as the reference."""
    data = tmp_path / "text.txt"
    data.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "run"
    args = ["eval", "kld", "--data", str(data), "--backend", "openai", "--url", server.url, "--model", NAME]
    args += ["--ref", str(serve_gguf), "--ctx", "128", "--chunks", "2", "--top-k", "20", "--threads", "1"]
    assert main([*args, "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["n_positions"] == 2 * (128 - 1 - 64)
    assert r["kld_mean"] == 0.0 and r["kld_max"] == 0.0 and r["same_top_p"] == 1.0 and r["ppl_ratio"] == 1.0
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["model"] == {"backend": "openai", "url": server.url, "model": NAME}
    assert settings["reference"]["backend"] == "auto" and settings["reference"]["file"]["name"] == serve_gguf.name


def _completion(server, body):
    req = urllib.request.Request(
        server.url + "/v1/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def test_whole_vocabulary_prompt_logprobs(server, ref_model):
    """`prompt_logprobs: -1` gives every id at every prompt position (vLLM's convention), equal to the runtime's
    log-softmax; `logprobs` still bounds the alternatives shown per token; a prompt whose rows would exceed
    the server's limit is a 400 naming the longest prompt allowed, and the next request succeeds."""
    V = ref_model.vocab_size
    toks = [ref_model.tokenizer.bos_id, *ref_model.encode(TEXT)[:15]]
    out = _completion(server, {"model": NAME, "prompt": toks, "max_tokens": 1, "temperature": 0,
                               "prompt_logprobs": -1, "logprobs": 2, "echo": True})  # fmt: skip
    choice = out["choices"][0]
    rows = choice["prompt_logprobs"]
    assert rows[0] is None and len(rows) == len(toks)
    lg = ref_model.session(ctx=64).prefill(toks, all_logits=True).astype(np.float64)
    want = lg - lg.max(-1, keepdims=True)
    want -= np.log(np.exp(want).sum(-1, keepdims=True))
    for p in range(1, len(toks)):
        assert sorted(map(int, rows[p])) == list(range(V))
        got = np.array([rows[p][str(t)]["logprob"] for t in range(V)])
        np.testing.assert_array_equal(got, want[p - 1], err_msg=f"position {p}")
    tops = choice["logprobs"]["top_logprobs"]
    assert tops[0] is None and all(0 < len(t) <= 2 for t in tops[1:])

    too_long = [ref_model.tokenizer.bos_id] * (MAX_FULL_ROWS_ENTRIES // V + 1)
    try:
        _completion(server, {"model": NAME, "prompt": too_long, "max_tokens": 1, "prompt_logprobs": -1})
        raise AssertionError("an over-limit prompt_logprobs=-1 request was answered")
    except urllib.error.HTTPError as e:
        assert e.code == 400
        err = json.loads(e.read())["error"]
        assert err["param"] == "prompt_logprobs" and f"at most {MAX_FULL_ROWS_ENTRIES // V} tokens" in err["message"]
    ok = _completion(server, {"model": NAME, "prompt": toks, "max_tokens": 1, "prompt_logprobs": 3})
    assert len(ok["choices"][0]["prompt_logprobs"]) == len(toks)
