"""Conversion throughput on a synthetic full-width checkpoint, next to a plain copy and llama.cpp's two-step path.

Generates a ``flash-slice`` checkpoint (full Flash widths; ``--experts`` can shrink the expert count when
disk or time is short) into a temporary folder, then in one run: copies the shard bytes (the floor),
converts to SOURCE, MXFP4_MOE and Q4_K_M (each in a fresh process: wall time, checkpoint GB/s, peak RSS),
and times the path a user has today: an MXFP4_MOE/Q8_0 GGUF (what llama.cpp's converter writes) then
llama-cpp-python's ``llama_model_quantize`` to Q4_K_M.  Every output is checked before its row counts, and
the run stops otherwise: SOURCE bit-exact on the tensors given by ``--verify``; in the other outputs every
tensor of those layers that the plan stores losslessly (MXFP4 experts, BF16/F32 tensors) bit-exact and
every other one finite; every output, llama-quantize's included, opened by ``open_gguf``.  How much of
each row's input was in the page cache before the row ran is measured (mincore), not assumed.  Not a unit
test.

    python benchmarks/convert.py --experts 64 --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import mmap
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results_md import write_section

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
GEN_STAMP = "ckpt.generated.json"  # in the work dir: how long the checkpoint took, for runs that reuse it


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


def page_cache_fraction(files: list[Path]) -> float:
    """Fraction of the pages of ``files`` that are in the page cache now: mincore(2) over a read-only mapping
    (which reads nothing, so the measurement does not change what it measures)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    failed = ctypes.c_void_p(-1).value
    total = resident = 0
    for f in files:
        size = f.stat().st_size
        if size == 0:
            continue
        pages = -(-size // mmap.PAGESIZE)
        fd = os.open(f, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == failed:
                raise OSError(ctypes.get_errno(), f"mmap of {f} for mincore failed")
            try:
                vec = np.zeros(pages, np.uint8)
                if libc.mincore(addr, size, vec.ctypes.data) != 0:
                    raise OSError(ctypes.get_errno(), f"mincore of {f} failed")
            finally:
                libc.munmap(addr, size)
        finally:
            os.close(fd)
        total += pages
        resident += int(np.count_nonzero(vec & 1))
    if total == 0:
        raise ValueError(f"page_cache_fraction: no bytes in {[str(f) for f in files]}")
    return resident / total


def check_outputs(out: Path, ck_dir: Path, variant: str, only: str, *, exact_all: bool) -> str:
    """Compare the tensors of ``out`` matching ``only`` with the checkpoint (`dsv4_gguf.quantize.verify`) and
    stop unless every one is finite and bit-exact where the converter's plan stores it losslessly (every one
    with ``exact_all``).  Returns a one-line summary."""
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe
    from dsv4_gguf.quantize.verify import verify

    from dsv4_gguf.checkpoint import Checkpoint
    from dsv4_gguf.gguf_model import open_gguf

    pat = re.compile(only)
    with Checkpoint(ck_dir) as ck:
        plan = make_plan(ck.args, load_recipe(variant), out, ckpt_dir=ck.path, mtp=False)
        lossless = {p.tensor.name: p.lossless for p in plan.entries}
        reps = verify(open_gguf(out, mtp=False), ck, only=pat)
    if not reps:
        raise SystemExit(f"{out.name}: no tensor matches --verify {only!r}; nothing was checked")
    bad = [r.name for r in reps if not np.isfinite(r.max_abs) or ((exact_all or lossless[r.name]) and not r.exact)]
    if bad:
        raise SystemExit(f"validation failed: {out.name}: {len(bad)} tensors off the checkpoint, e.g. {bad[:3]}")
    n_exact = sum(1 for r in reps if lossless[r.name] or exact_all)
    return f"{variant} on `{only}`: {n_exact} lossless tensors bit-exact, {len(reps) - n_exact} lossy ones finite"


def format_section(meta: dict, rows: list[dict]) -> str:
    """The RESULTS.md section of one run (without its markers).  ``rows``: ``what``, ``s``, ``rss`` (GB or
    None), ``cached`` (fraction of the row's input in the page cache before it ran, or None)."""
    copy_s = rows[0]["s"]
    total = meta["total_bytes"]
    gen = meta["generated_s"]
    lines = [
        "## Conversion (`benchmarks/convert.py`)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}, {meta['cpus']} CPUs, 1-minute load average {meta['load'][0]:.2f} before and "
        f"{meta['load'][1]:.2f} after the run; checkpoint: synthetic {meta['preset']} (dim {meta['dim']}, "
        f"{meta['n_layers']} layers + {meta['n_mtp_layers']} MTP, {meta['experts']} experts), "
        f"{total / 1e9:.2f} GB of tensors"
        + (
            f", generated in {gen:.0f} s"
            if not meta["reused"]
            else f" (generated in {gen:.0f} s by an earlier run, reused via --workdir)"
            if gen is not None
            else " (generated by an earlier run, reused via --workdir)"
        )
        + ". Each conversion is a fresh process; RSS = its peak; --no-mtp everywhere (llama.cpp's converter "
        "writes no MTP either). In page cache = the row's input (checkpoint shards; for llama-quantize the "
        "MXFP4_MOE GGUF) resident before the row ran (mincore). Validated, the run stops otherwise: "
        + "; ".join(meta["validated"])
        + "; every output opened by open_gguf.",
        "",
        "| what | time s | checkpoint GB/s | vs plain copy | peak RSS GB | in page cache |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = f"{r['rss']:.2f}" if r["rss"] is not None else "—"
        cached = f"{100 * r['cached']:.0f} %" if r["cached"] is not None else "—"
        lines.append(
            f"| {r['what']} | {r['s']:.1f} | {total / 1e9 / r['s']:.2f} | {r['s'] / copy_s:.2f}x | {rss} | {cached} |"
        )
    if meta.get("two_step") is not None:
        lines += [
            "",
            f"Single-pass Q4_K_M vs two-step: {meta['two_step'] / meta['t_q4']:.2f}x faster (experts kept MXFP4), "
            f"{meta['two_step'] / meta['t_q4e']:.2f}x with experts requantized to Q4_K as llama-quantize does.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="flash-slice", help="model preset (default flash-slice; tiny for a smoke run)")
    ap.add_argument("--experts", type=int, default=None, help="routed experts per layer (default: the preset's)")
    ap.add_argument("--workdir", default=None, help="where to put the checkpoint and outputs (default: a temp dir)")
    ap.add_argument("--verify", default=r"blk\.1\.", help="regex of GGUF tensors the outputs are verified on")
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
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = ap.parse_args(argv)

    base = PRESETS[ns.preset]
    args = dataclasses.replace(base, n_routed_experts=ns.experts or base.n_routed_experts).validate()
    work = Path(ns.workdir or tempfile.mkdtemp(prefix="dsv4-bench-convert-"))
    work.mkdir(parents=True, exist_ok=True)
    ck = work / "ckpt"
    cli = "import sys; from dsv4_gguf.cli import main; rc = main(sys.argv[1:]); sys.exit(rc)"
    rows: list[dict] = []
    validated: list[str] = []
    load_start = os.getloadavg()[0]
    try:
        from dsv4_gguf.synth import write_synthetic

        reused = ck.exists()
        if not reused:
            t = time.perf_counter()
            write_synthetic(args, ck, seed=0)
            gen: float | None = time.perf_counter() - t
            (work / GEN_STAMP).write_text(json.dumps({"seconds": gen}))
        else:
            stamp = work / GEN_STAMP
            gen = json.loads(stamp.read_text())["seconds"] if stamp.is_file() else None
        shards = sorted(ck.glob("*.safetensors"))
        total = json.loads((ck / "model.safetensors.index.json").read_text())["metadata"]["total_size"]
        cached = page_cache_fraction(shards)
        copy_s = _copy(ck, work / "copy")
        shutil.rmtree(work / "copy")
        rows.append({"what": "plain copy of the shard bytes", "s": copy_s, "rss": None, "cached": cached})

        def conv(variant: str, *extra: str, label: str | None = None, keep: bool = False) -> float:
            out = work / f"out-{variant}.gguf"
            cached = page_cache_fraction(shards)
            dt, rss = _run(
                cli, ["convert", str(ck), "-o", str(out), "--type", variant, "--overwrite", "--no-mtp", *extra]
            )
            from dsv4_gguf import open_gguf

            open_gguf(out)  # parses (main + sidecar)
            if not extra:  # the recipe as planned (an override changes which tensors are lossless)
                validated.append(check_outputs(out, ck, variant, ns.verify, exact_all=variant == "SOURCE"))
                print(validated[-1], flush=True)
            rows.append({"what": label or f"dsv4-gguf convert --type {variant}", "s": dt, "rss": rss, "cached": cached})
            if not keep:
                for p in work.glob(f"*out-{variant}*.gguf"):
                    p.unlink()
            return dt

        conv("SOURCE")
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
            src = work / "out-MXFP4_MOE.gguf"
            cached = page_cache_fraction([src])
            dt, rss = _run(code, [str(src), str(work / "lq.gguf")])
            from dsv4_gguf import open_gguf

            open_gguf(work / "lq.gguf")
            rows.append(
                {
                    "what": "llama_model_quantize MXFP4_MOE -> Q4_K_M (step 2 of the two-step path)",
                    "s": dt,
                    "rss": rss,
                    "cached": cached,
                }
            )
            two_step = t_mx + dt
            rows.append(
                {
                    "what": "two-step total (convert to MXFP4_MOE/Q8_0 + llama-quantize)",
                    "s": two_step,
                    "rss": None,
                    "cached": None,
                }
            )
        for p in work.glob("*.gguf"):
            p.unlink()
    finally:
        if not ns.keep and not ns.workdir:
            shutil.rmtree(work, ignore_errors=True)

    meta = {
        "command": "python benchmarks/convert.py " + " ".join(shlex.quote(a) for a in argv),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load": (load_start, os.getloadavg()[0]),
        "preset": ns.preset,
        "dim": args.dim,
        "n_layers": args.n_layers,
        "n_mtp_layers": args.n_mtp_layers,
        "experts": args.n_routed_experts,
        "total_bytes": total,
        "generated_s": gen,
        "reused": reused,
        "validated": validated,
        "two_step": two_step,
        "t_q4": t_q4,
        "t_q4e": t_q4e,
    }
    text = format_section(meta, rows)
    print(text)
    if ns.write:
        write_section(Path(ns.write), ns.section, text, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
