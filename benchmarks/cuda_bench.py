"""CUDA benchmark (issue 10): achieved HBM bandwidth of the routed-expert GEMV and the dense GEMV next to the
device-to-device copy ceiling; decode (and step-wise prefill) tokens/s of the CUDA runtime on flash-slice
GGUFs at the requested contexts, with the CPU runtime and, where it is built with GPU offload, llama.cpp
(llama-cpp-python) on the same GGUF as peers.  Validates before timing, and stops when a check fails: every
GEMV output (each type on a small matrix, then the timed matrices themselves: every row of each dense one,
six experts of the routed one, the last included) against float64 products of the CPU dequantization within
the ``cuda_gemv`` tolerance; the model's logits against the CPU runtime in exact mode on the same GGUF (the
math the CUDA backend implements): same top-1 at every position, correlation >= 0.999, and within the
``chunking_qat`` tolerance (dsv4_gguf/reference/tolerances.py).

The flash-slice GGUFs are written once into --gguf-dir by benchmarks/synth_gguf.py ``write_pooled``: the
converter's plan (names, types, metadata, tokenizer) with rows drawn from a pool of pre-quantized rows.

Usage: python benchmarks/cuda_bench.py [--gguf-dir DIR] [--variants MXFP4_MOE Q4_K_M] [--ctx 4096 65536]
                                       [--budget-s 300] [--json OUT] [--kernels-only]
Contexts whose step-wise prefill would not fit the remaining budget (estimated from the measured step
rate) are reported as skipped, never silently dropped.  Needs a CUDA device (exits 2 without one).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q

from dsv4_gguf.constants import QTYPES

HERE = Path(__file__).resolve().parent
TYPES = {t.name: int(t) for t in (Q.MXFP4, Q.Q8_0, Q.Q4_K, Q.Q6_K, Q.BF16)}


def random_blocks(qtype: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid ggml blocks of random codes with sane scales (every byte still read by the kernel)."""
    info = QTYPES[Q(qtype)]
    elems, nbytes = info.block_size, info.type_size
    w = rng.integers(0, 256, (rows, cols // elems, nbytes), dtype=np.uint8)
    if qtype == 39:
        w[..., 0] = rng.integers(118, 124, w.shape[:2])  # E8M0 scale around 2^-7
    elif qtype == 8:
        w[..., 1] = 0x1C  # fp16 d ~ 2^-8
    elif qtype == 12:
        w[..., 1] = 0x1C
        w[..., 3] = 0x1C
    elif qtype == 14:
        w[..., 209] = 0x1C
    elif qtype == 30:
        w[..., 1::2] = 0x3C  # bf16 exponents around 2^-7
    return w.reshape(rows, -1)


def _tolerance(key: str):
    from dsv4_gguf.reference.tolerances import TOLERANCES  # the parity tests' table (imports torch)

    return TOLERANCES[key]


def gemv_reference(qtype: int, w: np.ndarray, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """float64 ``x @ W[rows].T`` from the CPU dequantization of the raw blocks ``w`` (row blocks of 4096, so a
    1 GB matrix is never dequantized whole)."""
    from dsv4_gguf import _C

    idx = np.arange(w.shape[0]) if rows is None else np.asarray(rows)
    out = np.empty((x.shape[0], idx.size))
    xd = x.astype(np.float64)
    for r0 in range(0, idx.size, 4096):
        blk = np.ascontiguousarray(w[idx[r0 : r0 + 4096]])
        wd = _C.dequantize_rows(qtype, blk).reshape(blk.shape[0], -1).astype(np.float64)
        out[:, r0 : r0 + blk.shape[0]] = xd @ wd.T
    return out


def check_gemv(got: np.ndarray, ref: np.ndarray, what: str) -> float:
    """Raise unless ``got`` is within the ``cuda_gemv`` tolerance of ``ref``, both scaled by ``max |ref|`` (the
    entry is stated for |y| = O(1); random blocks give other magnitudes).  Returns the worst error / bound."""
    tol = _tolerance("cuda_gemv")
    s = float(np.abs(ref).max()) or 1.0
    g, r = np.asarray(got, np.float64) / s, np.asarray(ref, np.float64) / s
    if g.shape != r.shape or not np.isfinite(g).all():
        raise AssertionError(f"{what}: CUDA GEMV output has shape {g.shape} (want {r.shape}) or non-finite values")
    ratio = float((np.abs(g - r) / (tol.atol + tol.rtol * np.abs(r))).max())
    if ratio > 1.0:
        raise AssertionError(
            f"{what}: CUDA GEMV differs from the CPU dequantization by {ratio:.3g}x the cuda_gemv bound "
            f"(atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|, relative to max |ref| {s:.3g})"
        )
    return ratio


def check_logits(got: np.ndarray, ref: np.ndarray, what: str, min_corr: float = 0.999) -> dict:
    """CUDA logits [tokens, vocab] against the CPU runtime's exact mode: finite, the same top-1 at every
    position, correlation >= ``min_corr`` at every position, and every element within the ``chunking_qat``
    tolerance (reduction order + an occasional QAT grid step).  Raises naming the first failure; returns
    the figures."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape or not np.isfinite(got).all():
        raise AssertionError(f"{what}: CUDA logits have shape {got.shape} (want {ref.shape}) or non-finite values")
    top1 = got.argmax(-1) == ref.argmax(-1)
    corr = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(got, ref, strict=True)]
    tol = _tolerance("chunking_qat")
    err = np.abs(got - ref)
    ratio = float((err / (tol.atol + tol.rtol * np.abs(ref))).max())
    res = {
        "top1_equal": bool(top1.all()),
        "min_corr": min(corr),
        "max_abs_err": float(err.max()),
        "worst_vs_chunking_qat": ratio,
    }
    if not top1.all():
        i = int(np.flatnonzero(~top1)[0])
        raise AssertionError(
            f"{what}: top-1 differs from the CPU runtime (exact) at position {i}: {int(got[i].argmax())} vs "
            f"{int(ref[i].argmax())}"
        )
    if not min(corr) >= min_corr:
        raise AssertionError(f"{what}: logit correlation {min(corr):.6f} with the CPU runtime (need >= {min_corr})")
    if ratio > 1.0:
        raise AssertionError(
            f"{what}: logits differ from the CPU runtime (exact) by up to {res['max_abs_err']:.3g}, {ratio:.3g}x the "
            f"chunking_qat bound (atol {tol.atol:g} + rtol {tol.rtol:g}*|ref|)"
        )
    return res


def bench_kernels(iters: int) -> dict:
    from dsv4_gguf import _C

    rng = np.random.default_rng(0)
    out: dict = {}
    worst = []  # each check's worst error / bound
    nbytes = 2 << 30
    t = _C.cuda_hooks.time_copy(nbytes, 10)
    out["copy_GB_s"] = 2 * nbytes / t / 1e9  # read + write
    # validate every type on a small matrix first
    for name, qt in TYPES.items():
        w = random_blocks(qt, 64, 4096, rng)
        x = rng.standard_normal((1, 4096)).astype(np.float32) / 64
        worst.append(check_gemv(_C.cuda_hooks.gemv(qt, w, x), gemv_reference(qt, w, x), f"{name} 64 x 4096"))
    # routed experts, Flash shapes: w1/w3 [256 x 2048 rows, 4096], MXFP4 (1.14 GB, > 20x L2)
    E, I, D = 256, 2048, 4096
    w = random_blocks(39, E * I, D, rng)
    # the timed tensor itself: six slots, the first, middle and last expert among them (offsets past 1 GB)
    ids = np.array([0, E // 2, E - 1, 7, 200, 31], np.int32)
    x = rng.standard_normal((ids.size, D)).astype(np.float32) / 64
    got = _C.cuda_hooks.moe_gemv(39, w, I, ids, x)
    for i, e in enumerate(ids):
        ref = gemv_reference(39, w, x[i : i + 1], np.arange(e * I, (e + 1) * I))[0]
        worst.append(check_gemv(got[i], ref, f"routed MXFP4 {E} x {I} x {D}, slot {i} expert {e}"))
    row_bytes = w.shape[1]
    ids_all = np.tile(np.arange(E, dtype=np.int32), (iters, 1))
    t = _C.cuda_hooks.time_moe_gemv(39, w, I, D, ids_all)
    out["moe_all_experts"] = {"GB_s": E * I * row_bytes / t / 1e9, "us": t * 1e6, "slots": E}
    # decode-shaped: 6 experts per launch, a fresh random set each launch (no L2 reuse across launches)
    ids6 = np.stack([rng.choice(E, 6, replace=False) for _ in range(max(iters, 200))]).astype(np.int32)
    t = _C.cuda_hooks.time_moe_gemv(39, w, I, D, ids6)
    out["moe_decode_k6"] = {"GB_s": 6 * I * row_bytes / t / 1e9, "us": t * 1e6, "slots": 6}
    del w
    # dense projections: 32768 x 4096 of each type (>= 256 MB in MXFP4 ... 1 GB in Q8_0: beyond L2)
    for name, qt in TYPES.items():
        w = random_blocks(qt, 32768, 4096, rng)
        x = rng.standard_normal((8, 4096)).astype(np.float32) / 64
        ref = gemv_reference(qt, w, x)
        worst.append(check_gemv(_C.cuda_hooks.gemv(qt, w, x), ref, f"{name} 32768 x 4096, 8 vectors"))
        for n_vec in (1, 8):
            t = _C.cuda_hooks.time_gemv(qt, w, 4096, n_vec, iters)
            out[f"gemv_{name}_n{n_vec}"] = {"GB_s": w.nbytes / t / 1e9, "us": t * 1e6}
    for v in out.values():
        if isinstance(v, dict):
            v["frac_of_copy"] = v["GB_s"] / out["copy_GB_s"]
    out["validate_checks"], out["validate_worst_vs_cuda_gemv"] = len(worst), max(worst)
    return out


def llama_peer(path: Path, n_prompt: int, n_decode: int) -> dict:
    try:
        import llama_cpp
    except ImportError:
        return {"peer": "unavailable: llama_cpp is not installed on this machine"}
    if not llama_cpp.llama_supports_gpu_offload():
        return {"peer": "unavailable: this llama-cpp-python build has no GPU offload (needs -DGGML_CUDA=on)"}
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_prompt + n_decode + 8, n_gpu_layers=-1, verbose=False)
    toks = list(range(1, n_prompt + 1))
    t0 = time.perf_counter()
    llm.eval(toks)
    t_pf = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(n_decode):
        llm.eval([i + 1])
    t_dec = time.perf_counter() - t0
    return {"peer": "llama.cpp CUDA", "prefill_tok_s": n_prompt / t_pf, "decode_tok_s": n_decode / t_dec}


def bench_model(path: Path, ctxs: list[int], n_decode: int, deadline: float) -> dict:
    from dsv4_gguf import runtime

    rng = np.random.default_rng(0)
    res: dict = {"gguf": path.name, "bytes": path.stat().st_size}
    t0 = time.perf_counter()
    gpu = runtime.load(path, device="cuda")
    res["load_upload_s"] = time.perf_counter() - t0
    res["device_weight_bytes"] = gpu._cuda.device_bytes
    # validate: the first tokens' logits against the CPU runtime's exact mode (the math of the CUDA backend)
    cpu = runtime.load(path, exact=True)
    toks = rng.integers(0, 1000, 8).tolist()
    ref = cpu.session(ctx=16).prefill(toks, all_logits=True)
    got = gpu.session(ctx=16).prefill(toks, all_logits=True)
    res["validate"] = check_logits(got, ref, f"{path.name}, {len(toks)} tokens")
    del cpu
    res["contexts"] = {}
    step_s = None
    for ctx in ctxs:
        left = deadline - time.perf_counter()
        if step_s is not None and ctx * step_s * 1.2 > left:
            res["contexts"][ctx] = {
                "skipped": f"step-wise prefill of {ctx} tokens needs ~{ctx * step_s:.0f} s, "
                f"{left:.0f} s of the budget left"
            }
            continue
        s = gpu.session(ctx=ctx + n_decode + 8)
        prompt = rng.integers(0, 1000, ctx)
        t0 = time.perf_counter()
        logits = s.prefill(prompt, chunk_size=4096)
        t_pf = time.perf_counter() - t0
        step_s = t_pf / ctx
        nxt = int(logits.argmax())
        t0 = time.perf_counter()
        for _ in range(n_decode):
            nxt = int(s.decode(nxt).argmax())
        t_dec = time.perf_counter() - t0
        res["contexts"][ctx] = {
            "prefill_tok_s": ctx / t_pf,
            "decode_tok_s": n_decode / t_dec,
            "decode_ms": 1e3 * t_dec / n_decode,
        }
        del s
    # CPU runtime peer (all cores, its default quantized-activation mode), short context
    cpu = runtime.load(path)
    s = cpu.session(ctx=256)
    s.prefill(rng.integers(0, 1000, 64))
    t0 = time.perf_counter()
    nxt = 1
    for _ in range(8):
        nxt = int(s.decode(nxt).argmax())
    res["cpu_decode_tok_s_ctx64"] = 8 / (time.perf_counter() - t0)
    res["llama_cpp"] = llama_peer(path, 512, 32) if time.perf_counter() < deadline else {"peer": "skipped: budget"}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf-dir", type=Path, default=None, help="write (once) / read flash-slice-<variant>.gguf here")
    ap.add_argument("--variants", nargs="*", default=["MXFP4_MOE"])
    ap.add_argument("--ctx", nargs="*", type=int, default=[4096, 65536])
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--budget-s", type=float, default=300.0, help="wall-clock budget of the model part")
    ap.add_argument("--kernels-only", action="store_true")
    ap.add_argument("--json", type=Path)
    ns = ap.parse_args(argv)
    from dsv4_gguf.cuda import unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"cuda_bench: {reason}", file=sys.stderr)
        return 2
    from dsv4_gguf import _C

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        commit = "unknown"
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "device": _C.cuda_device_name(0),
        "build": dict(_C.build_info()),
    }
    t_start = time.perf_counter()

    def dump() -> None:  # after every stage: a run killed at its time limit still leaves its numbers
        results["wall_s"] = time.perf_counter() - t_start
        if ns.json:
            ns.json.write_text(json.dumps(results, indent=2, default=str))

    results["kernels"] = bench_kernels(ns.iters)
    dump()
    k = results["kernels"]
    print(
        f"copy ceiling {k['copy_GB_s']:.0f} GB/s | MoE GEMV all experts {k['moe_all_experts']['GB_s']:.0f} GB/s "
        f"({k['moe_all_experts']['frac_of_copy']:.0%}) | decode K=6 {k['moe_decode_k6']['GB_s']:.0f} GB/s "
        f"({k['moe_decode_k6']['us']:.1f} us)",
        flush=True,
    )
    print(
        f"  validated before timing: {k['validate_checks']} GEMV outputs within the cuda_gemv tolerance "
        f"(worst {k['validate_worst_vs_cuda_gemv']:.2f}x the bound)",
        flush=True,
    )
    for name in TYPES:
        n1, n8 = k[f"gemv_{name}_n1"]["GB_s"], k[f"gemv_{name}_n8"]["GB_s"]
        print(f"  gemv {name:6s} n=1 {n1:7.0f} GB/s  n=8 {n8:7.0f} GB/s", flush=True)
    over = [n for n, v in k.items() if isinstance(v, dict) and v["frac_of_copy"] > 1]
    if over:  # a GEMV cannot stream HBM faster than a copy does: the ceiling or the timing is wrong
        print(f"  WARNING: above the copy ceiling: {', '.join(over)} (weights served from L2, or a timer fault)")
    results["models"] = []
    if not ns.kernels_only and ns.gguf_dir:
        from dsv4_gguf.config import PRESETS

        deadline = time.perf_counter() + ns.budget_s
        ns.gguf_dir.mkdir(parents=True, exist_ok=True)
        for v in ns.variants:
            if time.perf_counter() > deadline:
                results["models"].append({"gguf": v, "skipped": "budget"})
                continue
            p = ns.gguf_dir / f"flash-slice-{v}.gguf"
            if not p.exists():
                from synth_gguf import write_pooled  # benchmarks/ is sys.path[0] when run as a script

                t0 = time.perf_counter()
                write_pooled(p, PRESETS["flash-slice"], v, name="flash-slice")  # atomic: *.partial until done
                print(f"wrote {p} ({p.stat().st_size / 1e9:.1f} GB, {time.perf_counter() - t0:.0f} s)", flush=True)
            r = bench_model(p, ns.ctx, ns.decode, deadline)
            results["models"].append(r)
            dump()
            va = r["validate"]
            print(
                f"{r['gguf']}: validated against the CPU runtime (exact): top-1 equal, min correlation "
                f"{va['min_corr']:.6f}, max |err| {va['max_abs_err']:.2e} "
                f"({va['worst_vs_chunking_qat']:.2f}x the bound)",
                flush=True,
            )
            for ctx, c in r["contexts"].items():
                print(
                    f"{r['gguf']} ctx {ctx}: "
                    + (
                        c["skipped"]
                        if "skipped" in c
                        else f"decode {c['decode_tok_s']:.1f} tok/s ({c['decode_ms']:.2f} ms), step-wise prefill "
                        f"{c['prefill_tok_s']:.0f} tok/s"
                    ),
                    flush=True,
                )
            print(
                f"  CPU runtime decode (ctx 64) {r['cpu_decode_tok_s_ctx64']:.2f} tok/s; peer: {r['llama_cpp']}",
                flush=True,
            )
    dump()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
