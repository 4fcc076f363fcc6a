"""`dsv4-gguf sensitivity MODEL --text FILE`: the ``--sensitivity`` file of ``--target-size``, measured.

For each probe group (each adjustable tensor class over all layers, as `target.adjustable` defines them, and
each layer's routed experts) the unquantized MODEL is run by our runtime over the tokens of a text with only
that group dropped to a low type, and compared with MODEL's own logits (computed once) by ``eval kld``'s
statistics (sparse top-k reference, `compare_sparse`, `summarize`).  MODEL is loaded once; a probe's tensors are
produced at the low type exactly as a probe model file would store them (`_probe_plan`, the converter's
producer) and swapped into the loaded model in memory (`Model.override_weights`), then put back: nothing is
written but the output and its ``.partial`` record, and memory holds MODEL's mapping plus one probe's low-type
tensors.  Under target.py's model the loss of the group is ``sum importance(t) * err(low)``; the file's weight
of the group is the measured mean KLD over that prediction, normalized so that the median weight is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from dsv4_gguf.cli_errors import UsageError
from dsv4_gguf.gguf_model import GGUFModel
from dsv4_gguf.names import MAIN, GTensor

from .recipes import SUPPORTED_TYPES, Planned, Recipe, plan_types
from .target import SENSITIVITY_META, _cls, adjustable, importance, type_error

__all__ = [
    "Probe",
    "probes",
    "check_unquantized",
    "weights_from_klds",
    "scan",
    "low_type",
    "run_sensitivity",
    "DEFAULT_LOW",
    "KLD_FLOOR",
]

Q = GGMLQuantizationType
DEFAULT_LOW = "Q2_K"  # the 2-bit K-quant: every ladder has it, no imatrix needed, errors well above noise
KLD_FLOOR = 1e-9  # a probe whose KLD is 0 (or rounds below 0) still gets a positive weight
_EXPS = re.compile(r"^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$")
_UNQUANTIZED = {Q.F32, Q.F16, Q.BF16, Q.I32}
_LOSSLESS_NAMES = {"SOURCE", "BF16", "F16", "F32", "ALL_F32"}  # variants an unquantized file may come from
FORMAT = 1


@dataclass(frozen=True)
class Probe:
    """One measurement: ``id`` names it in the record, ``names`` are the GGUF tensors dropped to the low type,
    ``keys`` the entries it gives the file (a class ``blk.N.x``, a tensor name, or a layer's expert names)."""

    id: str
    names: tuple[str, ...]
    keys: tuple[str, ...]


def probes(groups: dict[str, list[GTensor]]) -> list[Probe]:
    """Each adjustable class (all layers at once; a name outside ``blk.`` is its own class), then each layer's
    routed experts (gate, up, down together), in a fixed order."""
    classes: dict[str, list[str]] = {}
    layers: dict[int, list[str]] = {}
    for name in sorted(groups):
        m = _EXPS.match(name)
        if m:
            layers.setdefault(int(m.group(1)), []).append(name)
        else:
            classes.setdefault(_cls(name), []).append(name)
    out = [Probe(k, tuple(v), (k,)) for k, v in sorted(classes.items())]
    out += [Probe(f"blk.{b}.ffn_exps", tuple(v), tuple(v)) for b, v in sorted(layers.items())]
    return out


def check_unquantized(m: GGUFModel) -> None:
    """UsageError unless every main-file tensor is stored unquantized: a float type, I32, or MXFP4 holding
    FP4 checkpoint weights exactly (SOURCE); a file requantized from a lossy one (``dsv4.requantized_from``) is
    refused too.  KLD against a quantized model would measure the distance between two lossy models."""
    from .requantize import ORIGIN_KEY

    for t in m.gtensors():
        if t.file != MAIN:
            continue
        q = m.info(t.name).qtype
        if q not in _UNQUANTIZED and not (q == Q.MXFP4 and t.kind == "fp4"):
            raise UsageError(
                f"{m.path}: '{t.name}' is stored as {q.name}; MODEL must be unquantized (SOURCE, BF16, F16 or "
                "F32), the reference every probe is compared with: convert the checkpoint with --type SOURCE"
            )
    origin = m.metadata.get(ORIGIN_KEY)
    if origin is not None:
        lossy = [s for s in str(origin).split(" -> ") if s.split(" (")[0] not in _LOSSLESS_NAMES]
        if lossy:
            raise UsageError(
                f"{m.path}: was requantized from {lossy[0]} ({ORIGIN_KEY} = {origin!r}), so its weights are lossy; "
                "give an unquantized MODEL (dsv4-gguf convert CKPT_DIR --type SOURCE)"
            )


def weights_from_klds(
    klds: dict[str, float], expected: dict[str, float], floor: float = KLD_FLOOR
) -> tuple[dict[str, float], float]:
    """Probe id -> weight ``max(kld, floor) / expected``, divided by the median of those (so the median is 1);
    returns the weights and the median divided out."""
    raw = {}
    for pid, kld in klds.items():
        if not (math.isfinite(expected[pid]) and expected[pid] > 0):
            raise ValueError(f"probe {pid}: the predicted loss is {expected[pid]!r}; it must be positive")
        raw[pid] = max(kld, floor) / expected[pid] if math.isfinite(kld) else math.nan
    bad = [p for p, w in raw.items() if not math.isfinite(w)]
    if bad:
        raise ValueError(f"probes {bad[:3]}: the measured KLD is not finite (the runtime's logits overflowed)")
    med = statistics.median(raw.values())
    return {p: w / med for p, w in raw.items()}, med


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _probe_recipe(probe: Probe, low: GGMLQuantizationType) -> Recipe:
    return Recipe("PROBE", 0, f"sensitivity probe {probe.id} at {low.name}", ())


def _probe_entries(m: GGUFModel, base: list[Planned], probe: Probe, low: GGMLQuantizationType) -> list[Planned]:
    """``probe``'s tensors as planned: at ``low``, or the recipes' fallback where a row length is not a multiple
    of its block."""
    names = set(probe.names)
    pat = re.compile("^(?:" + "|".join(map(re.escape, sorted(names))) + ")$")
    return plan_types(
        _probe_recipe(probe, low), [p.tensor for p in base if p.tensor.name in names], m.args, [(pat, low)]
    )


def _probe_plan(m: GGUFModel, base: list[Planned], probe: Probe, low: GGMLQuantizationType, path: Path) -> Any:
    """The convert `Plan` of the probe as a model file: MODEL's main file with every tensor as stored except
    ``probe``'s (`_probe_entries`).  No tokenizer keys: the probe is fed token ids.  `scan` does not write it
    (it swaps the same tensors in memory); tests check that both give the same KLD."""
    from dsv4_gguf.metadata import arch_kvs, general_kvs

    from .convert import OutFile, Plan

    recipe = _probe_recipe(probe, low)
    dropped = {p.tensor.name: p for p in _probe_entries(m, base, probe, low)}
    f = OutFile(
        path,
        general_kvs("sensitivity probe", 0, variant=recipe.name) + arch_kvs(m.args, block_count=m.args.n_layers),
        [dropped.get(p.tensor.name, p) for p in base],
    )
    f.finalize()
    return Plan(m.args, recipe, [f])


def _probe_weights(
    entries: list[Planned], make: Callable[..., Iterator[np.ndarray]], imatrix: dict[str, np.ndarray] | None
) -> Iterator[tuple[str, GGMLQuantizationType, np.ndarray]]:
    """``(name, type, bytes)`` of each planned probe tensor, one tensor at a time: the bytes `convert` writes
    into the probe file (the same producer ``make``, the same imatrix slice, the same error for a failing
    tensor)."""
    from .convert import ConvertError, tensor_imatrix

    for e in entries:
        t = e.tensor
        im = tensor_imatrix(e, imatrix)
        buf, n = np.empty(e.nbytes, np.uint8), 0
        try:
            for c in make(e, imatrix=im):
                b = np.ascontiguousarray(c).view(np.uint8).reshape(-1)
                if n + b.size <= e.nbytes:
                    buf[n : n + b.size] = b
                n += b.size
        except (ValueError, OSError) as err:
            raise ConvertError(f"tensor '{t.name}' (from '{t.sources[0]}'): {err}") from err
        if n != e.nbytes:
            raise ConvertError(f"internal: tensor '{t.name}' produced {n} bytes, planned {e.nbytes}")
        yield t.name, e.qtype, buf
        del buf  # the runtime has its copy: one tensor's bytes on this side at a time


def scan(
    model: str | Path,
    text: str,
    out: Path,
    *,
    low: GGMLQuantizationType,
    ctx: int,
    max_tokens: int,
    top_k: int = 64,
    threads: int = 0,
    only: re.Pattern[str] | None = None,
    imatrix_path: str | None = None,
    resume: bool = False,
    progress: Callable[[Iterable[Probe]], Iterable[Probe]] = lambda it: it,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Measure every probe, write ``out`` (weights + ``_meta``) atomically, return the file's object.  Each
    finished probe is recorded in ``out.partial``; with ``resume`` the probes recorded there under the same
    settings are not measured again.  Inputs are checked before any work (UsageError)."""
    from dsv4_gguf.eval.backends.runtime import RuntimeBackend
    from dsv4_gguf.eval.metrics.kld import PositionStats, compare_sparse, summarize
    from dsv4_gguf.eval.metrics.kld_file import scored_first
    from dsv4_gguf.eval.run import file_digest
    from dsv4_gguf.eval.tasks.kld import _chunks

    from dsv4_gguf.gguf_model import open_gguf

    from .imatrix import load_imatrix, load_imatrix_raw
    from .requantize import produce_from_gguf

    m = open_gguf(model, mtp=False)
    check_unquantized(m)
    if not text.strip():
        raise UsageError("--text is empty; give a plain text file with at least --ctx tokens")
    args = m.args
    base = [Planned(t, m.info(t.name).qtype, "stored") for t in m.gtensors() if t.file == MAIN]
    _, groups = adjustable(base)
    todo = [p for p in probes(groups) if only is None or only.search(p.id)]
    if not todo:
        raise UsageError(
            f"--only {only.pattern if only else ''!r} matches no probe ({', '.join(p.id for p in probes(groups))})"
        )
    im_raw = load_imatrix_raw(imatrix_path) if imatrix_path else None
    imp = importance(groups, args, im_raw)
    settings = {
        "model": file_digest(model),
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "low_type": low.name,
        "ctx": ctx,
        "max_tokens": max_tokens,
        "top_k": top_k,
        "imatrix": file_digest(imatrix_path) if imatrix_path else None,
    }
    partial_path = out.with_name(out.name + ".partial")
    done: dict[str, dict[str, Any]] = {}
    if resume and partial_path.is_file():
        prev = json.loads(partial_path.read_text(encoding="utf-8"))
        if prev.get("settings") == settings:
            done = {k: v for k, v in prev.get("probes", {}).items() if k in {p.id for p in todo}}
            log(f"resuming: {len(done)} of {len(todo)} probes measured already ({partial_path})")
        else:
            log(f"{partial_path}: another model, text or settings; measuring every probe again")

    # MODEL is loaded once: the reference logits first, then every probe with its tensors swapped in memory.
    ref = RuntimeBackend(model, n_ctx=ctx, threads=threads)
    try:
        tokens = ref.tokenize(text)
        if len(tokens) + 1 < ctx:
            raise UsageError(f"--text has {len(tokens)} tokens, fewer than one --ctx {ctx} chunk; lower --ctx")
        chunks = _chunks(tokens, ctx, ref.bos_id, max(1, max_tokens // ctx))
        first = scored_first(ctx)
        refs = [ref.prompt_topk(c, first, top_k) for c in chunks]

        imatrix = load_imatrix(imatrix_path) if imatrix_path else None
        make = partial(produce_from_gguf, model=m)
        for p in progress(todo):
            if p.id in done:
                continue
            entries = _probe_entries(m, base, p, low)
            # one tensor's bytes produced at a time; the runtime holds the probe's copies until the block ends
            with ref.override_weights(_probe_weights(entries, make, imatrix)):
                st = PositionStats.concat(
                    [compare_sparse(r, ref.logits(c, first)) for r, c in zip(refs, chunks, strict=True)]
                )
            types = {e.tensor.name: e.qtype for e in entries}
            done[p.id] = {
                "kld": summarize(st)["kld_mean"],
                "predicted": sum(imp[n][0] * type_error(q) for n, q in types.items()),
                "types": dict(sorted(Counter(q.name for q in types.values()).items())),
                "keys": list(p.keys),
            }
            _write_json(partial_path, {"settings": settings, "probes": done})
    finally:
        ref.close()

    weights, med = weights_from_klds(
        {p.id: done[p.id]["kld"] for p in todo}, {p.id: done[p.id]["predicted"] for p in todo}
    )
    obj: dict[str, Any] = {}
    for p in todo:
        for k in p.keys:
            obj[k] = weights[p.id]
    obj[SENSITIVITY_META] = {
        "format": FORMAT,
        "what": "weight = max(kld, kld_floor) / predicted / median; predicted = sum importance(t) * err(type(t)) "
        "(quantize/target.py); kld = mean KLD of MODEL with only the probe's tensors at low_type vs MODEL",
        **settings,
        "n_positions": sum(len(r) for r in refs),
        "kld_floor": KLD_FLOOR,
        "median_divided_out": med,
        "probes": {p.id: {**done[p.id], "weight": weights[p.id]} for p in todo},
    }
    _write_json(out, obj)
    partial_path.unlink(missing_ok=True)
    return obj


def low_type(name: str, *, imatrix: bool) -> GGMLQuantizationType:
    """``--low-type``: a block type on the ladder (a type that needs an imatrix only with ``--imatrix``)."""
    from .target import ladder

    q = SUPPORTED_TYPES.get(name.upper())
    rungs = ladder(imatrix=True)
    if q is None or q not in rungs:
        raise UsageError(
            f"--low-type {name!r}: not a quantized type of the ladder; one of {', '.join(r.name for r in rungs)}"
        )
    if q == Q.MXFP4:  # the store SOURCE keeps FP4 experts in: a probe of them would drop nothing
        raise UsageError("--low-type MXFP4 holds the FP4 experts exactly; give a lower type such as Q2_K or IQ2_XXS")
    if q not in ladder(imatrix=imatrix):
        raise UsageError(f"--low-type {q.name} needs an importance matrix: add --imatrix FILE (dsv4-gguf imatrix)")
    return q


DESCRIPTION = """\
Measure how much each part of an unquantized model (SOURCE, BF16, F16 or F32 GGUF) matters: for each adjustable
tensor class (all layers at once: blk.N.attn_q_a.weight, ..., token_embd.weight, output.weight) and for each
layer's routed experts, run the model with the runtime over the tokens of --text with only that group at
--low-type, and take the mean KLD against the unquantized model's logits (as 'eval kld').  The file holds
one importance factor per class or tensor name: the KLD over what the size-targeted allocation's own model
predicts for the group (importance x the type's error), the median factor 1; the raw KLDs are under "_meta".
The model is loaded once and each probe's tensors are swapped in memory (no model file is written; memory:
the mapped model plus one probe's low-type tensors); --only scans a subset, --resume continues an interrupted
scan."""
# Options of convert/requantize (tests check that they exist there): kept out of the description, whose
# options the help test looks up on this command.
EPILOG = """\
Then give the file to convert or requantize with a budget:
  dsv4-gguf requantize MODEL.gguf OUT.gguf --type Q8_0 --target-size SIZE --sensitivity FILE
(--target-bpw X works the same way): bits go where the measured KLD is, instead of elements x usage alone."""
EPILOG_OPTIONS = ("--type", "--target-size", "--target-bpw", "--sensitivity")


def run_sensitivity(ns: argparse.Namespace) -> int:
    from tqdm import tqdm

    model = Path(ns.model)
    if not model.is_file():
        raise UsageError(f"{model}: no such GGUF file (give MODEL, an unquantized deepseek4 GGUF)")
    text_path = Path(ns.text)
    if not text_path.is_file():
        raise UsageError(f"--text {text_path}: no such file (give a plain UTF-8 text file)")
    try:
        text = text_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"--text {text_path}: not UTF-8 text (byte {e.start})") from None
    if not text.strip():
        raise UsageError(f"--text {text_path}: the file is empty; give text with at least --ctx tokens")
    if ns.ctx < 2 or ns.max_tokens < ns.ctx or ns.top_k < 1:
        raise UsageError(
            f"need --ctx >= 2, --max-tokens >= --ctx and --top-k >= 1 (got {ns.ctx}, {ns.max_tokens}, {ns.top_k})"
        )
    low = low_type(ns.low_type, imatrix=bool(ns.imatrix))
    try:
        only = re.compile(ns.only) if ns.only else None
    except re.error as e:
        raise UsageError(f"--only {ns.only!r}: bad pattern ({e})") from None
    out = Path(ns.out) if ns.out else model.with_name(model.name.removesuffix(".gguf") + ".sensitivity.json")
    if out.exists() and not ns.overwrite:
        raise ValueError(f"{out}: already exists; choose another -o or pass --overwrite")

    def bar(it: Iterable[Probe]) -> Iterable[Probe]:
        items = list(it)
        with tqdm(items, desc=f"sensitivity {low.name}", unit="probe", disable=None, dynamic_ncols=True) as b:
            for p in b:
                b.set_postfix_str(p.id[:40], refresh=False)
                yield p

    obj = scan(
        model,
        text,
        out,
        low=low,
        ctx=ns.ctx,
        max_tokens=ns.max_tokens,
        top_k=ns.top_k,
        threads=ns.threads,
        only=only,
        imatrix_path=ns.imatrix,
        resume=ns.resume,
        progress=bar,
        log=lambda s: print(s, file=sys.stderr),
    )
    meta = obj[SENSITIVITY_META]
    print(f"{len(meta['probes'])} probes at {low.name} over {meta['n_positions']} scored positions:")
    print(f"  {'probe':<36} {'types':<16} {'KLD':>11} {'weight':>9}")
    for pid, r in meta["probes"].items():
        types = ",".join(f"{k}x{v}" for k, v in r["types"].items())
        print(f"  {pid:<36} {types:<16} {r['kld']:11.4g} {r['weight']:9.3g}")
    print(f"wrote {out}; use it with: dsv4-gguf convert|requantize ... --target-size SIZE --sensitivity {out}")
    return 0
