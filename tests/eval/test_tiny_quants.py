"""Must-show: the tiny synthetic model converted to SOURCE, Q8_0, Q4_K_M and IQ2_XXS-MOE; `eval kld`
against SOURCE gives exactly 0 for SOURCE and KLD that grows as bits per weight fall; the report carries
the table and the plot."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dsv4_gguf.cli import main

pytestmark = pytest.mark.slow

VARIANTS = ("SOURCE", "Q8_0", "Q4_K_M", "IQ2_XXS-MOE")  # the order of the tiny_ggufs fixture


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = (
        "the a tapir walks under tree at dawn and dusk river forest quietly eats leaves while birds sing "
        "over water in morning light"
    ).split()
    rng = random.Random(0)
    p = tmp_path_factory.mktemp("text") / "text.txt"
    p.write_text(" ".join(rng.choice(words) for _ in range(800)), encoding="utf-8")
    return p


def _kld(
    text: Path,
    model: Path,
    ref: Path,
    out: Path,
    cache: Path,
    backend: str = "runtime",
    chunks: int = 2,
    ctx: int = 128,
) -> dict:
    args = [
        "eval",
        "kld",
        "--data",
        str(text),
        "--model",
        str(model),
        "--ref",
        str(ref),
        "--backend",
        backend,
        "--ref-cache",
        str(cache),
        "--out",
        str(out),
        "--ctx",
        str(ctx),
        "--chunks",
        str(chunks),
        "--n-ctx",
        "256",
        "--threads",
        "2",
    ]
    assert main(args) == 0
    return json.loads((out / "results.json").read_text())


def test_kld_ladder_on_tiny_model(tiny_ggufs: dict[str, Path], english: Path, tmp_path: Path) -> None:
    res = {v: _kld(english, tiny_ggufs[v], tiny_ggufs["SOURCE"], tmp_path / v, tmp_path / "ref") for v in VARIANTS}
    src = res["SOURCE"]
    assert src["kld_mean"] == 0.0 and src["kld_max"] == 0.0 and src["same_top_p"] == 1.0
    assert src["ppl_ratio"] == 1.0 and src["rms_dp"] == 0.0 and src["n_positions"] == 2 * 63
    # bits per weight of the repeating blocks fall down the ladder, KLD rises
    bpw = [res[v]["bpw_blocks"] for v in VARIANTS]
    kld = [res[v]["kld_mean"] for v in VARIANTS]
    assert bpw == sorted(bpw, reverse=True) and len(set(bpw)) == 4, bpw
    assert kld == sorted(kld) and kld[1] > 0, kld
    assert res["Q8_0"]["same_top_p"] > res["IQ2_XXS-MOE"]["same_top_p"]

    rep = tmp_path / "report"
    assert main(["eval", "report", *(str(tmp_path / v) for v in VARIANTS), "--out", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    for v in VARIANTS:
        assert f"| tiny-{v} |" in md
    assert "![kld_vs_bpw.png](kld_vs_bpw.png)" in md
    assert (rep / "kld_vs_bpw.png").stat().st_size > 10_000
