"""Benchmark GGUFs made the way users make them: the package's synthetic checkpoint (`dsv4-gguf synth`)
converted by the package's converter (`dsv4-gguf convert --type VARIANT --no-mtp`).

The same pipeline as benchmarks/convert.py, without the timing.  Nothing from tests/ is used.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dsv4_gguf.quantize.convert import convert, make_plan
from dsv4_gguf.quantize.recipes import load_recipe

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.config import preset
from dsv4_gguf.synth import write_synthetic


def gguf_path(out_dir: Path, name: str, variant: str) -> Path:
    return Path(out_dir) / f"{name}-{variant}.gguf"


def write_ggufs(preset_name: str, out_dir: Path, variants: list[str], seed: int = 0) -> list[Path]:
    """``out_dir/<preset>-<variant>.gguf`` for each variant (MTP not written: plain decode does not read it),
    converted from a seeded synthetic checkpoint of ``preset_name``.  Files already there are kept; the
    checkpoint is written to ``out_dir/<preset>-ckpt`` only when something is missing, and removed after."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [gguf_path(out_dir, preset_name, v) for v in variants]
    missing = [(v, p) for v, p in zip(variants, paths, strict=True) if not p.exists()]
    if not missing:
        return paths
    ck_dir = out_dir / f"{preset_name}-ckpt"
    if not ck_dir.exists():
        write_synthetic(preset(preset_name), ck_dir, seed=seed)
    try:
        with Checkpoint(ck_dir) as ck:
            for variant, path in missing:
                plan = make_plan(
                    ck.args, load_recipe(variant), path, ckpt_dir=ck.path, name=f"synthetic-{preset_name}", mtp=False
                )
                convert(plan, ck)  # atomic: the final name appears only when the file is complete
    finally:
        shutil.rmtree(ck_dir, ignore_errors=True)
    return paths
