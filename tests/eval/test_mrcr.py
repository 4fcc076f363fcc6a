"""MRCR: official grader on hand-made cases, lenient variant, bins at the edges, both parquet layouts,
the prompt rendering, and `eval mrcr` end to end with a fake backend (scores known in advance)."""

from __future__ import annotations

import json
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from dsv4_gguf.eval.datasets.mrcr import discover, load_mrcr, merge_same_role, parse_bins
from dsv4_gguf.eval.metrics.mrcr import BIN_LABELS, aggregate, bin_index, grade, grade_lenient

from dsv4_gguf.chat import encode_messages

P = "aYooSG8CQg"


def test_official_hand_made_cases() -> None:
    assert grade(P + "abcd", P + "abcd", P) == 1.0
    assert grade(P + "abcf", P + "abcd", P) == 0.75  # 2*3 matches / 8 chars
    assert grade("abcd", P + "abcd", P) == 0.0  # prefix missing
    assert grade(" " + P + "abcd", P + "abcd", P) == 0.0  # official: no stripping
    assert grade(P[:-1] + "abcd", P + "abcd", P) == 0.0  # a truncated prefix is missing
    assert grade(P, P + "abcd", P) == 0.0  # prefix alone: ratio of '' vs 'abcd'
    assert grade(P, P, P) == 1.0  # SequenceMatcher('', '').ratio() is 1.0


def test_official_uses_autojunk_default() -> None:
    # >= 200 chars with a letter in > 1% of positions: autojunk changes the ratio, the grader must not
    answer = P + ("the tapir sleeps under the tree\n" * 12)
    response = P + ("the tapir sleeps under the tree\n" * 11) + "a tapir sleeps under a tree\n"
    a, r = answer[len(P) :], response[len(P) :]
    with_junk = SequenceMatcher(None, r, a).ratio()
    without = SequenceMatcher(None, r, a, autojunk=False).ratio()
    assert with_junk != without
    assert grade(response, answer, P) == with_junk


def test_lenient_variant() -> None:
    ans = P + "poem"
    assert grade_lenient("<think>hmm</think>\n " + P + "poem  ", ans, P) == 1.0
    assert grade("<think>hmm</think>\n " + P + "poem  ", ans, P) == 0.0
    assert grade_lenient("Sure! " + P + "poem", ans, P) == 1.0  # prefix later in the text
    assert grade_lenient("poem", ans, P) == 0.0


@pytest.mark.parametrize(
    "n,b",
    [
        (4095, None),
        (4096, 0),
        (4097, 0),
        (8192, 0),
        (8193, 1),
        (16384, 1),
        (16385, 2),
        (131072, 4),
        (131073, 5),
        (524288, 6),
        (524289, 7),
        (1048576, 7),
        (1048577, None),
    ],
)
def test_bins_at_edges(n: int, b: int | None) -> None:
    assert bin_index(n) == b


def test_parse_bins() -> None:
    assert parse_bins("8K-32K,1M") == {0, 1, 2, 7}
    assert parse_bins(None) is None
    with pytest.raises(ValueError, match="unknown MRCR bin"):
        parse_bins("3K")


def test_merge_same_role_and_render() -> None:
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]
    merged = merge_same_role(msgs)
    assert merged == [
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": "c"},
        {"role": "user", "content": "d"},
    ]
    assert encode_messages(merged).count("<｜User｜>") == 2


def test_o200k_offline_known_ids() -> None:
    from dsv4_gguf.eval.tokenize import count_o200k, o200k

    assert o200k().encode("hello world") == [24912, 2375]
    assert count_o200k("<|endoftext|>") > 1  # specials are plain text when counting prompts


def test_loader_tree_and_filters(mrcr_tree: tuple[Path, dict[str, float]], fake_o200k) -> None:
    root, expected = mrcr_tree
    src, rows = load_mrcr(root, count=fake_o200k)
    assert src.layout == "tree" and len(src.files) == 4
    assert {r.uid for r in rows} == set(expected)
    assert sorted((r.o200k_tokens, r.bin) for r in rows if r.n_needles == 2) == [
        (4096, 0),
        (8192, 0),
        (8193, 1),
        (16384, 1),
    ]
    _, only8 = load_mrcr(root, needles=(8,), bins={1}, count=fake_o200k)
    assert {(r.n_needles, r.bin) for r in only8} == {(8, 1)} and len(only8) == 2
    _, short = load_mrcr(root, max_tokens=8192, count=fake_o200k)
    assert sorted(r.o200k_tokens for r in short) == [4096, 4096, 8192, 8192]
    _, sample = load_mrcr(root, per_cell=1, seed=3, count=fake_o200k)
    assert len(sample) == 4
    assert [r.uid for r in sample] == [r.uid for r in load_mrcr(root, per_cell=1, seed=3, count=fake_o200k)[1]]


def test_loader_legacy_layout(tmp_path: Path, fake_o200k, mrcr_writer) -> None:
    mrcr_row, write_mrcr = mrcr_writer
    rows = {2: [mrcr_row(0, 2, 5000, "body", P, P + "body")]}
    write_mrcr(tmp_path, rows, legacy=True)
    src, got = load_mrcr(tmp_path, count=fake_o200k)
    assert src.layout == "legacy" and got[0].uid == "2needle:0" and got[0].date_added is None
    with pytest.raises(FileNotFoundError, match="needle"):
        discover(tmp_path / "nothing")


