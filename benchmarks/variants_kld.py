"""Quant quality of every shipped recipe and of ``--target-size`` mixes: mean KLD against SOURCE, by file size.

On a seeded synthetic checkpoint (``tiny``, or ``flash-slice``: full Flash widths, 3 layers; ``--experts`` can
shrink its expert count when time is short), in one run:

1. converts the checkpoint to SOURCE (lossless, the reference) and collects an imatrix from SOURCE over the
   shipped calibration text (``dsv4-gguf imatrix``);
2. requantizes SOURCE to every shipped recipe (``dsv4-gguf requantize --type R --imatrix``);
3. writes a ``--target-size`` mix at each of three budgets: the file sizes of three anchor recipes (default
   IQ2_XXS-MOE, Q3_K_M, Q4_K_M), with the anchor as the base recipe (its fixed parts) and the same imatrix; with
   ``--scan`` (``dsv4-gguf sensitivity`` of SOURCE on the calibration text) or ``--sensitivity FILE``, each
   budget a second time with that file;
4. runs ``dsv4-gguf eval kld`` of every file against SOURCE on a held-out text (seeded words, not the
   calibration text), and ``dsv4-gguf eval report`` over all runs (table, kld_vs_size.png with the Pareto front).

Checked, and the run stops otherwise: every mix's file is within 1% under its budget and carries the
``dsv4.recipe`` it was planned with.  Reported for each mix: its KLD next to the fixed recipe closest to it in
file size (the issue's bar: no higher).  Commands are the CLI's, each a fresh process.  A stopped run started
again with the same arguments loses little: imatrix, sensitivity and requantize run with ``--resume`` (a
requantize keeps every tensor its journal verifies), and an eval with its results.json is not rerun.  The
requantizes share a tensor cache (``requantize --cache``: an i-quant expert tensor two recipes or mixes both
need is quantized once), and the recipes run fastest first.  ``--ledger FILE`` carries finished evals to
another machine (a committed JSON: each eval's manifest and results, sizes, mix recipes, the sensitivity
file): a run there remakes SOURCE and the imatrix from the seed, and when their digests and the eval settings
match the ledger's, restores those evals and measures only the rest.

    python benchmarks/variants_kld.py --preset tiny --work /work/bench/vk-tiny --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALIBRATION = ROOT / "quantize" / "calibration" / "calibration.txt"
RECIPE_DIR = ROOT / "quantize" / "recipes"
WORDS = "the a tapir walks under tree at dawn and dusk river".split()  # docs/eval.md's quick-start text
SKIP_BIG = {"F32"}  # flash-slice in F32 is 4x its BF16 size on disk and loses nothing: run it on tiny only


def recipe_names() -> list[str]:
    return sorted(json.loads(p.read_text())["name"] for p in RECIPE_DIR.glob("*.json"))


def cli(*args: str, log: Path) -> float:
    """Run ``dsv4-gguf ARGS`` (this interpreter's package), append its output to ``log``; the wall time."""
    cmd = [sys.executable, "-m", "dsv4_gguf.cli", *args]
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ dsv4-gguf {' '.join(args)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"dsv4-gguf {' '.join(args)} failed (exit {r.returncode}); see {log}")
    return time.perf_counter() - t0


def held_out_text(path: Path, words: int, seed: int) -> None:
    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(words)) + "\n")


def slug(name: str) -> str:
    return name.replace("/", "_")


def closest(size: int, fixed: list[dict]) -> dict:
    """The fixed recipe nearest in file size (by ratio; ties to the smaller file)."""
    return min(fixed, key=lambda r: (abs(math.log(r["file_bytes"] / size)), r["file_bytes"]))


