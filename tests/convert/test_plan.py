"""Dry-run plans from presets: every variant prints types, sizes and bits per weight for Flash and Pro;
SOURCE's plan equals the sum of the exact tensor sizes the checkpoint layout implies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dsv4_gguf.config import PRESETS
from dsv4_gguf.layout import checkpoint_tensors

VARIANTS = ["SOURCE", "MXFP4_MOE", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K-MOE", "Q3_K_M", "IQ3_XXS-MOE", "Q2_K"]
VARIANTS += ["IQ2_XXS-DS4", "IQ2_XXS-MOE", "IQ1_S-MOE"]  # issue 17: recipes of the published low-bit class


def _source_bytes(args) -> int:
    """SOURCE, computed independently from the layout: FP4 -> 17 bytes per 32 values, FP8 and 2-D BF16 ->
    2 bytes, 1-D and F32 -> 4 bytes, I64 -> 4 bytes (I32); the MTP sidecar repeats embed/norm/head."""
    total = 0
    for s in checkpoint_tensors(args):
        n = 1
        for d in s.logical_shape:
            n *= d
        if s.kind == "scale":
            continue
        if s.kind == "fp4":
            total += n // 32 * 17
        elif len(s.shape) == 1 or s.dtype in ("F32", "I64"):
            total += 4 * n
        else:  # fp8 and 2-D BF16
            total += 2 * n
    for _name in ("embed.weight", "head.weight"):  # sidecar copies (BF16)
        total += 2 * args.vocab_size * args.dim
    total += 4 * args.dim  # sidecar copy of norm.weight (F32)
    return total


@pytest.mark.parametrize("name", ["flash", "pro", "tiny"])
def test_source_plan_equals_exact_sizes(name):
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe

    args = PRESETS[name]
    plan = make_plan(args, load_recipe("SOURCE"), Path("x.gguf"), ckpt_dir=None)
    assert sum(p.nbytes for p in plan.entries) == _source_bytes(args)
    for f in plan.files:  # file size = header + each tensor padded to 32 bytes
        assert f.size == len(f.header) + sum(p.nbytes + (-p.nbytes % 32) for p in f.entries)
    assert all(p.lossless for p in plan.entries)


def test_source_plan_flash_numbers():
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe

    plan = make_plan(PRESETS["flash"], load_recipe("SOURCE"), Path("x.gguf"), ckpt_dir=None)
    assert sum(p.nbytes for p in plan.entries) == 167_741_906_760  # 161.9 GB main + 5.9 GB MTP sidecar
    assert len(plan.files[0].entries) == 1328


@pytest.mark.parametrize("preset", ["flash", "pro"])
def test_cli_dry_run_every_variant(preset, capsys, tmp_path, monkeypatch):
    from dsv4_gguf.cli import main

    monkeypatch.chdir(tmp_path)
    sizes, main_sizes = {}, {}
    for v in VARIANTS:
        assert main(["convert", "--preset", preset, "--dry-run", "--type", v]) == 0
        out = capsys.readouterr().out
        assert f"variant {v}:" in out and "bits per weight" in out and "bpw" in out
        m = re.search(r"^total: ([\d,]+) bytes", out, re.M)
        assert m
        sizes[v] = int(m.group(1).replace(",", ""))
        m = re.search(rf"^DeepSeek-V4-{preset}-{re.escape(v)}\.gguf: \d+ tensors, ([\d,]+) bytes", out, re.M)
        assert m, out[:400]
        main_sizes[v] = int(m.group(1).replace(",", ""))
    assert not list(tmp_path.iterdir())  # a plan writes nothing
    # bigger variants are bigger
    assert sizes["SOURCE"] > sizes["MXFP4_MOE"] > sizes["Q8_0"] > sizes["Q4_K_M"] > sizes["Q3_K_M"] > sizes["Q2_K"]
    assert sizes["Q2_K"] > sizes["IQ2_XXS-MOE"]
    assert sizes["Q4_K_M"] > sizes["Q3_K-MOE"] > sizes["Q3_K_M"] > sizes["IQ3_XXS-MOE"] > sizes["Q2_K"]
    assert sizes["Q2_K"] > sizes["IQ2_XXS-DS4"] > sizes["IQ2_XXS-MOE"] > sizes["IQ1_S-MOE"]
    # the README's size table is these plans (main file and main + MTP columns), and the recipe descriptions agree
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    col = 1 if preset == "flash" else 4
    table = {
        cells[0]: (cells[col], cells[col + 1])
        for line in readme.splitlines()
        if line.startswith("| ") and (cells := [c.strip() for c in line.strip("|").split("|")])[0] in VARIANTS
    }
    assert table == {v: (f"{main_sizes[v] / 1e9:.2f} GB", f"{sizes[v] / 1e9:.2f} GB") for v in VARIANTS}
    # the recipes that state their size state the planned one (main + MTP sidecar, and the main file alone)
    for v in ("IQ2_XXS-MOE", "IQ2_XXS-DS4", "IQ1_S-MOE", "IQ3_XXS-MOE", "Q3_K-MOE"):
        tot, main_gb = sizes[v] / 1e9, main_sizes[v] / 1e9
        said = f"Flash {tot:.1f} GB with the MTP sidecar ({main_gb:.1f} GB without)" if preset == "flash" else ""
        said = said or f"Pro {tot:.1f} GB ({main_gb:.1f} GB)"
        assert said in _recipe_text(v.lower().replace("-", "_")), (v, said)


def _recipe_text(name: str) -> str:
    return (Path(__file__).resolve().parents[2] / "quantize" / "recipes" / f"{name}.json").read_text(encoding="utf-8")


def test_cli_preset_needs_dry_run(capsys):
    from dsv4_gguf.cli import main

    assert main(["convert", "--preset", "flash", "--type", "SOURCE"]) == 1
    assert "--dry-run" in capsys.readouterr().err