def _mrcr_args(data: Path, out: Path, model: str = "seed=0", **kw: str) -> list[str]:
    args = [
        "eval",
        "mrcr",
        "--data",
        str(data),
        "--backend",
        "fake",
        "--model",
        model,
        "--out",
        str(out),
        "--n-ctx",
        "100000",
        "--variant",
        "fake",
    ]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", v]
    return args


def test_eval_mrcr_end_to_end_and_resume(mrcr_tree, fake_o200k, tmp_path: Path, monkeypatch) -> None:
    from dsv4_gguf.eval import tokenize

    from dsv4_gguf.cli import main

    monkeypatch.setattr(tokenize, "count_o200k", fake_o200k)
    root, expected = mrcr_tree
    assert main(_mrcr_args(root, tmp_path / "a")) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    items = {json.loads(x)["uid"]: json.loads(x) for x in (tmp_path / "a" / "items.jsonl").read_text().splitlines()}
    assert {u: r["score"] for u, r in items.items()} == expected
    assert res["mrcr_score"] == pytest.approx(sum(expected.values()) / len(expected), abs=0, rel=1e-15)
    assert res["mrcr_n"] == 8 and res["mrcr_skipped"] == 0
    cells = {(c["n_needles"], c["bin_label"]): c["n"] for c in res["table"]}
    assert cells == {(2, "8K"): 2, (2, "16K"): 2, (8, "8K"): 2, (8, "16K"): 2}
    assert res["mrcr_8needle_all_bins"] == pytest.approx(sum(v for u, v in expected.items() if u.startswith("8")) / 4)
    assert res["mrcr_8needle_1m"] is None
    assert aggregate([])["mrcr_score"] is None and BIN_LABELS[0] == "8K"

    # interrupt after 3 generations, then resume: same results.json
    b = tmp_path / "b"
    assert main(_mrcr_args(root, b, model="seed=0,fail_after=3")) == 130
    assert len((b / "items.jsonl").read_text().splitlines()) == 3 and not (b / "results.json").exists()
    assert main(_mrcr_args(root, b)) == 0
    assert json.loads((b / "results.json").read_text()) == res
    # a changed setting refuses to resume
    assert main(_mrcr_args(root, b, needles="8")) == 1
    # bins by the model's own count (the fake tokenizer: one id per UTF-8 byte of the rendered prompt)
    nat = tmp_path / "native"
    assert main(_mrcr_args(root, nat, bin_by="native", bins="16K")) == 0
    recs = [json.loads(x) for x in (nat / "items.jsonl").read_text().splitlines()]
    scored = [r for r in recs if "score" in r]
    assert scored and {r["bin"] for r in scored} == {1} and all(8192 < r["native_tokens"] for r in scored)
    assert all("outside --bins" in r["skipped"] for r in recs if "score" not in r) and len(recs) == 8
    rep = tmp_path / "rep"
    assert main(["eval", "report", str(tmp_path / "a"), "--out", str(rep)]) == 0
    assert "| fake | – | – | " in (rep / "report.md").read_text()
    assert (rep / "mrcr_by_bin.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_mrcr_with_nothing_scored_fails(mrcr_tree, fake_o200k, tmp_path: Path, monkeypatch, capsys) -> None:
    """Every row outside the bins (by the model's own count) or over --n-ctx: the run fails with one line
    that says why and what to change, and leaves no results.json that a report could take for a score."""
    from dsv4_gguf.eval import tokenize

    from dsv4_gguf.cli import main

    monkeypatch.setattr(tokenize, "count_o200k", fake_o200k)
    root, _ = mrcr_tree
    for name, kw in (("ctx", {"n_ctx": "2000"}), ("bins", {"bin_by": "native", "bins": "1M"})):
        out = tmp_path / name
        assert main(_mrcr_args(root, out, **kw)) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "none of the 8 rows was scored" in err, err
        assert "4,096 to 1,048,576" in err and "items.jsonl" in err
        assert not (out / "results.json").exists()


def test_mrcr_plot_single_bin_point_is_inside(tmp_path: Path) -> None:
    """One bin present: the x range is centred on it (the point is not drawn on the frame's corner)."""
    import matplotlib

    matplotlib.use("Agg")
    from dsv4_gguf.eval import report
    from matplotlib import pyplot as plt

    seen = {}
    real_subplots = plt.subplots

    def spy(*a, **k):
        fig, ax = real_subplots(*a, **k)
        seen["ax"] = ax
        return fig, ax

    table = [{"n_needles": 8, "bin": 0, "bin_label": "8K", "n": 2, "score": 0.5}]
    run = {"run": "r", "task": "mrcr", "variant": "v", "table": table, "bin_labels": list(BIN_LABELS)}
    plt.subplots = spy
    try:
        assert report._plot_mrcr([run], tmp_path / "m.png")
    finally:
        plt.subplots = real_subplots
    lo, hi = seen["ax"].get_xlim()
    assert lo < 0 < hi and abs((lo + hi) / 2) < 1e-9
    assert [t.get_text() for t in seen["ax"].get_xticklabels()] == ["8K"]
