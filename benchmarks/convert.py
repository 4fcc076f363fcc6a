"""Conversion throughput on a synthetic full-width checkpoint, next to a plain copy and llama.cpp's two-step path.

Generates a ``flash-slice`` checkpoint (full Flash widths; ``--experts`` can shrink the expert count when
disk or time is short) into a temporary folder, then in one run: copies the shard bytes (the floor),
converts to SOURCE, MXFP4_MOE and Q4_K_M (each in a fresh process: wall time, checkpoint GB/s, peak RSS),
and times the path a user has today: an MXFP4_MOE/Q8_0 GGUF (what llama.cpp's converter writes) then
llama-cpp-python's ``llama_model_quantize`` to Q4_K_M.  Validates before timing counts: SOURCE is
verified bit-exact on the layers given by ``--verify``, every output parses.  Not a unit test.

    python benchmarks/convert.py --experts 64 --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dsv4_gguf.config import PRESETS

# Peak RSS is read by the child itself (VmHWM of its own address space): ru_maxrss from wait4 would
# include the parent's memory copied at fork, which survives exec.
_HWM = (
    "import atexit, os\n"
    "def _hwm():\n"
    "    kb = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
    "    open(os.environ['DSV4_BENCH_HWM'], 'w').write(kb)\n"
    "atexit.register(_hwm)\n"
)


def _run(code: str, argv: list[str]) -> tuple[float, float]:
    """Run Python ``code`` with ``argv`` in a fresh process; wall seconds and its peak RSS in GB."""
    with tempfile.TemporaryFile() as log, tempfile.NamedTemporaryFile() as hwm:  # log: a file, not a pipe
        env = dict(os.environ, DSV4_BENCH_HWM=hwm.name)
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", _HWM + code, *argv], stdout=subprocess.DEVNULL, stderr=log, env=env)
        dt = time.perf_counter() - t
        log.seek(0)
        err = log.read().decode(errors="replace")
        if p.returncode != 0:
            raise SystemExit(f"failed ({p.returncode}): {argv}\n{err[-3000:]}")
        return dt, int(Path(hwm.name).read_text()) * 1024 / 1e9


def _copy(src: Path, dst: Path) -> float:
    dst.mkdir()
    t = time.perf_counter()
    for f in sorted(src.glob("*.safetensors")):
        shutil.copyfile(f, dst / f.name)
    os.sync()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="flash-slice", help="model preset (default flash-slice; tiny for a smoke run)")
    ap.add_argument("--experts", type=int, default=None, help="routed experts per layer (default: the preset's)")
    ap.add_argument("--workdir", default=None, help="where to put the checkpoint and outputs (default: a temp dir)")
    ap.add_argument("--verify", default=r"blk\.1\.", help="regex of GGUF tensors SOURCE is verified on")
    ap.add_argument("--write", metavar="RESULTS.md", help="replace this benchmark's section in RESULTS.md")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--skip-two-step",
        action="store_true",
        help="skip the llama-quantize two-step path and the Q4_K-experts row (the slow rows: ~40 min at "
        "256 experts on 2 cores); the ratio then comes from a smaller --experts run",
    )
    ap.add_argument("--section", default="convert", help="RESULTS.md section marker to replace (default convert)")
    ap.add_argument(
        "--keep-outputs",
        metavar="DIR",
        help="move the MXFP4_MOE and Q4_K_M outputs here (e.g. for benchmarks/runtime.py --flash-slice)",
    )
    ns = ap.parse_args()

    base = PRESETS[ns.preset]
    args = dataclasses.replace(base, n_routed_experts=ns.experts or base.n_routed_experts).validate()
    work = Path(ns.workdir or tempfile.mkdtemp(prefix="dsv4-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    ck = work / "ckpt"
    py = [sys.executable, "-m", "dsv4_gguf.cli"]
    cli = "import sys; from dsv4_gguf.cli import main; rc = main(sys.argv[1:]); sys.exit(rc)"
    rows: list[dict] = []
    try:
        from dsv4_gguf.synth import write_synthetic

        t = time.perf_counter()
        if not ck.exists():
            write_synthetic(args, ck, seed=0)
        gen = time.perf_counter() - t
        total = json.loads((ck / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
        copy_s = _copy(ck, work / "copy")
        shutil.rmtree(work / "copy")
        rows.append({"what": "plain copy of the shard bytes", "s": copy_s, "rss": None})

        def conv(variant: str, *extra: str, label: str | None = None, keep: bool = False) -> float:
            out = work / f"out-{variant}.gguf"
            dt, rss = _run(
                cli, ["convert", str(ck), "-o", str(out), "--type", variant, "--overwrite", "--no-mtp", *extra]
            )
            from dsv4_gguf import open_gguf

            open_gguf(out)  # parses (main + sidecar)
            rows.append({"what": label or f"dsv4-gguf convert --type {variant}", "s": dt, "rss": rss})
            if not keep:
                for p in work.glob(f"*out-{variant}*.gguf"):
                    p.unlink()
            return dt

        conv("SOURCE", keep=True)
        # validate: bit-exact on the chosen layers
        out = subprocess.run(
            [*py, "verify", str(work / "out-SOURCE.gguf"), "--against", str(ck), "--only", ns.verify],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        line = [ln for ln in out.splitlines() if ln.startswith("bit-exact:")][0]
        n, m = line.split()[1].split("/")
        if n != m:
            raise SystemExit(f"SOURCE not bit-exact: {line}")
        for p in work.glob("*out-SOURCE*.gguf"):
            p.unlink()
        t_mx = conv("MXFP4_MOE", keep=True)
        t_q4 = conv("Q4_K_M", keep=bool(ns.keep_outputs))
        if ns.keep_outputs:
            dest = Path(ns.keep_outputs)
            dest.mkdir(parents=True, exist_ok=True)
            for v in ("MXFP4_MOE", "Q4_K_M"):
                for p in work.glob(f"*out-{v}*.gguf"):
                    target = dest / p.name.replace("out-", f"{ns.preset}-")
                    # the two-step path still needs the MXFP4_MOE file in the work dir
                    (shutil.move if ns.skip_two_step else shutil.copyfile)(p, target)
        two_step = t_q4e = None
        if not ns.skip_two_step:
            t_q4e = conv(
                "Q4_K_M",
                "--tensor-type",
                "_exps=q4_k",
                label="dsv4-gguf convert --type Q4_K_M --tensor-type _exps=q4_k (experts requantized too)",
            )
            # two-step: llama.cpp's converter output (MXFP4 experts + Q8_0, = our MXFP4_MOE) -> llama-quantize Q4_K_M
            code = (
                "import llama_cpp,sys; p=llama_cpp.llama_model_quantize_default_params(); p.ftype=15; "
                f"p.nthread={os.cpu_count()}; p.allow_requantize=True; "
                "rc = llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p); sys.exit(rc)"
            )
            dt, rss = _run(code, [str(work / "out-MXFP4_MOE.gguf"), str(work / "lq.gguf")])
            rows.append(
                {"what": "llama_model_quantize MXFP4_MOE -> Q4_K_M (step 2 of the two-step path)", "s": dt, "rss": rss}
            )
            two_step = t_mx + dt
            rows.append(
                {"what": "two-step total (convert to MXFP4_MOE/Q8_0 + llama-quantize)", "s": two_step, "rss": None}
            )
        for p in work.glob("*.gguf"):
            p.unlink()
    finally:
        if not ns.keep and not ns.workdir:
            shutil.rmtree(work, ignore_errors=True)

    copy_s = rows[0]["s"]
    lines = [
        "## Conversion (`benchmarks/convert.py`)",
        "",
        f"Command: `python benchmarks/convert.py --preset {ns.preset} --experts {args.n_routed_experts}"
        + (" --skip-two-step" if ns.skip_two_step else "")
        + "`  ",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs); "
        f"checkpoint: synthetic {ns.preset} (dim {args.dim}, {args.n_layers} layers + {args.n_mtp_layers} MTP, "
        f"{args.n_routed_experts} experts), {total / 1e9:.2f} GB of tensors"
        + (f", generated in {gen:.0f} s. " if gen > 1 else " (reused from --workdir). ")
        + "Page cache warm for all rows (the copy runs first). Each conversion is a fresh process; RSS = its peak; "
        "--no-mtp everywhere (llama.cpp's converter writes no MTP either). "
        f"Validated first: SOURCE bit-exact on `{ns.verify}`, every output parsed by open_gguf.",
        "",
        "| what | time s | checkpoint GB/s | vs plain copy | peak RSS GB |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        rss = f"{r['rss']:.2f}" if r["rss"] is not None else "—"
        lines.append(f"| {r['what']} | {r['s']:.1f} | {total / 1e9 / r['s']:.2f} | {r['s'] / copy_s:.2f}x | {rss} |")
    if two_step is not None:
        lines += [
            "",
            f"Single-pass Q4_K_M vs two-step: {two_step / t_q4:.2f}x faster (experts kept MXFP4), "
            f"{two_step / t_q4e:.2f}x with experts requantized to Q4_K as llama-quantize does.",
        ]
    text = "\n".join(lines)
    print(text)
    if ns.write:
        p = Path(ns.write)
        cur = p.read_text() if p.exists() else "# Benchmark results\n"
        begin, end = f"<!-- {ns.section}:begin -->", f"<!-- {ns.section}:end -->"
        block = f"{begin}\n{text}\n{end}"
        if begin in cur:
            cur = cur[: cur.index(begin)] + block + cur[cur.index(end) + len(end) :]
        else:
            cur = cur.rstrip("\n") + "\n\n" + block + "\n"
        p.write_text(cur)
    return 0


if __name__ == "__main__":
    sys.exit(main())
