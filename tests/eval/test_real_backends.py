"""The in-process runtime and llama-cpp-python backends on the tiny converted model: declared
capabilities hold (tokenize, logits rows, greedy generation is deterministic), `eval swebench` runs
through llama-cpp-python with generation (identical reference -> zero deltas, predictions written), and
`eval kld` through llama-cpp-python gives exactly 0 for SOURCE against itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dsv4_gguf.eval.backends import open_backend

from dsv4_gguf.cli import main

pytestmark = pytest.mark.slow


def test_runtime_backend(tiny_ggufs: dict[str, Path]) -> None:
    with open_backend("auto", str(tiny_ggufs["Q8_0"]), n_ctx=128, threads=2) as b:
        assert b.kind == "runtime" and b.caps.logits and b.caps.generate
        toks = [b.bos_id, *b.tokenize("the tapir walks at dawn <｜User｜>")]
        assert len(toks) > 3 and b.n_vocab == 129280
        rows = b.logits(toks, 2)
        assert rows.shape == (len(toks) - 3, b.n_vocab) and rows.dtype == np.float32
        assert np.array_equal(rows, b.logits(toks, 2))  # session reset: call order does not matter
        full = b.logits(toks, 0)
        assert np.array_equal(full[2:], rows)
        g1 = b.generate("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>", 4)
        assert g1 == b.generate("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>", 4)


def test_swebench_through_llama_cpp(tiny_ggufs: dict[str, Path], swe_jsonl: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    src = str(tiny_ggufs["SOURCE"])
    out = tmp_path / "swe"
    assert (
        main(
            [
                "eval",
                "swebench",
                "--data",
                str(swe_jsonl),
                "--backend",
                "llama-cpp",
                "--model",
                src,
                "--ref",
                src,
                "--out",
                str(out),
                "--limit",
                "1",
                "--generate",
                "--max-new-tokens",
                "4",
                "--n-ctx",
                "512",
                "--threads",
                "2",
                "--top-k",
                "8",
            ]
        )
        == 0
    )
    r = json.loads((out / "results.json").read_text())
    assert r["swe_n"] == 1 and r["nll_delta_mean"] == 0.0 and r["flip_rate"] == 0.0 and r["kld_mean"] == 0.0
    assert r["nll_mean"] > 0 and r["predictions"] == 1
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert {p["model_name_or_path"] for p in preds} == {"tiny-SOURCE"}


def test_llama_cpp_backend_source_is_exactly_zero(tiny_ggufs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    src = tiny_ggufs["SOURCE"]
    text = tmp_path / "t.txt"
    text.write_text("the tapir walks under the tree at dawn and eats leaves by the river " * 20, encoding="utf-8")
    assert (
        main(
            [
                "eval",
                "kld",
                "--data",
                str(text),
                "--model",
                str(src),
                "--ref",
                str(src),
                "--backend",
                "llama-cpp",
                "--out",
                str(tmp_path / "lc"),
                "--ctx",
                "64",
                "--chunks",
                "1",
                "--n-ctx",
                "64",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    r = json.loads((tmp_path / "lc" / "results.json").read_text())
    assert r["kld_mean"] == 0.0 and r["same_top_p"] == 1.0
    man = json.loads((tmp_path / "lc" / "manifest.json").read_text())
    assert man["settings"]["model"]["backend"] == "llama-cpp" and "sha256" in man["settings"]["model"]["file"]
