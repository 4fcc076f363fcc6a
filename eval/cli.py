"""`dsv4-gguf eval mrcr|swebench|kld|report`: argument parsing only; the work is in tasks/ and report.py.

Exit codes: 0 done, 1 a handled error (message names the file and the fix), 130 interrupted (rerun the
same command with the same --out to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .backends import BACKENDS, BackendError
from .run import RunError

__all__ = ["add_eval_arguments", "add_eval_parser", "run_eval"]

_HEADLINE = {
    "kld": ("kld_mean", "kld_median", "kld_p99", "kld_p999", "same_top_p", "rms_dp", "ppl_ratio"),
    "mrcr": ("mrcr_score", "mrcr_score_lenient", "mrcr_n", "mrcr_skipped"),
    "swebench": ("nll_mean", "nll_delta_mean", "flip_rate", "kld_mean", "swe_n", "swe_skipped"),
}


def _common(p: argparse.ArgumentParser, data_help: str) -> None:
    p.add_argument("--data", required=True, metavar="PATH", help=data_help)
    p.add_argument(
        "--model",
        required=True,
        metavar="A.gguf",
        help="candidate: a GGUF path, a served model name (with --url), or a fake spec ('seed=0,noise=0.1')",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: the in-process runtime for a .gguf; openai with --url",
    )
    p.add_argument("--url", help="server for --backend openai|ollama, e.g. http://127.0.0.1:8080")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created; an existing one is resumed)")
    p.add_argument("--variant", help="label in reports (default: the model file name)")
    p.add_argument("--bpw", type=float, help="bits per weight for reports (default: read from the GGUF)")
    p.add_argument("--n-ctx", type=int, default=4096, help="context the backend is opened with (default 4096)")
    p.add_argument("--threads", type=int, help="CPU threads for in-process backends")
    p.add_argument("--seed", type=int, default=0, help="sampling / subset seed (default 0)")
    p.add_argument("--thinking", choices=("chat", "thinking"), default="chat", help="DSV4 thinking mode of prompts")
    p.add_argument("--full-hash", action="store_true", help="sha256 whole model files (default: quick above 2 GiB)")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --out instead of resuming")


def _reference(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ref", metavar="B.gguf", help="reference model (e.g. the SOURCE conversion), run here")
    g.add_argument("--ref-url", metavar="URL", help="OpenAI-compatible server with prompt_logprobs (vLLM, SGLang)")
    p.add_argument("--ref-model", help="model name on --ref-url")
    p.add_argument(
        "--ref-backend",
        choices=BACKENDS,
        help="backend for --ref (default: as --backend; auto when --backend is a server, openai or ollama)",
    )
    p.add_argument("--ref-cache", metavar="DIR", help="share the sparse reference across runs (default RUN_DIR/ref)")
    p.add_argument("--top-k", type=int, default=64, help="reference log-probabilities kept per position (default 64)")


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_task", metavar="TASK", required=True)
    k = sub.add_parser(
        "kld",
        help="KL divergence and llama-perplexity statistics against a reference",
        description="Chunk a text by --ctx, score the second half of each chunk, compare the "
        "candidate's distributions with the reference's (llama-perplexity --kl-divergence).",
    )
    _common(k, "plain text file (ignored with --ref-kld, which carries its tokens)")
    _reference(k)
    k.add_argument("--ref-kld", metavar="FILE.kld", help="llama-perplexity --kl-divergence-base file as reference")
    k.add_argument("--ctx", type=int, default=512, help="chunk length in tokens (default 512, as llama-perplexity)")
    k.add_argument("--chunks", type=int, help="score at most this many chunks")

    m = sub.add_parser(
        "mrcr",
        help="OpenAI MRCR: generation, official + lenient score by needle x context bin",
        description="Greedy generation on OpenAI MRCR rows (prompts rendered with the DSV4 chat encoding), "
        "scored with the official metric and a lenient one, tabled by needle count x context bin "
        "(o200k tokens, as the official bins).",
    )
    _common(m, "MRCR folder ({2,4,8}needle/*.parquet or {N}needle.parquet) or one parquet file")
    m.add_argument("--needles", default="2,4,8", help="needle counts (default 2,4,8)")
    m.add_argument("--bins", help="context bins, e.g. 8K-128K or 8K,1M (default all)")
    m.add_argument("--limit", type=int, help="seeded sample of at most N rows per needle x bin")
    m.add_argument("--max-tokens", type=int, help="only rows of at most N o200k prompt+answer tokens")
    m.add_argument(
        "--bin-by",
        choices=("o200k", "native"),
        default="o200k",
        help="bin by o200k prompt+answer tokens (official) or by the model's own count",
    )
    m.add_argument("--max-new-tokens", type=int, help="generation budget (default: from the answer length)")

    s = sub.add_parser(
        "swebench",
        help="SWE-bench subsets: gold-patch NLL, delta/flips vs a reference, predictions",
        description="Teacher-forced NLL of each instance's gold patch after its issue text; with a reference "
        "also the KLD on the patch positions, the NLL delta and the flip rate; with --generate, greedy "
        "patches in the official predictions format.",
    )
    _common(s, "SWE-bench .json/.jsonl/.parquet (full, Verified, Lite, oracle, Pro)")
    _reference(s)
    s.add_argument("--instance-ids", help="comma/space separated ids, or a file of them")
    s.add_argument("--repo", action="append", help="only this repository (repeatable)")
    s.add_argument("--limit", type=int, help="seeded sample of N instances stratified by repository")
    s.add_argument("--flip-threshold", type=float, default=0.05, help="|ΔNLL| per token counted as a flip (nats)")
    s.add_argument("--generate", action="store_true", help="also generate patches; writes predictions.jsonl")
    s.add_argument("--max-new-tokens", type=int, help="patch generation budget (default 2048)")

    r = sub.add_parser(
        "report",
        help="markdown + CSV table and PNG plots across finished runs",
        description="One table across finished eval runs (variants), as report.md and report.csv, and PNG "
        "plots (KLD vs bits per weight, MRCR score by context bin, gold-patch NLL vs bits per weight). "
        "Reads each run's results.json and manifest.json; recomputes nothing.",
    )
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the --out of finished eval runs)")
    r.add_argument("--out", required=True, metavar="DIR", help="folder for report.md, report.csv and the plots")
    r.add_argument("--overwrite", action="store_true", help="replace the report already in --out")


def _progress(items: Any, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=desc, disable=None, file=sys.stderr)


def run_eval(args: argparse.Namespace) -> int:
    task = args.eval_task
    try:
        if task == "report":
            from pathlib import Path

            from .report import load_runs, write_report

            old = [p for p in (Path(args.out) / "report.md", Path(args.out) / "report.csv") if p.exists()]
            if old and not args.overwrite:
                raise RunError(f"{old[0]}: already exists; choose another --out or pass --overwrite")
            files = write_report(load_runs(args.runs), args.out)
            for name, path in files.items():
                print(f"wrote {path}" if name else path)
            return 0
        if task == "kld":
            from .tasks.kld import run_kld as fn
        elif task == "mrcr":
            from .tasks.mrcr import run_mrcr as fn
        else:
            from .tasks.swebench import run_swebench as fn
        results = fn(args, _progress)
    except KeyboardInterrupt:
        print(f"dsv4-gguf eval {task}: interrupted; rerun the same command to resume from {args.out}", file=sys.stderr)
        return 130
    except (RunError, BackendError, ValueError, FileNotFoundError) as e:
        from dsv4_gguf.cli_errors import error_message

        print(f"dsv4-gguf eval {task}: error: {error_message(e)}", file=sys.stderr)
        return 1
    head = {k: results.get(k) for k in _HEADLINE[task]}
    print(json.dumps({"variant": results.get("variant"), "bpw": results.get("bpw"), **head}))
    print(f"wrote {args.out}/results.json")
    return 0


def add_eval_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `eval` on the top-level `dsv4-gguf` subparsers (called from dsv4_gguf/cli.py)."""
    p = sub.add_parser(
        "eval",
        help="quant quality: KL divergence vs a reference, MRCR and SWE-bench subsets, reports",
        description="Measure how much a quantized GGUF loses against the original weights: "
        "KLD statistics as llama-perplexity defines them, MRCR, SWE-bench gold-patch NLL. "
        "See docs/eval.md.",
    )
    add_eval_arguments(p)
    p.set_defaults(func=run_eval)
    return p
