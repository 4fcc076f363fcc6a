"""``--target-size`` on real files: each budget's file on disk against the budget, and the same mix again.

For a preset (``flash-slice`` by default: full Flash widths, 256 experts, 3 layers) this writes a SOURCE GGUF
(``tiny``: the synthetic checkpoint converted; ``flash-slice``: the converter's plan with pooled random rows,
benchmarks/synth_gguf.py, so no 16 GB checkpoint is generated), then for each budget runs
``dsv4-gguf requantize SOURCE OUT --type SOURCE --target-size B --write-recipe R``, and checks, stopping
otherwise: the file is at most the budget and within 1% under it, its ``dsv4.recipe`` metadata is the recipe
written, and a second plan of the same inputs (``--dry-run --write-recipe``) gives the same recipe.  The plans
of the real Flash and Pro models (``convert --preset flash|pro --dry-run``) are listed beside them.

    python benchmarks/target_size.py --work /work/bench/ts --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

PLAN_BUDGETS = {"flash": ("75G", "90GB", "120G"), "pro": ("400G", "450GiB", "600G")}
DEFAULT_BUDGETS = {"flash-slice": "12.5G,12G,11.5G", "tiny": "80M,60M,50M"}


def cli(*args: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "dsv4_gguf.cli", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"dsv4-gguf {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout, time.perf_counter() - t0


def budget_line(out: str) -> tuple[int, int]:
    m = re.search(r"^target \S+: limit ([\d,]+) file bytes, planned ([\d,]+)", out, re.M)
    if not m:
        sys.exit("no budget line in the plan output")
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def format_section(meta: dict, rows: list[dict]) -> str:
    out = [
        "### `--target-size`: files against their budgets",
        "",
        f"Command: `python benchmarks/target_size.py {meta['command']}`  ",
        f"Machine: {meta['machine']}. Real files: requantized from a SOURCE GGUF of {meta['model']} with "
        "`--type SOURCE --target-size B`; the size is the file on disk. Same mix: a second plan of the same "
        "inputs wrote the same recipe JSON. Plans: `convert --preset P --dry-run --target-size B` (MTP sidecar "
        "included).",
        "",
        "| model | kind | budget | limit bytes | bytes | % of budget | same mix | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['kind']} | {r['budget']} | {r['limit']:,} | {r['bytes']:,} | "
            f"{100 * r['bytes'] / r['limit']:.3f} | {'yes' if r['same_mix'] else 'NO'} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("flash-slice", "tiny"), default="flash-slice")
    ap.add_argument("--work", type=Path, required=True, help="folder for SOURCE and the outputs (SOURCE reused)")
    ap.add_argument("--budgets", help="comma-separated budgets (default: three inside the preset's range)")
    ap.add_argument("--no-plans", action="store_true", help="skip the Flash / Pro dry-run rows")
    ap.add_argument("--write", type=Path, help="RESULTS.md to write the section into")
    ns = ap.parse_args()

    from dsv4_gguf.quantize.target import RECIPE_KEY

    from dsv4_gguf.config import preset
    from dsv4_gguf.gguf_model import open_gguf

    work = ns.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"{ns.preset}-SOURCE.gguf"
    if not src.exists():
        if ns.preset == "tiny":
            from dsv4_gguf.synth import write_synthetic

            write_synthetic(preset("tiny"), work / "ckpt", seed=0)
            cli("convert", str(work / "ckpt"), "-o", str(src), "--type", "SOURCE", "--no-mtp")
        else:
            from synth_gguf import write_pooled

            write_pooled(src, preset(ns.preset), "SOURCE")
    rows = []
    for b in (ns.budgets or DEFAULT_BUDGETS[ns.preset]).split(","):
        out, rj, rj2 = work / "target.gguf", work / "mix.json", work / "mix2.json"
        for p in (out, rj, rj2):
            p.unlink(missing_ok=True)
        text, secs = cli("requantize", str(src), str(out), "--type", "SOURCE", "--target-size", b,
                         "--write-recipe", str(rj))  # fmt: skip
        limit, _ = budget_line(text)
        size = out.stat().st_size
        if not 0.99 * limit <= size <= limit:
            sys.exit(f"{b}: the file has {size:,} bytes, outside [99%, 100%] of {limit:,}")
        if json.loads(open_gguf(out).metadata[RECIPE_KEY]) != json.loads(rj.read_text()):
            sys.exit(f"{b}: the file's {RECIPE_KEY} is not the recipe written")
        cli("requantize", str(src), str(work / "plan.gguf"), "--type", "SOURCE", "--target-size", b, "--dry-run",
            "--write-recipe", str(rj2))  # fmt: skip
        same = rj.read_text() == rj2.read_text()
        if not same:
            sys.exit(f"{b}: a second plan of the same inputs chose another mix")
        rows.append({"model": ns.preset, "kind": "file", "budget": b, "limit": limit, "bytes": size,
                     "same_mix": same, "seconds": secs})  # fmt: skip
        print(rows[-1], flush=True)
        out.unlink()
    if not ns.no_plans:
        for p, budgets in PLAN_BUDGETS.items():
            for b in budgets:
                args = ["convert", "--preset", p, "--dry-run", "--target-size", b]
                text, secs = cli(*args, "--write-recipe", str(work / "p1.json"))
                limit, planned = budget_line(text)
                cli(*args, "--write-recipe", str(work / "p2.json"))
                same = (work / "p1.json").read_text() == (work / "p2.json").read_text()
                rows.append({"model": p, "kind": "plan", "budget": b, "limit": limit, "bytes": planned,
                             "same_mix": same, "seconds": secs})  # fmt: skip
                print(rows[-1], flush=True)
    meta = {
        "command": " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "model": ns.preset + (" (pooled random rows)" if ns.preset != "tiny" else " (synthetic checkpoint)"),
    }
    text = format_section(meta, rows)
    print(text)
    if ns.write:
        import results_md

        results_md.write_section(
            ns.write, f"target_size_{ns.preset.replace('-', '_')}", text, {"meta": meta, "rows": rows}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
