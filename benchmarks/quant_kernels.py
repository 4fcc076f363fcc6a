"""Quant-kernel benchmark: dsv4-gguf's kernels vs ggml (llama-cpp-python's libggml) in the same run.

For every type: validate first (bytes vs ggml_quantize_chunk, round-trip RMSE side by side, dequant
bit-exactness, dot agreement), then time quantize (1 thread, and all threads vs ggml on as many
threads), dequantize (1 thread) and the dot product (1 thread, one long row: the weight row . the
quantized activation), and report throughput and ours/ggml ratios.  Single-thread timings use process
CPU time (the machine is shared), multi-thread ones wall time; each is the best of --repeat runs,
ours and ggml interleaved.  The peer is llama.cpp's native build (benchmarks/build_native_peer.sh;
--peer portable: the AVX2-only build of the tests); the table names its flags and this CPU's SIMD.
Targets (quantize ratio ours/ggml, 1 thread and all threads) are checked one by one and printed per type.

    python benchmarks/quant_kernels.py --write benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from llama_peer import cpu_simd, describe, load_llama_cpp
from results_md import markers, write_section

from dsv4_gguf import _C, quants
from dsv4_gguf.constants import QTYPES

ROOT = Path(__file__).resolve().parents[1]
TYPES = [
    T.F16,
    T.BF16,
    T.Q8_0,
    T.Q4_0,
    T.Q4_1,
    T.Q5_0,
    T.Q5_1,
    T.IQ4_NL,
    T.MXFP4,
    T.Q2_K,
    T.Q3_K,
    T.Q4_K,
    T.Q5_K,
    T.Q6_K,
    T.IQ4_XS,
    T.IQ2_XXS,
    T.IQ3_XXS,
    T.IQ3_S,
    T.IQ2_XS,
    T.IQ2_S,
    T.IQ1_S,
    T.IQ1_M,
]
TARGET = {T.Q8_0: 1.0, T.Q4_K: 1.0, T.Q6_K: 1.0, T.MXFP4: 1.0}
TARGET_OTHERS = 0.8
DOT_RTOL = 1e-4  # ours vs ggml's vec_dot, of sum |w * a| (fp32 sums of the same per-block dots in another order)
SECTION = "quant_kernels"
BEGIN, END = markers(SECTION)


def load_peer(kind: str):
    """ggml of the ``kind`` llama-cpp-python build (ctypes, benchmarks/ggml_peer.py) and its description."""
    _, info = load_llama_cpp(kind)  # puts the chosen build first: ggml_peer.load() imports that llama_cpp
    import ggml_peer

    peer = ggml_peer.load()
    if peer is None:
        sys.exit(f"llama_cpp from {info['path']} has no lib/libggml-base.so: rebuild it")
    return peer, info


def target_checks(results: list[dict], threads: int) -> list[dict]:
    """One entry per (type, target): the quantize ratio ours/ggml at 1 thread and at ``threads`` threads
    against the type's target; every target printed is one of these."""
    checks = []
    for r in results:
        want = TARGET.get(T[r["type"]], TARGET_OTHERS)
        for label, ours, theirs in (
            ("1T", r["q_mbps_ours"], r["q_mbps_ggml"]),
            (f"{threads}T", r["qmt_mbps_ours"], r["qmt_mbps_ggml"]),
        ):
            ratio = ours / theirs
            checks.append({"type": r["type"], "threads": label, "ratio": ratio, "target": want, "met": ratio >= want})
    return checks


def targets_text() -> str:
    """The targets as `target_checks` applies them (from TARGET / TARGET_OTHERS)."""
    by_value: dict[float, list[str]] = {}
    for t, v in TARGET.items():
        by_value.setdefault(v, []).append(t.name)
    parts = [f">= {v} for {', '.join(names)}" for v, names in by_value.items()]
    return "; ".join(parts + [f">= {TARGET_OTHERS} for the rest"])


