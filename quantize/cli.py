"""Argument parsers and runners for ``convert``, ``requantize``, ``verify``, ``inspect`` and ``imatrix``, and the
parser of ``sensitivity`` (its runner is quantize/sensitivity.py's `run_sensitivity`); wired in dsv4_gguf.cli.

Each ``add_*_arguments(parser)`` declares options; each ``run_*(ns) -> int`` calls the library and
prints.  Handled errors are raised as ValueError/RuntimeError subclasses for the top-level CLI to report.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from functools import partial
from pathlib import Path

__all__ = [
    "add_imatrix_arguments",
    "run_imatrix",
    "add_convert_arguments",
    "run_convert",
    "add_requantize_arguments",
    "run_requantize",
    "add_verify_arguments",
    "run_verify",
    "add_inspect_arguments",
    "add_sensitivity_arguments",
    "run_inspect",
    "format_plan",
    "refuse_own_input",
]


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 512M, 50G)")
    # gguf-split counts 50G as 50 * 1000^3 bytes.
    return int(float(m.group(1)) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[m.group(2).upper()])


def refuse_own_input(outputs: Iterable[str | Path], inputs: Iterable[str | Path], fix: str) -> None:
    """ValueError when an output names one of the command's inputs (the same file, links included):
    --overwrite replaces earlier outputs, never what the command is reading."""
    ins = [Path(p) for p in inputs if Path(p).exists()]
    for out in map(Path, outputs):
        for i in ins if out.exists() else ():
            if os.path.samefile(out, i):
                raise ValueError(f"{out}: is an input of this command ({i}); {fix}")


def _variants() -> list[str]:
    from .recipes import recipe_names

    return recipe_names()


def _common(p: argparse.ArgumentParser, *, type_required: bool = False) -> None:
    p.add_argument(
        "--type",
        dest="variant",
        default=None,
        metavar="VARIANT",
        help=f"output variant: {', '.join(_variants())}"
        + (" (or --recipe; SOURCE only from a SOURCE file)" if type_required else " (default SOURCE)"),
    )
    p.add_argument(
        "--tensor-type",
        action="append",
        default=[],
        metavar="PATTERN=TYPE",
        help="override the type of tensors whose GGUF name matches the regex (llama-quantize syntax; "
        "repeatable, first match wins)",
    )
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix from llama-imatrix (GGUF or legacy .dat)")
    p.add_argument(
        "--recipe", metavar="FILE", help="a recipe JSON (recipes/ format, e.g. from --write-recipe) instead of --type"
    )
    p.add_argument(
        "--target-size",
        metavar="SIZE",
        help="choose per-tensor types to fit SIZE (90G = 90GB = 90e9 bytes, 85GiB = 85*2^30; all files, headers "
        "included) within 1%%; --type/--recipe gives the fixed parts (docs/converter.md)",
    )
    p.add_argument("--target-bpw", type=float, metavar="X", help="as --target-size, for X bits per weight of the data")
    p.add_argument(
        "--sensitivity",
        metavar="FILE",
        help="with --target-size or --target-bpw: JSON {tensor name or blk.N. class: importance factor}",
    )
    p.add_argument("--write-recipe", metavar="FILE", help="also write the plan's recipe JSON (reusable with --recipe)")
    p.add_argument(
        "--split-max-size",
        type=_size,
        default=0,
        metavar="SIZE",
        help="split the main file into gguf-split shards of at most SIZE (e.g. 50G)",
    )
    p.add_argument("--only", metavar="PATTERN", help="convert only tensors whose GGUF name matches (debugging)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (types, sizes, bpw); write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (verifies what was written)")
    p.add_argument(
        "--compare-tensor",
        metavar="NAME",
        help="regenerate tensor NAME and compare it with the same tensor of the existing output file",
    )


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    from dsv4_gguf.config import PRESETS

    p.add_argument("checkpoint", nargs="?", metavar="CHECKPOINT_DIR", help="release-layout checkpoint folder")
    p.add_argument("--preset", choices=sorted(PRESETS), help="plan for a preset model instead (needs --dry-run)")
    p.add_argument("-o", "--out", metavar="OUT.gguf", help="output file")
    p.add_argument("--name", default=None, help="general.name (default: the checkpoint folder name)")
    p.add_argument("--no-mtp", action="store_true", help="do not write the MTP sidecar (mtp-OUT.gguf)")
    _common(p)


def add_requantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN.gguf", help="deepseek4 GGUF to requantize (first shard of a split set)")
    p.add_argument("out", metavar="OUT.gguf", help="output file (plus mtp-OUT.gguf when the input has an MTP sidecar)")
    _common(p, type_required=True)
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="keep the tensors quantized to grid i-quants (IQ1_S..IQ3_S, the slow ones) in DIR and reuse them when "
        "another requantize of the same input asks for the same tensor, type and imatrix (variants, --target-size "
        "trials)",
    )


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("gguf", metavar="OUT.gguf", help="converted GGUF to check (first shard of a split set)")
    p.add_argument(
        "--against",
        required=True,
        metavar="CHECKPOINT_DIR",
        help="the release-layout checkpoint it was converted from (tensors compared after dequantization)",
    )
    p.add_argument("--only", metavar="PATTERN", help="verify only tensors whose GGUF name matches")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per tensor")


def add_sensitivity_arguments(p: argparse.ArgumentParser) -> None:
    from .sensitivity import DEFAULT_LOW

    p.add_argument("model", metavar="MODEL.gguf", help="unquantized deepseek4 GGUF (SOURCE, BF16, F16 or F32)")
    p.add_argument("--text", required=True, metavar="FILE", help="plain UTF-8 text to score (tokenized by MODEL)")
    p.add_argument(
        "-o", "--out", metavar="FILE", help="sensitivity JSON to write (default: MODEL's stem + .sensitivity.json)"
    )
    p.add_argument(
        "--low-type",
        default=DEFAULT_LOW,
        metavar="TYPE",
        help=f"type each probe drops its group to (default {DEFAULT_LOW})",
    )
    p.add_argument("-c", "--ctx", type=int, default=512, help="tokens per chunk, BOS included (default 512)")
    p.add_argument(
        "--max-tokens", type=int, default=4096, help="score at most this many tokens of --text (default 4096)"
    )
    p.add_argument("--top-k", type=int, default=64, help="reference log-probabilities kept per position (default 64)")
    p.add_argument("-t", "--threads", type=int, default=0, help="runtime threads (default: all cores)")
    p.add_argument("--only", metavar="PATTERN", help="measure only the probes whose id matches (e.g. 'ffn_exps')")
    p.add_argument(
        "--imatrix",
        metavar="FILE",
        help="importance matrix: quantizes the probes and weighs the prediction "
        "(give the same one to convert/requantize)",
    )
    p.add_argument("--resume", action="store_true", help="keep the probes OUT.partial holds under the same settings")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def add_inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("gguf", metavar="MODEL.gguf", help="GGUF to describe (first shard of a split set)")
    p.add_argument("--tensors", action="store_true", help="also list every tensor")


# ---------------------------------------------------------------------------------------------


def format_plan(plan) -> str:  # noqa: ANN001
    from dsv4_gguf.names import MTP

    lines = [f"variant {plan.recipe.name}: {plan.recipe.description}"]
    for f in plan.files:
        count: Counter[str] = Counter()
        size: Counter[str] = Counter()
        elems: Counter[str] = Counter()
        for p in f.entries:
            count[p.qtype.name] += 1
            size[p.qtype.name] += p.nbytes
            elems[p.qtype.name] += p.tensor.n_elements
        n = sum(elems.values())
        lines.append(
            f"{f.path.name}: {len(f.entries)} tensors, {f.size:,} bytes ({f.size / 1e9:.2f} GB), "
            f"{8 * sum(size.values()) / max(n, 1):.3f} bits per weight"
        )
        for q in sorted(count, key=lambda q: -size[q]):
            lines.append(f"  {q:<8} {count[q]:>6} tensors {size[q]:>18,} bytes  {8 * size[q] / elems[q]:6.3f} bpw")
    classes: dict[tuple[str, str], list] = defaultdict(list)
    for p in plan.entries:
        cls = re.sub(r"blk\.\d+\.", "blk.N.", p.tensor.name)
        classes[(cls + (" (mtp)" if p.tensor.file == MTP else ""), p.qtype.name)].append(p)
    lines.append("tensor classes:")
    for (cls, q), ps in classes.items():
        lines.append(f"  {cls:<44} {q:<8} x{len(ps):<4} {sum(p.nbytes for p in ps):>16,} B  {ps[0].reason}")
    lines.append(f"total: {plan.total_bytes:,} bytes ({plan.total_bytes / 1e9:.2f} GB) in {len(plan.files)} file(s)")
    return "\n".join(lines)


def _base_recipe(ns: argparse.Namespace, default: str | None):  # noqa: ANN202
    """The recipe of ``--recipe FILE`` or ``--type VARIANT`` (``default`` when neither is given)."""
    from dsv4_gguf.cli_errors import UsageError

    from .recipes import load_recipe, load_recipe_file

    if ns.recipe and ns.variant:
        raise UsageError("give either --type VARIANT or --recipe FILE, not both")
    if ns.recipe:
        return load_recipe_file(ns.recipe)
    if not (ns.variant or default):
        raise UsageError(f"{ns.command} needs --type VARIANT or --recipe FILE")
    return load_recipe(ns.variant or default)


def _planned(ns: argparse.Namespace, args, base, mtp: bool, build):  # noqa: ANN001, ANN202
    """``build(recipe)`` of the base recipe, or with --target-size/--target-bpw the mix that fits the budget;
    prints the target report; writes --write-recipe."""
    import json

    from dsv4_gguf.names import gguf_tensors

    from .target import format_target, load_sensitivity, parse_budget, recipe_to_json, target_plan

    if ns.target_size is None and ns.target_bpw is None:
        if ns.sensitivity:
            raise ValueError("--sensitivity only applies with --target-size or --target-bpw")
        plan = build(base, _overrides(ns))
    else:
        from .imatrix import load_imatrix_raw

        if ns.only:
            raise ValueError("--only cannot be combined with --target-size/--target-bpw (the budget is the whole file)")
        plan, rep = target_plan(
            args,
            gguf_tensors(args, mtp=mtp),
            base,
            parse_budget(ns.target_size, ns.target_bpw),
            lambda r, kvs: build(r, None, extra_kvs=kvs),
            overrides=_overrides(ns),
            imatrix=load_imatrix_raw(ns.imatrix) if ns.imatrix else None,
            sensitivity=load_sensitivity(ns.sensitivity) if ns.sensitivity else None,
        )
        print(format_target(rep))
        if not ns.sensitivity:
            print(
                "note: no --sensitivity file, so tensor importance comes from "
                f"{'the imatrix' if ns.imatrix else 'tensor sizes and usage'} alone. On the test models that "
                "undervalues token_embd, and some such mixes measured worse than the fixed recipe of their size "
                "(benchmarks/RESULTS.md). Make one with `dsv4-gguf sensitivity SOURCE.gguf --text FILE` "
                "(docs/converter.md).",
                file=sys.stderr,
            )
    if ns.write_recipe:
        out = Path(ns.write_recipe)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(recipe_to_json(plan.recipe), indent=2) + "\n", encoding="utf-8")
        tmp.replace(out)
        print(f"wrote recipe {out}")
    return plan


def _overrides(ns: argparse.Namespace) -> list:
    from .recipes import parse_tensor_type

    return [parse_tensor_type(t) for t in ns.tensor_type]


def _bar(total: int, desc: str):  # noqa: ANN202
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, dynamic_ncols=True)
    n_total = [0]

    def update(nbytes: int, done: int, name: str) -> None:
        bar.update(nbytes)
        bar.set_postfix_str(f"tensors {done}/{n_total[0]} {name[:32]}", refresh=False)

    return bar, update, n_total


def _run(plan, source, ns: argparse.Namespace, desc: str, inputs: list[Path], make=None) -> int:  # noqa: ANN001
    from .convert import convert
    from .imatrix import load_imatrix

    if ns.dry_run:
        print(format_plan(plan))
        return 0
    if ns.compare_tensor:
        return _compare(plan, source, ns)
    refuse_own_input([f.path for f in plan.files], inputs, f"choose another output path ({ns.command} reads this file)")
    imatrix = load_imatrix(ns.imatrix) if ns.imatrix else None
    if imatrix is not None and imatrix.unseen:  # reported: these slices get the weight-energy fallback
        n = sum(len(v) for v in imatrix.unseen.values())
        print(
            f"imatrix: {n} expert slices were never routed during collection and use the weight-energy "
            f"fallback: " + "; ".join(f"{k} {v}" for k, v in sorted(imatrix.unseen.items()))
        )
    bar, update, n_total = _bar(plan.total_bytes, desc)
    n_total[0] = len(plan.entries)
    t0 = time.perf_counter()
    with bar:
        paths = convert(
            plan, source, resume=ns.resume, overwrite=ns.overwrite, imatrix=imatrix, progress=update, make=make
        )
    dt = time.perf_counter() - t0
    for p in paths:
        print(f"wrote {p}")
    print(f"{plan.total_bytes / 1e9:.2f} GB in {dt:.1f} s ({plan.total_bytes / 1e9 / max(dt, 1e-9):.2f} GB/s)")
    return 0


def _compare(plan, source, ns: argparse.Namespace) -> int:  # noqa: ANN001
    import numpy as np

    from dsv4_gguf.checkpoint import Checkpoint
    from dsv4_gguf.gguf_model import dequantize_raw, open_gguf

    from .imatrix import imatrix_for, load_imatrix
    from .produce import RawReader, produce
    from .requantize import produce_from_gguf

    entry = next((p for p in plan.entries if p.tensor.name == ns.compare_tensor), None)
    if entry is None:
        raise ValueError(f"--compare-tensor: no tensor '{ns.compare_tensor}' in the plan")
    t = entry.tensor
    im = (
        imatrix_for(load_imatrix(ns.imatrix), t.name, t.shape[0] if t.assemble == "stack" else 1, t.shape[-1])
        if ns.imatrix
        else None
    )
    if isinstance(source, Checkpoint):
        rd = RawReader(source)
        new = b"".join(bytes(c) for c in produce(entry, rd=rd, imatrix=im))
        rd.close()
    else:
        new = b"".join(bytes(c) for c in produce_from_gguf(entry, model=source, imatrix=im))
    other = open_gguf(ns.out)
    file = "mtp" if t.file == "mtp" else "main"
    info = other.info(t.name, file)
    old = np.asarray(other.raw(t.name, file)).tobytes()
    print(f"{t.name}: regenerated {entry.qtype.name} {len(new):,} bytes; existing {info.qtype.name} {len(old):,} bytes")
    if info.qtype == entry.qtype and new == old:
        print("identical bytes")
        return 0
    a = dequantize_raw(
        np.frombuffer(new, np.uint8).reshape(*t.shape[:-1], -1)
        if entry.qtype.name not in ("F32", "I32")
        else np.frombuffer(new, np.float32 if entry.qtype.name == "F32" else np.int32).reshape(t.shape),
        entry.qtype,
    )
    b = other.dequantize(t.name, file)
    d = a.astype(np.float64) - b.astype(np.float64)
    rel = float(np.sqrt(np.sum(d * d) / max(np.sum(b.astype(np.float64) ** 2), 1e-300)))
    print(f"differs: max |diff| {float(np.max(np.abs(d))):.4e}, relative RMS diff {rel:.4e}")
    return 1


def run_convert(ns: argparse.Namespace) -> int:
    from dsv4_gguf.checkpoint import Checkpoint
    from dsv4_gguf.config import preset

    from .convert import make_plan

    recipe = _base_recipe(ns, "SOURCE")
    only = re.compile(ns.only) if ns.only else None
    if ns.preset:
        if ns.checkpoint:
            raise ValueError("give either CHECKPOINT_DIR or --preset, not both")
        if not ns.dry_run:
            raise ValueError("--preset plans only (use --dry-run); converting needs a checkpoint folder")
        args = preset(ns.preset)
        out = Path(ns.out or f"DeepSeek-V4-{ns.preset}-{recipe.name}.gguf")
        build = partial(
            make_plan,
            args,
            out=out,
            ckpt_dir=None,
            name=f"DeepSeek-V4-{ns.preset}",
            mtp=not ns.no_mtp,
            split_max_size=ns.split_max_size,
            only=only,
        )
        plan = _planned(ns, args, recipe, not ns.no_mtp, lambda r, ov, **kw: build(r, overrides=ov, **kw))
        print(format_plan(plan))
        return 0
    if not ns.checkpoint:
        raise ValueError("CHECKPOINT_DIR is required (or --preset NAME --dry-run)")
    if not ns.out:
        raise ValueError("-o OUT.gguf is required")
    ck = Checkpoint(ns.checkpoint)
    try:
        build = partial(
            make_plan,
            ck.args,
            out=Path(ns.out),
            ckpt_dir=ck.path,
            name=ns.name or ck.path.name,
            mtp=not ns.no_mtp,
            split_max_size=ns.split_max_size,
            only=only,
        )
        plan = _planned(ns, ck.args, recipe, not ns.no_mtp, lambda r, ov, **kw: build(r, overrides=ov, **kw))
        inputs = [ck.path / s for s in ck.shard_names()] + sorted(ck.path.glob("*.json"))
        return _run(plan, ck, ns, f"convert {plan.recipe.name}", inputs)
    finally:
        ck.close()


def run_requantize(ns: argparse.Namespace) -> int:
    from dsv4_gguf.gguf_model import open_gguf

    from .requantize import make_requant_plan, produce_from_gguf

    recipe = _base_recipe(ns, None)
    m = open_gguf(ns.input)
    only = re.compile(ns.only) if ns.only else None

    def build(r, ov, **kw):  # noqa: ANN001, ANN003, ANN202
        return make_requant_plan(m, r, Path(ns.out), overrides=ov, split_max_size=ns.split_max_size, only=only, **kw)

    plan = _planned(ns, m.args, recipe, m.mtp is not None, build)
    inputs = [f.path for f in m.main.files] + ([f.path for f in m.mtp.files] if m.mtp else [])
    make = partial(produce_from_gguf, model=m)
    cache = None
    if ns.cache and not ns.dry_run:
        from .requantize import stored_tensor
        from .tensor_cache import TensorCache

        cache = TensorCache(ns.cache)
        make = cache.wrap(make, partial(stored_tensor, m))
    rc = _run(plan, m, ns, f"requantize {plan.recipe.name}", inputs, make=make)
    if cache is not None:
        print(f"cache {cache.root}: {cache.hits} tensors reused, {cache.misses} quantized and kept")
    return rc


def run_verify(ns: argparse.Namespace) -> int:
    from dsv4_gguf.checkpoint import Checkpoint
    from dsv4_gguf.gguf_model import open_gguf

    from .verify import check_same_model, format_report, to_verify, verify

    m = open_gguf(ns.gguf)
    only = re.compile(ns.only) if ns.only else None
    with Checkpoint(ns.against) as ck:
        check_same_model(m, ck)  # before the bar is drawn
        todo = to_verify(m, only)
        bar, update, n_total = _bar(sum(m.info(t.name, t.file).nbytes for t in todo), "verify")
        n_total[0] = len(todo)
        with bar:
            reps = verify(m, ck, only=only, progress=update)
    print(format_report(reps, verbose=ns.verbose))
    return 0


def run_inspect(ns: argparse.Namespace) -> int:
    import json

    from dsv4_gguf.gguf_model import open_gguf

    from .requantize import ORIGIN_KEY
    from .target import RECIPE_KEY

    m = open_gguf(ns.gguf)
    md = m.metadata
    side = f", MTP sidecar {m.mtp.files[0].path.name}" if m.mtp else ""
    print(f"file: {m.path} ({len(m.main.files)} file(s){side})")
    origin = f"  requantized from {md[ORIGIN_KEY]}" if ORIGIN_KEY in md else ""
    print(
        f"arch: {md.get('general.architecture')}  name: {md.get('general.name')}  "
        f"variant: {md.get('general.quantized_by')}{origin}  file_type: {md.get('general.file_type')}"
    )
    a = m.args
    print(
        f"model: dim {a.dim}, layers {a.n_layers} (+{a.n_mtp_layers} MTP), heads {a.n_heads}, experts "
        f"{a.n_routed_experts} ({a.n_activated_experts} active), vocab {a.vocab_size}, "
        f"compress {list(a.compress_ratios)}"
    )
    for label, names, file in (("main", m.names(), "main"), ("mtp", m.names("mtp"), "mtp")):
        if not names:
            continue
        count: Counter[str] = Counter()
        size: Counter[str] = Counter()
        elems: Counter[str] = Counter()
        for n in names:
            r = m.info(n, file)
            count[r.qtype.name] += 1
            size[r.qtype.name] += r.nbytes
            e = 1
            for d in r.shape:
                e *= d
            elems[r.qtype.name] += e
        tot, ne = sum(size.values()), sum(elems.values())
        print(f"{label}: {len(names)} tensors, {tot:,} bytes ({tot / 1e9:.2f} GB), {8 * tot / max(ne, 1):.3f} bpw")
        for q in sorted(count, key=lambda q: -size[q]):
            print(f"  {q:<8} {count[q]:>6} tensors {size[q]:>16,} bytes {8 * size[q] / elems[q]:7.3f} bpw")
        if ns.tensors:
            for n in names:
                r = m.info(n, file)
                print(f"    {n:<48} {r.qtype.name:<8} {list(r.shape)}")
    keys = [k for k in md if not k.startswith("tokenizer.ggml.") and k != "tokenizer.chat_template"]
    print("metadata:")
    for k in keys:
        v = md[k]
        if k == RECIPE_KEY and isinstance(v, str):  # a --target-size mix: its JSON runs to many KB
            print(f"  {k} = recipe JSON, {len(v):,} characters ({len(json.loads(v).get('rules', []))} rules)")
            continue
        print(f"  {k} = {v if not isinstance(v, list) or len(v) < 16 else str(v[:8])[:-1] + ', ...]'}")
    print(
        f"  tokenizer: {md.get('tokenizer.ggml.model')}/{md.get('tokenizer.ggml.pre')}, "
        f"{len(md.get('tokenizer.ggml.tokens', []))} tokens, {len(md.get('tokenizer.ggml.merges', []))} merges, "
        f"chat template {'yes' if 'tokenizer.chat_template' in md else 'no'}"
    )
    return 0


def add_imatrix_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL.gguf",
        nargs="?",
        help="model to run (any variant our runtime loads; SOURCE or Q8_0 give the most faithful statistics)",
    )
    p.add_argument(
        "--text",
        metavar="FILE",
        nargs="+",
        default=[],
        help="calibration text files (read in order); the shipped corpus: quantize/calibration/calibration.txt",
    )
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="imatrix file to write (llama.cpp GGUF form)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT (never one of the inputs)")
    p.add_argument("--ctx", type=int, default=512, help="tokens per chunk, BOS included (default 512)")
    p.add_argument("--chunks", type=int, default=0, help="use at most N chunks (default: all)")
    p.add_argument("--batch", type=int, default=128, help="tokens per runtime call inside a chunk (bounds tap memory)")
    p.add_argument("--threads", type=int, default=0, help="runtime threads (default: all cores)")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT.partial of an interrupted run")
    p.add_argument("--save-every", type=int, default=10, metavar="N", help="save OUTPUT.partial every N chunks")
    p.add_argument(
        "--merge",
        metavar="FILE",
        nargs="+",
        help="instead of collecting: sum these imatrix files (GGUF or legacy .dat) into OUTPUT",
    )


def _read_text(path: str) -> str:
    """A --text file, with errors that name it and what to give instead."""
    from .imatrix import ImatrixError

    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImatrixError(
            f"{path}: no such file (give --text plain-text calibration files, e.g. "
            "quantize/calibration/calibration.txt)"
        ) from None
    except IsADirectoryError:
        raise ImatrixError(f"{path}: is a folder (give --text the text files themselves)") from None
    except UnicodeDecodeError as e:
        raise ImatrixError(f"{path}: not UTF-8 text (byte {e.start}); give --text plain UTF-8 text files") from None


def run_imatrix(ns: argparse.Namespace) -> int:
    """Errors (ImatrixError, a malformed GGUF) are ValueErrors, reported in one line by dsv4_gguf.cli.main."""
    from tqdm import tqdm

    from .imatrix import ImatrixError
    from .imatrix_collect import collect, merge

    inputs = ns.merge or [p for p in (ns.model, *ns.text) if p]
    refuse_own_input([ns.output], inputs, "write the result to another -o")
    if Path(ns.output).exists() and not ns.overwrite:
        raise ImatrixError(f"{ns.output}: already exists; choose another -o or pass --overwrite")
    if ns.merge:
        r = merge(ns.merge, ns.output)
        print(f"wrote {ns.output}: {len(r.sums)} entries, {r.chunk_count} chunks from {len(ns.merge)} files")
        return 0
    if not ns.model or not ns.text:
        raise ImatrixError("give MODEL.gguf and --text FILE... (or --merge FILE... -o OUT)")
    texts = [_read_text(t) for t in ns.text]
    bars: list[tqdm] = []  # drawn at the first progress call: after collect has checked its inputs
    t0 = time.perf_counter()

    def update(done: int, total: int) -> None:
        if not bars:  # on stderr, only when it is a terminal (as convert's)
            bars.append(tqdm(total=total, initial=done, unit="chunk", desc="imatrix", dynamic_ncols=True, disable=None))
        bars[0].update(done - bars[0].n)

    try:
        r = collect(
            ns.model,
            texts,
            ns.output,
            ctx=ns.ctx,
            n_chunks=ns.chunks,
            batch=ns.batch,
            threads=ns.threads,
            datasets=[Path(t).name for t in ns.text],
            resume=ns.resume,
            save_every=ns.save_every,
            progress=update,
        )
    finally:
        for bar in bars:
            bar.close()
    exps = [n for n in r.sums if "_exps" in n]
    unseen = sum(int((r.counts[n] == 0).sum()) for n in exps)
    print(
        f"wrote {ns.output}: {len(r.sums)} entries, {r.chunk_count} chunks of {ns.ctx} tokens in "
        f"{time.perf_counter() - t0:.1f} s; {unseen} routed-expert slices never routed (weight-energy fallback)"
    )
    return 0


def _handled(fn):  # noqa: ANN001, ANN202
    """Report the converter's own errors like the top-level CLI does (message, exit code 1; usage errors: 2)."""
    import functools

    @functools.wraps(fn)
    def run(ns: argparse.Namespace) -> int:
        from dsv4_gguf.cli_errors import UsageError
        from dsv4_gguf.gguf_io import GGUFError

        from .convert import ConvertError
        from .imatrix import ImatrixError
        from .recipes import RecipeError

        try:
            return fn(ns)
        except UsageError:
            raise  # the top-level CLI's exit status 2
        except (ConvertError, GGUFError, ImatrixError, RecipeError, ValueError) as e:
            print(f"dsv4-gguf {ns.command}: error: {e}", file=sys.stderr)
            return 1

    return run


run_convert = _handled(run_convert)
run_requantize = _handled(run_requantize)
run_verify = _handled(run_verify)
run_inspect = _handled(run_inspect)