def format_section(meta: dict, rows: list[dict]) -> str:
    out = [
        f"### Quant quality by size: {meta['model']}",
        "",
        f"Command: `python benchmarks/variants_kld.py {meta['command']}`  ",
        f"Machine: {meta['machine']}; eval: `dsv4-gguf eval kld` vs SOURCE, {meta['eval']}; imatrix: "
        f"{meta['imatrix']}; every file requantized from SOURCE with that imatrix.",
        "",
        "| variant | file MB | bpw | mean KLD | p99 KLD | same top-1 | Pareto front |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["file_bytes"]):
        out.append(
            f"| {r['variant']} | {r['file_bytes'] / 1e6:.2f} | {r['bpw']:.3f} | {r['kld_mean']:.5f} | "
            f"{r['kld_p99']:.5f} | {r['same_top_p']:.4f} | {'yes' if r['pareto'] else 'no'} |"
        )
    mixes = [r for r in rows if r.get("budget")]
    if mixes:
        out += [
            "",
            "`--target-size` mixes (budget = an anchor recipe's file size; the anchor is the base recipe; importance "
            "from the imatrix, and in `+sens` rows also from the sensitivity file: "
            f"{meta.get('sensitivity') or 'none'}):",
            "",
            "| mix | budget B | file B | % of budget | closest fixed recipe | its KLD | mix KLD | mix <= fixed |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in mixes:
            c = r["closest"]
            pct = 100 * r["file_bytes"] / r["budget"]
            out.append(
                f"| {r['variant']} | {r['budget']:,} | {r['file_bytes']:,} | {pct:.3f} | "
                f"{c['variant']} ({c['file_bytes']:,} B) | {c['kld_mean']:.5f} | {r['kld_mean']:.5f} | "
                f"{'yes' if r['kld_mean'] <= c['kld_mean'] else 'NO'} |"
            )
    if meta.get("plot"):
        out += ["", f"![mean KLD against file size, Pareto front joined]({meta['plot']})"]
    if meta.get("notes"):
        out += ["", *meta["notes"]]
    return "\n".join(out)


def slow(name: str) -> tuple[bool, str]:
    """Sort key: recipes with a grid i-quant anywhere (minutes per expert tensor) after the others, so a run
    that is stopped has the most rows."""
    from dsv4_gguf.quantize.tensor_cache import CACHED_TYPES

    rules = json.loads(next(p for p in RECIPE_DIR.glob("*.json") if json.loads(p.read_text())["name"] == name)
                       .read_text())["rules"]  # fmt: skip
    return any(r["type"] in {t.name for t in CACHED_TYPES} for r in rules), name


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while b := f.read(64 << 20):
            h.update(b)
    return h.hexdigest()


def fingerprint(src: Path, imatrix: Path, text: Path, evald: list[str], ns: argparse.Namespace) -> dict:
    """What an eval's result depends on besides the variant: SOURCE's and the imatrix's bytes (both made from a
    seeded checkpoint, so a new machine remakes them bit for bit), the held-out text, the eval and scan
    settings (paths left out)."""
    settings = [a for a in evald[2:] if not a.startswith(str(ns.work.resolve()))]
    return {
        "SOURCE.gguf": file_digest(src),
        "imatrix.gguf": file_digest(imatrix),
        "held_out.txt": file_digest(text),
        "eval": " ".join(settings),
        "scan": f"--ctx {ns.ctx} --max-tokens {ns.ctx * ns.imatrix_chunks}",
    }


class Ledger:
    """``--ledger``: finished evals (their run folder's manifest.json and results.json, the file size, the mix's
    recipe) and the sensitivity file, under the fingerprint of the inputs they were measured with.  A run on
    another machine restores what matches and measures only the rest; a fingerprint that differs (the code
    changed what SOURCE or the imatrix holds) starts the ledger over.  Written atomically after each entry."""

    def __init__(self, path: Path, fp: dict):
        self.path, self.fp = path, fp
        old = json.loads(path.read_text()) if path.exists() else None
        if old is not None and old.get("fingerprint") != fp:
            print(f"{path}: recorded for other inputs ({old.get('fingerprint')} vs {fp}); starting it over", flush=True)
            old = None
        self.data = old or {"fingerprint": fp, "files": {}, "runs": {}}

    def restore(self, work: Path) -> None:
        for name, text in self.data["files"].items():
            if not (work / name).exists():
                (work / name).write_text(text)
        for name, entry in self.data["runs"].items():
            run = work / "runs" / f"kld-{slug(name)}"
            if not (run / "results.json").exists():
                run.mkdir(parents=True, exist_ok=True)
                for f, text in entry["files"].items():
                    (work / f).write_text(text)
                (run / "manifest.json").write_text(entry["manifest"])
                (run / "results.json").write_text(entry["results"])
                print(f"{name}: restored from {self.path} (measured {entry['measured']})", flush=True)

    def keep(self, name: str, text: str) -> None:
        self.data["files"][name] = text
        self._save()

    def record(self, name: str, run: Path, files: dict[str, str]) -> None:
        if name in self.data["runs"]:
            return
        self.data["runs"][name] = {
            "measured": time.strftime("%Y-%m-%d", time.gmtime()) + f" at {commit()}",
            "files": files,
            "manifest": (run / "manifest.json").read_text(),
            "results": (run / "results.json").read_text(),
        }
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        os.replace(tmp, self.path)


def commit() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown commit"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("tiny", "flash-slice"), default="tiny")
    ap.add_argument("--experts", type=int, help="routed experts per layer (default: the preset's)")
    ap.add_argument("--work", type=Path, required=True, help="folder for the checkpoint, GGUFs and eval runs (reused)")
    ap.add_argument("--anchors", default="IQ2_XXS-MOE,Q3_K_M,Q4_K_M", help="recipes whose sizes are the budgets")
    ap.add_argument("--sensitivity", type=Path, help="a dsv4-gguf sensitivity file: mixes with it too")
    ap.add_argument("--scan", action="store_true", help="run dsv4-gguf sensitivity on SOURCE (calibration text)")
    ap.add_argument("--skip", default="", help="comma-separated recipes not to run")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--imatrix-chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--keep-ggufs", action="store_true", help="keep every GGUF (default: delete each after its eval)")
    ap.add_argument("--no-cache", action="store_true", help="do not pass requantize --cache WORK/tensor-cache")
    ap.add_argument(
        "--ledger",
        type=Path,
        help="JSON record of finished evals, kept across machines: read at the start (entries whose SOURCE, imatrix "
        "and eval inputs match are not run again) and updated after each eval",
    )
    ap.add_argument("--write", type=Path, help="RESULTS.md to write the section into")
    ap.add_argument("--plot", type=Path, help="copy the report's kld_vs_size.png here")
    ns = ap.parse_args()

    from dsv4_gguf.config import preset
    from dsv4_gguf.synth import write_synthetic

    work = ns.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "commands.log"
    args = preset(ns.preset)
    if ns.experts:
        args = dataclasses.replace(args, n_routed_experts=ns.experts).validate()
    model = ns.preset + (f" with {ns.experts} experts" if ns.experts else "")
    ckpt, src = work / "ckpt", work / "SOURCE.gguf"
    if not src.exists():
        if not (ckpt / "config.json").exists():
            shutil.rmtree(ckpt, ignore_errors=True)
            write_synthetic(args, ckpt, seed=0)
        cli("convert", str(ckpt), "-o", str(src), "--type", "SOURCE", "--no-mtp", log=log)
    imatrix = work / "imatrix.gguf"
    if not imatrix.exists():
        cli("imatrix", str(src), "--text", str(CALIBRATION), "-o", str(imatrix), "--resume", "--ctx", str(ns.ctx),
            "--chunks", str(ns.imatrix_chunks), "--threads", str(ns.threads), log=log)  # fmt: skip
    text = work / "held_out.txt"
    held_out_text(text, 4000, seed=1)
    evald = ["--data", str(text), "--ref", str(src), "--ref-cache", str(work / "runs" / "ref")]
    evald += [
        "--ctx",
        str(ns.ctx),
        "--chunks",
        str(ns.chunks),
        "--n-ctx",
        str(2 * ns.ctx),
        "--threads",
        str(ns.threads),
    ]

    cache = [] if ns.no_cache else ["--cache", str(work / "tensor-cache")]
    ledger = Ledger(ns.ledger, fingerprint(src, imatrix, text, evald, ns)) if ns.ledger else None
    if ledger is not None:
        ledger.restore(work)

    skip = {s for s in ns.skip.split(",") if s}
    if ns.preset != "tiny":
        skip |= SKIP_BIG
    names = sorted((n for n in recipe_names() if n != "SOURCE" and n not in skip), key=slow)
    anchors = [a for a in ns.anchors.split(",") if a]
    for a in anchors:
        if a not in names:
            sys.exit(f"--anchors: {a} is not a recipe this run converts ({', '.join(names)})")

    def evaluate(name: str, gguf: Path, files: tuple[str, ...]) -> dict:
        run = work / "runs" / f"kld-{slug(name)}"
        if not (run / "results.json").exists():
            cli("eval", "kld", "--model", str(gguf), "--variant", name, "--out", str(run), *evald, log=log)
        res = json.loads((run / "results.json").read_text())
        if ledger is not None:
            ledger.record(name, run, {f: (work / f).read_text() for f in files})
        return {"variant": name, "run": str(run), **{k: res[k] for k in ("kld_mean", "kld_p99", "same_top_p")},
                "bpw": res["bpw"]}  # fmt: skip

    rows, sizes = [], {}
    t0 = time.perf_counter()
    for name in names:
        out = work / f"{slug(name)}.gguf"
        done = work / "runs" / f"kld-{slug(name)}" / "results.json"
        if not done.exists() and not out.exists():
            cli("requantize", str(src), str(out), "--type", name, "--imatrix", str(imatrix), "--resume", *cache,
                log=log)  # fmt: skip
        size = out.stat().st_size if out.exists() else json.loads((work / f"{slug(name)}.size").read_text())
        (work / f"{slug(name)}.size").write_text(json.dumps(size))
        sizes[name] = size
        row = evaluate(name, out, (f"{slug(name)}.size",))
        row["file_bytes"] = size
        rows.append(row)
        print(f"{name}: {size:,} B, mean KLD {row['kld_mean']:.5f}", flush=True)
        if not ns.keep_ggufs and out.exists():  # an anchor's budget is its size, recorded above
            out.unlink()

    from dsv4_gguf.quantize.target import RECIPE_KEY

    from dsv4_gguf.gguf_model import open_gguf

    fixed = list(rows)
    sens = ns.sensitivity
    if ns.scan and sens is None:
        sens = work / "sensitivity.json"
        if not sens.exists():
            cli("sensitivity", str(src), "--text", str(CALIBRATION), "--imatrix", str(imatrix), "-o", str(sens),
                "--resume", "--ctx", str(ns.ctx), "--max-tokens", str(ns.ctx * ns.imatrix_chunks), "--threads",
                str(ns.threads), log=log)  # fmt: skip
        if ledger is not None:
            ledger.keep(sens.name, sens.read_text())
    kinds = [("", [])] + ([("+sens", ["--sensitivity", str(sens)])] if sens else [])
    for a, (suffix, extra) in [(a, k) for k in kinds for a in anchors]:
        budget = sizes[a]
        tag, name = f"{slug(a)}{suffix}", f"target={a}{suffix}"
        out = work / f"target-{tag}.gguf"
        done = work / "runs" / f"kld-{slug(name)}" / "results.json"
        if not done.exists() and not out.exists():
            cli("requantize", str(src), str(out), "--type", a, "--imatrix", str(imatrix), "--resume", "--target-size",
                str(budget), "--write-recipe", str(work / f"target-{tag}.recipe.json"), *extra, *cache,
                log=log)  # fmt: skip
        if out.exists():
            size = out.stat().st_size
            if not 0.99 * budget <= size <= budget:
                sys.exit(f"{out}: {size:,} bytes, outside [99%, 100%] of the budget {budget:,}")
            planned = json.loads(open_gguf(out).metadata[RECIPE_KEY])
            if planned != json.loads((work / f"target-{tag}.recipe.json").read_text()):
                sys.exit(f"{out}: its {RECIPE_KEY} is not the recipe --write-recipe wrote")
            (work / f"target-{tag}.size").write_text(json.dumps(size))
        size = json.loads((work / f"target-{tag}.size").read_text())
        row = evaluate(name, out, (f"target-{tag}.size", f"target-{tag}.recipe.json"))
        row.update(file_bytes=size, budget=budget, closest=closest(size, fixed), sensitivity=bool(suffix))
        rows.append(row)
        print(f"{name}: {size:,} B ({100 * size / budget:.3f}% of {budget:,}), mean KLD {row['kld_mean']:.5f}; "
              f"closest fixed {row['closest']['variant']} {row['closest']['kld_mean']:.5f}", flush=True)  # fmt: skip
        if not ns.keep_ggufs and out.exists():
            out.unlink()

    report = work / "report"
    cli("eval", "report", *[r["run"] for r in rows], "--out", str(report), "--overwrite", log=log)
    from dsv4_gguf.eval.report import load_runs, pareto_front

    front = {r["run"] for r in pareto_front(load_runs([r["run"] for r in rows]))}
    for r in rows:
        r["pareto"] = r["run"] in front
        r.pop("run")
        if "closest" in r:
            r["closest"] = {k: r["closest"][k] for k in ("variant", "file_bytes", "kld_mean")}
    meta = {
        "model": model,
        "command": " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {ns.threads} threads",
        "eval": f"held-out seeded text, {ns.chunks} chunks x {ns.ctx} tokens",
        "imatrix": f"`dsv4-gguf imatrix` on SOURCE, {ns.imatrix_chunks} chunks x {ns.ctx} tokens of the shipped "
        "calibration text",
        "sensitivity": (
            f"`dsv4-gguf sensitivity` of SOURCE, {ns.imatrix_chunks} chunks x {ns.ctx} tokens of the calibration text"
            if ns.scan and not ns.sensitivity
            else (f"`{ns.sensitivity.name}`" if ns.sensitivity else None)
        ),
        "wall_s": round(time.perf_counter() - t0, 1),
        "skipped": sorted(skip),
        "notes": [],
    }
    if ns.plot and ns.write:
        meta["plot"] = os.path.relpath(ns.plot.resolve(), ns.write.resolve().parent)
    text_md = format_section(meta, rows)
    print(text_md)
    if ns.plot:
        shutil.copyfile(report / "kld_vs_size.png", ns.plot)
    if ns.write:
        sys.path.insert(0, str(Path(__file__).parent))
        import results_md

        results_md.write_section(ns.write, f"variants_kld_{slug(ns.preset)}", text_md, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