def best_of(fns, repeat: int, clock) -> list[float]:
    """Interleave the callables `repeat` times; best time of each."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t0 = clock()
            f()
            best[i] = min(best[i], clock() - t0)
    return best


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a.astype(np.float64) - b))))


def bench_type(g, qtype: T, x: np.ndarray, repeat: int, threads: int) -> dict:
    rows, cols = x.shape
    im = quants.weight_energy(x) if QTYPES[qtype].needs_imatrix else None
    mb = x.nbytes / 1e6
    # ---- validate
    ours = quants.quantize(x, qtype, im).view(np.uint8).reshape(rows, -1)
    theirs = g.quantize(x, qtype, im)
    bytes_equal = bool(np.array_equal(ours, theirs))
    deq = quants.dequantize(ours, qtype)
    deq_g = g.dequantize(ours, qtype, cols)
    r = {
        "type": qtype.name,
        "bytes_equal": bytes_equal,
        "rmse_ours": rmse(deq, x),
        "rmse_ggml": rmse(g.dequantize(theirs, qtype, cols), x),
        "dequant_bit_exact": bool(np.array_equal(deq.view(np.uint32), deq_g.view(np.uint32))),
    }
    # the kernels run ggml's algorithms (tests/quant/test_quantize_vs_ggml.py): anything but identical bytes and
    # bit-identical dequantization is a defect, and nothing is timed
    if not bytes_equal:
        n = int(np.count_nonzero(ours != theirs))
        raise SystemExit(f"validation failed: {qtype.name}: {n} bytes differ from ggml_quantize_chunk; nothing timed")
    if not r["dequant_bit_exact"]:
        raise SystemExit(f"validation failed: {qtype.name}: dequantization differs from ggml's to_float")
    assert r["rmse_ours"] <= r["rmse_ggml"], f"{qtype.name}: RMSE worse than ggml"
    # ---- quantize
    t_o, t_g = best_of(
        [lambda: quants.quantize(x, qtype, im, threads=1), lambda: g.quantize(x, qtype, im)], repeat, time.process_time
    )
    r["q_mbps_ours"], r["q_mbps_ggml"] = mb / t_o, mb / t_g
    t_o, t_g = best_of(
        [lambda: quants.quantize(x, qtype, im, threads=threads), lambda: g.quantize_threads(x, qtype, im, threads)],
        repeat,
        time.perf_counter,
    )
    r["qmt_mbps_ours"], r["qmt_mbps_ggml"] = mb / t_o, mb / t_g
    # ---- dequantize
    t_o, t_g = best_of(
        [lambda: quants.dequantize(ours, qtype, threads=1), lambda: g.dequantize(ours, qtype, cols)],
        repeat * 2,
        time.process_time,
    )
    r["dq_mbps_ours"], r["dq_mbps_ggml"] = mb / t_o, mb / t_g
    # ---- dot: one row of rows*cols elements against the tiled activation in the vec_dot format
    if qtype in (T.F16, T.BF16):
        r["dot_gelems_ours"] = r["dot_gelems_ggml"] = None
        return r
    n = rows * cols
    v = np.random.default_rng(3).standard_normal(cols).astype(np.float32)
    at = QTYPES[qtype].vec_dot_type
    act = np.ascontiguousarray(np.tile(quants.quantize(v[None], at).view(np.uint8), (rows, 1)))
    act_g, vt = g.quantize_activation(v, qtype)
    assert vt == int(at), f"{qtype.name}: ggml dots with type {vt}, we with {at.name}"
    act_g = np.ascontiguousarray(np.tile(act_g, rows))
    w = ours.reshape(-1)
    d_o = _C.vec_dot(int(qtype), w, act, n)
    d_g = g.vec_dot(int(qtype), w, act_g, n)
    scale = float(np.abs(deq).reshape(-1) @ np.abs(np.tile(v, rows)))
    assert abs(d_o - d_g) <= DOT_RTOL * scale, f"{qtype.name}: dot {d_o} vs ggml {d_g}"
    t_o, t_g = best_of(
        [lambda: _C.vec_dot(int(qtype), w, act, n), lambda: g.vec_dot(int(qtype), w, act_g, n)],
        repeat * 2,
        time.process_time,
    )
    r["dot_gelems_ours"], r["dot_gelems_ggml"] = n / t_o / 1e9, n / t_g / 1e9
    return r


def table(results: list[dict], threads: int) -> str:
    def ratio(a, b):
        return "—" if a is None else f"{a / b:.2f}"

    def fmt(v):
        return "—" if v is None else f"{v:.0f}"

    lines = [
        f"| type | bytes = ggml | RMSE ours | RMSE ggml | quant MB/s ours (1T) | ggml (1T) | ratio 1T | "
        f"ratio {threads}T vs ggml {threads}T | dequant = ggml | dequant MB/s ours | ratio | "
        "dot Gelem/s ours | ggml | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        dot, dot_g = r["dot_gelems_ours"], r["dot_gelems_ggml"]
        dot_s = "— | — | —" if dot is None else f"{dot:.2f} | {dot_g:.2f} | {dot / dot_g:.2f}"
        lines.append(
            f"| {r['type']} | {'yes' if r['bytes_equal'] else 'no'} | {r['rmse_ours']:.5f} | {r['rmse_ggml']:.5f} | "
            f"{fmt(r['q_mbps_ours'])} | {fmt(r['q_mbps_ggml'])} | {ratio(r['q_mbps_ours'], r['q_mbps_ggml'])} | "
            f"{ratio(r['qmt_mbps_ours'], r['qmt_mbps_ggml'])} | {'yes' if r['dequant_bit_exact'] else 'no'} | "
            f"{fmt(r['dq_mbps_ours'])} | "
            f"{ratio(r['dq_mbps_ours'], r['dq_mbps_ggml'])} | "
            f"{dot_s} |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def verdict_text(checks: list[dict]) -> str:
    misses = [f"{c['type']} {c['threads']} ({c['ratio']:.2f} < {c['target']})" for c in checks if not c["met"]]
    if not misses:
        return f"All {len(checks)} met in this run."
    return f"Missed in this run ({len(misses)} of {len(checks)}): {', '.join(misses)}."


def section_text(meta: dict, results: list[dict]) -> str:
    """The RESULTS.md section (between its markers) of one run: ``meta`` (command, machine, load, sizes, peer)
    and the per-type ``results`` of `bench_type`; the target verdict is computed here from ``results``."""
    th = meta["threads"]
    return "\n".join(
        [
            "## Quant kernels vs ggml (`benchmarks/quant_kernels.py`)",
            "",
            f"Command: `{meta['command']}`  ",
            f"Machine: {meta['cpu_model']}, {meta['cpus']} CPUs, 1-minute load average {meta['load'][0]:.2f} before "
            f"and {meta['load'][1]:.2f} after the run; kernels: {meta['kernel_impl']}; data: N(0,1) "
            f"[{meta['rows']}, {meta['cols']}] f32; IQ2_XXS with the weight-energy imatrix for both.  ",
            "MB/s are of f32 data in/out. 1T columns: one thread each, process CPU time (best of "
            f"{meta['repeat']}). {th}T: ours with {th} threads vs ggml_quantize_chunk on {th} row chunks in "
            "parallel (as llama-quantize runs it), wall time. "
            "Dot: one row of rows*cols elements with the activation in the type's vec_dot format (Q8_0/Q8_K), "
            "Gelem/s. Validated before timing, the run stops otherwise: bytes identical to ggml_quantize_chunk's, "
            "dequantization bit-identical to ggml's to_float, round-trip RMSE not above ggml's, dots within "
            f"{DOT_RTOL:g} * sum |w*a| of ggml's vec_dot.  ",
            meta["peer_line"].replace("\n", "  \n"),
            "",
            table(results, th),
            "",
            f"Targets (quantize ratio ours/ggml, 1T and {th}T, each checked): {targets_text()}. "
            + verdict_text(target_checks(results, th)),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--types", default=",".join(t.name for t in TYPES))
    ap.add_argument(
        "--peer",
        choices=("native", "portable"),
        default="native",
        help="llama.cpp build: native (benchmarks/build_native_peer.sh, default) or portable (AVX2)",
    )
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    ap.add_argument("--write", type=Path, help="replace the quant_kernels section of this markdown file")
    args = ap.parse_args(argv)
    g, peer_info = load_peer(args.peer)
    peer_line = describe(peer_info, cpu_simd())
    print(peer_line, flush=True)
    load_start = os.getloadavg()[0]
    x = np.random.default_rng(0).standard_normal((args.rows, args.cols)).astype(np.float32)
    results = []
    for name in args.types.split(","):
        qtype = T[name]
        r = bench_type(g, qtype, x, args.repeat, args.threads)
        results.append(r)
        print(
            f"{name:8s} bytes={'=' if r['bytes_equal'] else '≠'} rmse {r['rmse_ours']:.5f}/{r['rmse_ggml']:.5f}  "
            f"quant 1T {r['q_mbps_ours']:8.1f} vs {r['q_mbps_ggml']:8.1f} MB/s "
            f"({r['q_mbps_ours'] / r['q_mbps_ggml']:.2f}x)  "
            f"{args.threads}T {r['qmt_mbps_ours'] / r['qmt_mbps_ggml']:.2f}x  "
            f"dequant {r['dq_mbps_ours'] / r['dq_mbps_ggml']:.2f}x"
            + ("" if r["dot_gelems_ours"] is None else f"  dot {r['dot_gelems_ours'] / r['dot_gelems_ggml']:.2f}x"),
            flush=True,
        )
    load_end = os.getloadavg()[0]
    cmd = "python benchmarks/quant_kernels.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {
        "command": cmd.strip(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "load": [load_start, load_end],
        "kernel_impl": _C.build_info()["kernel_impl"],
        "rows": args.rows,
        "cols": args.cols,
        "repeat": args.repeat,
        "threads": args.threads,
        "peer_line": peer_line,
    }
    checks = target_checks(results, args.threads)
    verdict = verdict_text(checks)
    print("\n" + table(results, args.threads))
    for c in checks:
        print(
            f"target {c['type']:8s} {c['threads']:>3s} quantize ratio {c['ratio']:.2f} >= {c['target']}: "
            + ("met" if c["met"] else "MISSED")
        )
    print(verdict)
    if args.json:
        args.json.write_text(json.dumps({"peer": peer_info, "results": results, "targets": checks}, indent=1))
    if args.write:
        write_section(args.write, SECTION, section_text(meta, results), {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
