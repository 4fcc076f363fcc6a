"""CUDA benchmark (issue 10): achieved HBM bandwidth of the routed-expert GEMV and the dense GEMV next to the
device-to-device copy ceiling; decode (and step-wise prefill) tokens/s of the CUDA runtime on flash-slice
GGUFs at the requested contexts, with the CPU runtime and, where it is built with GPU offload, llama.cpp
(llama-cpp-python) on the same GGUF as peers.  Validates before timing: kernel outputs against the CPU
dequantization, model logits against the CPU runtime (exact mode) on the same GGUF.

Usage: python benchmarks/cuda_bench.py [--gguf-dir DIR] [--variants MXFP4_MOE Q4_K_M] [--ctx 4096 65536]
                                       [--budget-s 300] [--json OUT] [--kernels-only]
Contexts whose step-wise prefill would not fit the remaining budget (estimated from the measured step
rate) are reported as skipped, never silently dropped.  Needs a CUDA device (exits 2 without one).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TYPES = {"MXFP4": 39, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14, "BF16": 30}
GEOM = {39: (32, 17), 8: (32, 34), 12: (256, 144), 14: (256, 210), 30: (32, 64)}


def random_blocks(qtype: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Valid ggml blocks of random codes with sane scales (every byte still read by the kernel)."""
    elems, nbytes = GEOM[qtype]
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


def bench_kernels(iters: int) -> dict:
    from dsv4_gguf import _C

    rng = np.random.default_rng(0)
    out: dict = {}
    nbytes = 2 << 30
    t = _C.cuda_hooks.time_copy(nbytes, 10)
    out["copy_GB_s"] = 2 * nbytes / t / 1e9  # read + write
    # validate every type on a small matrix first
    for name, qt in TYPES.items():
        w = random_blocks(qt, 64, 4096, rng)
        x = rng.standard_normal((1, 4096)).astype(np.float32) / 64
        ref = x.astype(np.float64) @ _C.dequantize_rows(qt, w).reshape(64, 4096).astype(np.float64).T
        got = _C.cuda_hooks.gemv(qt, w, x)
        err = float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-30))
        assert err < 1e-4, f"{name}: CUDA GEMV differs from the CPU dequantization (max rel err {err:.2e})"
    # routed experts, Flash shapes: w1/w3 [256 x 2048 rows, 4096], MXFP4 (1.14 GB, > 20x L2)
    E, I, D = 256, 2048, 4096
    w = random_blocks(39, E * I, D, rng)
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
        for n_vec in (1, 8):
            t = _C.cuda_hooks.time_gemv(qt, w, 4096, n_vec, iters)
            out[f"gemv_{name}_n{n_vec}"] = {"GB_s": w.nbytes / t / 1e9, "us": t * 1e6}
    for v in out.values():
        if isinstance(v, dict):
            v["frac_of_copy"] = v["GB_s"] / out["copy_GB_s"]
    return out


def _fixture():
    spec = importlib.util.spec_from_file_location("rt_gf", HERE.parent / "tests" / "support" / "gguf_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


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
    # validate: the first tokens' logits equal the CPU runtime's exact mode to fp32 reduction order
    cpu = runtime.load(path, exact=True)
    toks = rng.integers(0, 1000, 8).tolist()
    ref = cpu.session(ctx=16).prefill(toks, all_logits=True)
    got = gpu.session(ctx=16).prefill(toks, all_logits=True)
    err = float(np.abs(got - ref).max())
    res["validate_max_abs_err"] = err
    res["validate_top1_equal"] = bool((got.argmax(-1) == ref.argmax(-1)).all())
    assert np.isfinite(got).all() and err < 5e-2, f"{path.name}: CUDA logits differ from the CPU runtime by {err}"
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
    for name in TYPES:
        n1, n8 = k[f"gemv_{name}_n1"]["GB_s"], k[f"gemv_{name}_n8"]["GB_s"]
        print(f"  gemv {name:6s} n=1 {n1:7.0f} GB/s  n=8 {n8:7.0f} GB/s", flush=True)
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
                t0 = time.perf_counter()
                _fixture().write_streaming(p.with_suffix(".tmp"), PRESETS["flash-slice"], v).rename(p)
                print(f"wrote {p} ({p.stat().st_size / 1e9:.1f} GB, {time.perf_counter() - t0:.0f} s)", flush=True)
            r = bench_model(p, ns.ctx, ns.decode, deadline)
            results["models"].append(r)
            dump()
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
