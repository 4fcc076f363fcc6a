"""SWE-bench: loaders (jsonl/json/parquet, Pro field names), subsets, patch similarity, and `eval swebench`
with the fake backend: NLL equals a direct computation, delta/flip vs a reference, official predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dsv4_gguf.eval.backends import log_softmax
from dsv4_gguf.eval.backends.fake import FakeBackend
from dsv4_gguf.eval.datasets.swebench import build_prompt, load_swebench, select
from dsv4_gguf.eval.metrics.swebench import changed_lines, patch_similarity
from dsv4_gguf.eval.tasks.swebench import extract_patch

from dsv4_gguf.cli import main


def test_loaders_agree_and_pro_fields(swe_jsonl: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in swe_jsonl.read_text().splitlines()]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    a, b, c = (load_swebench(p) for p in (swe_jsonl, tmp_path / "d.json", tmp_path / "d.parquet"))
    assert [r.instance_id for r in a] == [r.instance_id for r in b] == [r.instance_id for r in c]
    assert a[0].fields["FAIL_TO_PASS"] == ["test_m0"] and c[3].fields["PASS_TO_PASS"] == []
    pro = [{k.lower() if k in ("FAIL_TO_PASS", "PASS_TO_PASS") else k: v for k, v in r.items()} for r in rows]
    (tmp_path / "pro.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pro))
    pro[1]["interface"] = "def f() -> int"
    (tmp_path / "pro.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pro))
    got = load_swebench(tmp_path / "pro.jsonl")
    assert got[1].fields["FAIL_TO_PASS"] == ["test_m1"]
    assert "<interface>\ndef f() -> int\n</interface>" in build_prompt(got[1])
    assert "<interface>" not in build_prompt(got[0]) and build_prompt(got[0]).startswith("<｜begin▁of▁sentence｜>")
    oracle = load_swebench(swe_jsonl)[0]
    oracle.text = "ORACLE PROMPT"
    assert "ORACLE PROMPT" in build_prompt(oracle) and "<issue>" not in build_prompt(oracle)
    (tmp_path / "bad.jsonl").write_text(json.dumps({"repo": "x"}) + "\n")
    with pytest.raises(ValueError, match="lacks"):
        load_swebench(tmp_path / "bad.jsonl")


def test_select_stratified_seeded(swe_jsonl: Path) -> None:
    rows = load_swebench(swe_jsonl)  # 4 astropy, 6 django, 2 requests
    s = select(rows, limit=6, seed=1)
    by = {repo: sum(r.repo == repo for r in s) for repo in ("astropy/astropy", "django/django", "psf/requests")}
    assert by == {"astropy/astropy": 2, "django/django": 3, "psf/requests": 1}
    assert [r.instance_id for r in s] == [r.instance_id for r in select(rows, limit=6, seed=1)]
    assert [r.repo for r in select(rows, repos=["psf/requests"])] == ["psf/requests"] * 2
    ids = [rows[3].instance_id, rows[0].instance_id]
    assert [r.instance_id for r in select(rows, ids=ids)] == [rows[0].instance_id, rows[3].instance_id]
    with pytest.raises(ValueError, match="not in the dataset"):
        select(rows, ids=["nope"])


def test_patch_similarity_and_extraction() -> None:
    gold = "diff --git a/f.py b/f.py\n--- a/f.py\n+++ b/f.py\n@@ -1,2 +1,2 @@\n-a = 1\n+a = 2\n b = 3\n"
    assert changed_lines(gold) == {("f.py", "-a = 1"), ("f.py", "+a = 2")}
    s = patch_similarity(gold, gold)
    assert s == {"diff_ratio": 1.0, "line_f1": 1.0, "files_match": 1.0}
    half = gold.replace("+a = 2", "+a = 5")
    assert patch_similarity(half, gold)["line_f1"] == 0.5
    assert extract_patch("<think>x</think>Here:\n```diff\n" + gold + "```\nbye") == gold
    assert extract_patch("Sure.\n" + gold) == gold


def _swe(data: Path, out: Path, model: str = "seed=0,noise=0.5", **kw: str) -> list[str]:
    args = [
        "eval",
        "swebench",
        "--data",
        str(data),
        "--backend",
        "fake",
        "--model",
        model,
        "--ref",
        "seed=0",
        "--out",
        str(out),
        "--n-ctx",
        "100000",
        "--variant",
        "fake-q",
        "--top-k",
        "8",
    ]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}"] + ([v] if v else [])
    return args


def test_eval_swebench_end_to_end(swe_jsonl: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(_swe(swe_jsonl, out, limit="4", generate="", flip_threshold="0.02")) == 0
    res = json.loads((out / "results.json").read_text())
    items = [json.loads(x) for x in (out / "items.jsonl").read_text().splitlines()]
    assert res["swe_n"] == 4 and len(items) == 4
    ids = (out / "instance_ids.txt").read_text().split()
    assert ids == [i["instance_id"] for i in items]
    # NLL of the gold patch, recomputed directly from the fake model
    inst = {r.instance_id: r for r in load_swebench(swe_jsonl)}
    cand, ref = FakeBackend(seed=0, noise=0.5), FakeBackend(seed=0)
    for it in items:
        r = inst[it["instance_id"]]
        p, c = cand.tokenize(build_prompt(r)), cand.tokenize(r.patch)
        toks = p + c
        want = -log_softmax(cand.logits(toks, len(p) - 1))[np.arange(len(c)), c].mean()
        want_ref = -log_softmax(ref.logits(toks, len(p) - 1))[np.arange(len(c)), c].mean()
        assert it["nll"] == pytest.approx(want, rel=1e-12) and it["nll_ref"] == pytest.approx(want_ref, rel=1e-12)
    d = [it["nll"] - it["nll_ref"] for it in items]
    assert res["nll_delta_mean"] == pytest.approx(np.mean(d), rel=1e-12)
    assert res["flip_rate"] == sum(abs(x) > 0.02 for x in d) / 4
    assert res["kld_mean"] > 0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [set(p) for p in preds] == [{"instance_id", "model_name_or_path", "model_patch"}] * 4
    assert preds[0]["model_name_or_path"] == "fake-q"

    # identical model: every delta 0, no flips; interrupted + resumed equals uninterrupted
    same = tmp_path / "same"
    assert main(_swe(swe_jsonl, same, model="seed=0", limit="4")) == 0
    r0 = json.loads((same / "results.json").read_text())
    assert r0["nll_delta_mean"] == 0.0 and r0["flip_rate"] == 0.0 and r0["kld_mean"] == 0.0
    again = tmp_path / "again"
    assert (
        main(
            _swe(swe_jsonl, again, model="seed=0,noise=0.5,fail_after=2", limit="4", generate="", flip_threshold="0.02")
        )
        == 130
    )
    assert main(_swe(swe_jsonl, again, limit="4", generate="", flip_threshold="0.02")) == 0
    assert json.loads((again / "results.json").read_text()) == res
    assert (again / "predictions.jsonl").read_text() == (out / "predictions.jsonl").read_text()


def test_report_quality_vs_bpw(tmp_path: Path) -> None:
    from dsv4_gguf.eval.report import write_report

    runs = [
        {"run": f"r{i}", "task": "swebench", "variant": f"v{i}", "bpw": b, "nll_mean": n, "swe_n": 3}
        for i, (b, n) in enumerate([(2.0, 2.0), (8.5, 1.0), (4.5, 1.3)])
    ]
    files = write_report(runs, tmp_path)
    assert files["swebench_nll_vs_bpw.png"].read_bytes()[:4] == b"\x89PNG"
    md = files["report.md"].read_text().splitlines()
    rows = [x for x in md if x.startswith("| v") and not x.startswith("| variant")]
    assert [x.split(" | ")[0] for x in rows] == ["| v1", "| v2", "| v0"]  # sorted by falling bpw
    assert rows[0].startswith("| v1 | 8.500 | – | 1.0000 | – |")
    assert write_report(runs[:1], tmp_path / "one").get("swebench_nll_vs_bpw.png") is None  # one point: no plot
