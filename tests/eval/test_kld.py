"""KLD statistics equal a direct numpy computation; the .kld reader/writer; `eval kld` with the fake
backend: identical model -> exactly 0, more noise -> more KLD; interrupt + resume == uninterrupted; report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dsv4_gguf.eval.backends import SparseRows, log_softmax
from dsv4_gguf.eval.metrics.kld import compare_full, compare_sparse, percentile, summarize
from dsv4_gguf.eval.metrics.kld_file import KldFile, KldFormatError, write_kld


def _pair(n: int = 300, v: int = 50, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = (rng.standard_normal((n, v)) * 2).astype(np.float32)
    cand = (base + noise * rng.standard_normal((n, v))).astype(np.float32)
    return base, cand, rng.integers(0, v, n)


def _direct(base: np.ndarray, cand: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Textbook numpy: softmax, sum p log(p/q), llama.cpp's statistic definitions."""
    base, cand = base.astype(np.float64), cand.astype(np.float64)
    p = np.exp(base - base.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(cand - cand.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    kld = (p * np.log(p / q)).sum(1)
    r = np.arange(len(target))
    dp = q[r, target] - p[r, target]
    nll, nllb = -np.log(q[r, target]), -np.log(p[r, target])
    return {
        "kld_mean": kld.mean(),
        "kld_median": np.median(kld),
        "kld_p90": np.percentile(kld, 90),
        "kld_p99": np.percentile(kld, 99),
        "kld_p999": np.percentile(kld, 99.9),
        "kld_max": kld.max(),
        "same_top_p": (p.argmax(1) == q.argmax(1)).mean(),
        "rms_dp": np.sqrt((dp**2).mean()),
        "dp_mean": dp.mean(),
        "ppl_q": np.exp(nll.mean()),
        "ppl_base": np.exp(nllb.mean()),
        "ppl_ratio": np.exp(nll.mean() - nllb.mean()),
        "ppl_cor": np.corrcoef(nll, nllb)[0, 1],
    }


def test_full_k_equals_direct_numpy() -> None:
    base, cand, target = _pair()
    ref = SparseRows.from_logits(base, target, k=base.shape[1])
    got = summarize(compare_sparse(ref, cand))
    for key, want in _direct(base, cand, target).items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-12), key


def test_sparse_topk_is_kld_of_coarsened_distributions() -> None:
    base, cand, target = _pair(n=40, v=30)
    k = 5
    ref = SparseRows.from_logits(base, target, k=k)
    st = compare_sparse(ref, cand)
    lp, lq = log_softmax(base), log_softmax(cand)
    for i in range(len(target)):
        top = np.argsort(-lp[i], kind="stable")[:k]
        assert list(ref.top_ids[i]) == list(top)
        p = np.append(np.exp(lp[i, top]), 1 - np.exp(lp[i, top]).sum())
        q = np.append(np.exp(lq[i, top]), 1 - np.exp(lq[i, top]).sum())
        assert st.kld[i] == pytest.approx((p * np.log(p / q)).sum(), rel=1e-9)
    full = compare_sparse(SparseRows.from_logits(base, target, k=30), cand).kld
    assert np.all(st.kld <= full + 1e-12)  # coarsening never increases KLD


def test_identical_is_exactly_zero() -> None:
    base, _, target = _pair()
    s = summarize(compare_sparse(SparseRows.from_logits(base, target, k=8), base.copy()))
    assert s["kld_mean"] == 0.0 and s["kld_max"] == 0.0 and s["same_top_p"] == 1.0
    assert s["rms_dp"] == 0.0 and s["ppl_ratio"] == 1.0 and s["ln_ppl_ratio"] == 0.0


def test_percentile_matches_llama_cpp_rule() -> None:
    v = np.sort(np.random.default_rng(1).random(1001))
    for f in (0.001, 0.1, 0.5, 0.9, 0.99, 0.999):
        assert percentile(v, f) == pytest.approx(np.percentile(v, 100 * f), rel=1e-12)
    assert percentile(v, 0) == v[0] and percentile(v, 1) == v[-1]


def test_kld_file_round_trip(tmp_path: Path) -> None:
    n_ctx, v = 16, 33  # odd vocab: rows are padded to an even count
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, v, (2, n_ctx))
    base = [(rng.standard_normal((n_ctx - 1 - n_ctx // 2, v)) * 3).astype(np.float32) for _ in range(2)]
    path = tmp_path / "base.kld"
    write_kld(path, n_ctx, tokens, base)
    f = KldFile(path)
    assert (f.n_ctx, f.n_vocab, f.n_chunk, f.nv) == (16, 33, 2, 38)
    assert path.stat().st_size == 20 + 4 * 32 + 2 * 38 * 7 * 2
    for c, (toks, rows) in enumerate(f.chunks()):
        assert np.array_equal(toks, tokens[c])
        want = log_softmax(base[c])
        step = (base[c].max(1) - np.maximum(base[c].min(1), base[c].max(1) - 16)) / 65535
        kept = want > want.max(1, keepdims=True) - 16
        assert np.all(np.abs(rows - want)[kept] <= (step[:, None] * np.ones_like(want))[kept] * 0.51 + 1e-5)
        cand = base[c] + 0.2 * rng.standard_normal(base[c].shape).astype(np.float32)
        tgt = toks[n_ctx // 2 + 1 :]
        st = compare_full(rows, cand, tgt)
        p = np.exp(rows.astype(np.float64))
        direct = (np.where(rows > -16, p * (rows - log_softmax(cand)), 0)).sum(1)
        assert np.allclose(st.kld, direct, rtol=1e-12, atol=1e-15)
    bad = tmp_path / "bad.kld"
    bad.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(KldFormatError, match="truncated"):
        KldFile(bad)


def _kld_args(text: Path, out: Path, model: str, **kw: str) -> list[str]:
    args = [
        "eval",
        "kld",
        "--data",
        str(text),
        "--backend",
        "fake",
        "--model",
        model,
        "--ref",
        "seed=0",
        "--out",
        str(out),
        "--ctx",
        "128",
        "--chunks",
        "6",
        "--top-k",
        "16",
    ]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def test_eval_kld_zero_monotone_resume_report(text_file: Path, tmp_path: Path, capsys) -> None:
    from dsv4_gguf.cli import main

    cache = tmp_path / "refcache"
    res = {}
    for noise, bpw in ((0.0, "16"), (0.1, "8.5"), (0.4, "4.5"), (1.5, "2.06")):
        out = tmp_path / f"n{noise}"
        assert (
            main(
                _kld_args(
                    text_file, out, f"seed=0,noise={noise}", ref_cache=str(cache), bpw=bpw, variant=f"noise{noise}"
                )
            )
            == 0
        )
        res[noise] = json.loads((out / "results.json").read_text())
    assert res[0.0]["kld_mean"] == 0.0 and res[0.0]["kld_p999"] == 0.0 and res[0.0]["same_top_p"] == 1.0
    means = [res[n]["kld_mean"] for n in (0.0, 0.1, 0.4, 1.5)]
    assert means == sorted(means) and len(set(means)) == 4
    assert res[0.4]["n_positions"] == 6 * (128 - 1 - 64)

    # interrupted after 2 of 6 chunks, resumed: identical results.json
    out = tmp_path / "resumed"
    args = _kld_args(
        text_file, out, "seed=0,noise=0.4,fail_after=2", ref_cache=str(cache), bpw="4.5", variant="noise0.4"
    )
    assert main(args) == 130
    assert len((out / "items.jsonl").read_text().splitlines()) == 2
    assert main(_kld_args(text_file, out, "seed=0,noise=0.4", ref_cache=str(cache), bpw="4.5", variant="noise0.4")) == 0
    assert json.loads((out / "results.json").read_text()) == res[0.4]

    # a reference cache made from another text is refused
    other = tmp_path / "other.txt"
    other.write_text(text_file.read_text()[::-1])
    assert main(_kld_args(other, tmp_path / "x", "seed=0", ref_cache=str(cache))) == 1

    rep = tmp_path / "report"
    assert main(["eval", "report", *(str(tmp_path / f"n{n}") for n in (0.0, 0.1, 0.4, 1.5)), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert "| noise0.4 | 4.500 | – |" in md and "![kld_vs_bpw.png](kld_vs_bpw.png)" in md
    assert (rep / "kld_vs_bpw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = (rep / "report.csv").read_text().splitlines()
    assert len(csv) == 5 and "kld_mean" in csv[0]
    # the report says how it was made (per run: model, reference, data with hashes, settings, version)
    # and how to read its columns
    prov = md.split("## How these runs were made", 1)[1]
    assert prov.count("- `") == 4 and str(tmp_path / "n0.4") in prov and "kld of **noise0.4**" in prov
    assert "reference: " in prov and "data: `text.txt` (" in prov and "sha256 " in prov
    assert "ctx=" in prov and "n_chunks=" in prov and "dsv4-gguf " in prov
    assert "*bpw (all): bytes x 8 / elements" in md and "*KLD: per scored position" in md

    # a missing or foreign folder is named as such, not called an unfinished run
    for bad, want in ((tmp_path / "nope", "no such run folder"), (tmp_path, "not an eval run folder")):
        assert main(["eval", "report", str(bad), "--out", str(tmp_path / "r2")]) == 1
        err = capsys.readouterr().err
        assert want in err and "unfinished" not in err, err


def test_eval_kld_against_kld_file(tmp_path: Path, text_file: Path) -> None:
    """A llama.cpp base file as the reference: candidate == the model that wrote it -> KLD ~ quantization."""
    from dsv4_gguf.eval.backends.fake import FakeBackend

    from dsv4_gguf.cli import main

    fb = FakeBackend(seed=0)
    n_ctx = 64
    toks = np.array(fb.tokenize(text_file.read_text())[: 3 * n_ctx]).reshape(3, n_ctx)
    with_bos = [[0, *t[1:]] for t in toks]
    write_kld(tmp_path / "b.kld", n_ctx, toks, [fb.logits(t, n_ctx // 2) for t in with_bos])
    out = tmp_path / "r"
    assert (
        main(
            [
                "eval",
                "kld",
                "--data",
                str(text_file),
                "--backend",
                "fake",
                "--model",
                "seed=0",
                "--ref-kld",
                str(tmp_path / "b.kld"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())
    assert r["n_positions"] == 3 * (n_ctx - 1 - n_ctx // 2)
    # not 0: the file stores log-probs on a 16-nat uint16 grid (step 2.4e-4), first-order error ~1e-5
    assert 0 <= r["kld_mean"] < 1e-4 and r["same_top_p"] == 1.0


def test_chunking_like_llama_perplexity() -> None:
    from dsv4_gguf.eval.tasks.kld import _chunks

    # BOS in front of the stream, --ctx pieces, each piece's first token replaced by BOS
    assert _chunks(list(range(1, 11)), 4, 0, None) == [[0, 1, 2, 3], [0, 5, 6, 7]]
    assert _chunks(list(range(1, 11)), 4, 0, 1) == [[0, 1, 2, 3]]
    assert _chunks(list(range(1, 11)), 4, None, None) == [[1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(Exception, match="fewer than one --ctx"):
        _chunks([1, 2], 4, 0, None)


def test_a_failed_run_does_not_block_its_corrected_rerun(text_file: Path, tmp_path: Path, capsys) -> None:
    """The default reference cache (RUN_DIR/ref) belongs to the run: a first try that stored nothing does not
    pin its settings, and --overwrite discards it with the rest of the run."""
    from dsv4_gguf.cli import main

    out = tmp_path / "run"
    assert main(_kld_args(text_file, out, "seed=0", ctx="100000")) == 1  # text shorter than one chunk
    assert "fewer than one --ctx" in capsys.readouterr().err
    assert main(_kld_args(text_file, out, "seed=0,noise=0.1")) == 0  # corrected: same --out, no --overwrite
    capsys.readouterr()
    assert main(_kld_args(text_file, out, "seed=0,noise=0.1", chunks="3")) == 1  # other settings: refused
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0], err
    assert main([*_kld_args(text_file, out, "seed=0,noise=0.1", chunks="3"), "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["n_positions"] == 3 * (128 - 1 - 64)

    rep = tmp_path / "report"
    assert main(["eval", "report", str(out), "--out", str(rep)]) == 0
    capsys.readouterr()
    assert main(["eval", "report", str(out), "--out", str(rep)]) == 1  # a second report does not replace the first
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and str(rep) in err[0], err
    assert main(["eval", "report", str(out), "--out", str(rep), "--overwrite"]) == 0


def test_missing_data_file_is_one_line(tmp_path: Path, capsys) -> None:
    """A --data path that is not there: one line naming it and what to give, not the raw OSError."""
    from dsv4_gguf.cli import main

    missing = tmp_path / "nonexist.txt"
    assert main(_kld_args(missing, tmp_path / "run", "seed=0")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dsv4-gguf eval kld: error: {missing}: no such text file"), err
    assert "give --data" in err[0] and "Errno" not in err[0]
    assert not (tmp_path / "run").exists()
