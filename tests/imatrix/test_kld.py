"""Must-show 2: on the tiny synthetic model, Q2_K and IQ2_XXS-MOE converted with an imatrix (collected by
`dsv4-gguf imatrix` on the shipped calibration corpus) have lower KLD vs SOURCE than the same variants
without one (weight-energy fallback), measured by `dsv4-gguf eval kld` on held-out text that shares no
source with the corpus.  The numbers are printed (run with -s) and quoted in docs/imatrix.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsv4_gguf.cli import main

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).resolve().parents[2] / "quantize" / "calibration" / "calibration.txt"


def _kld(text: Path, model: Path, ref: Path, out: Path, cache: Path) -> dict:
    assert (
        main(
            [
                "eval",
                "kld",
                "--data",
                str(text),
                "--model",
                str(model),
                "--ref",
                str(ref),
                "--ref-cache",
                str(cache),
                "--out",
                str(out),
                "--ctx",
                "256",
                "--chunks",
                "2",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    return json.loads((out / "results.json").read_text())


def test_imatrix_lowers_kld(tiny_ckpt, source_gguf, held_out, tmp_path, capsys):
    im = tmp_path / "imatrix.gguf"
    assert (
        main(
            [
                "imatrix",
                str(source_gguf),
                "--text",
                str(CORPUS),
                "-o",
                str(im),
                "--ctx",
                "256",
                "--chunks",
                "12",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    res = {}
    for v in ("Q2_K", "IQ2_XXS-MOE"):
        for tag, extra in (("plain", []), ("imatrix", ["--imatrix", str(im)])):
            out = tmp_path / f"{v}-{tag}.gguf"
            assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", v, "--no-mtp", *extra]) == 0
            res[v, tag] = _kld(held_out, out, source_gguf, tmp_path / f"run-{v}-{tag}", tmp_path / "ref")
    with capsys.disabled():
        print("\nKLD vs SOURCE on held-out text (tiny model, 2 x 256 tokens):")
        for (v, tag), r in res.items():
            print(f"  {v:12s} {tag:8s} kld_mean {r['kld_mean']:.4f}  same_top_p {r['same_top_p']:.3f}")
    for v in ("Q2_K", "IQ2_XXS-MOE"):
        plain, withim = res[v, "plain"]["kld_mean"], res[v, "imatrix"]["kld_mean"]
        assert withim < 0.97 * plain, (v, plain, withim)
