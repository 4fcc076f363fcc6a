"""``--target-size SIZE`` / ``--target-bpw X``: per-tensor types chosen from a ladder to fit a budget.

A base recipe fixes what is not adjustable (1-D tensors, the hash-routing table, router, mHC mixing,
compressor and indexer, ``--tensor-type`` matches); every other weight moves along a ladder of the types the
quant kernels register at run time.  The loss of tensor t at type q is ``importance(t) * err(q)``; a greedy
marginal-gain allocation on each tensor's convex hull, then a fill pass, spends the budget (an exact knapsack
when a coarse ladder leaves the greedy more than 1% under it).  The mix comes
back as a recipe (reusable with ``--recipe``) and is written into the GGUF as ``dsv4.recipe``.  The
``--sensitivity`` files this reads come from `dsv4-gguf sensitivity` (quantize/sensitivity.py: measured KLD of
each group dropped to a low type, over this module's ``importance x err``).  Not here: KLD checks of the
chosen mixes.
"""

from __future__ import annotations

import heapq
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsv4_gguf.config import ModelArgs
from dsv4_gguf.gguf_io import KV
from dsv4_gguf.names import MTP, GTensor

from .recipes import SUPPORTED_TYPES, Planned, Recipe, Rule, plan_types

__all__ = [
    "RECIPE_KEY",
    "Budget",
    "TargetError",
    "TargetReport",
    "parse_budget",
    "ladder",
    "type_error",
    "importance",
    "adjustable",
    "load_sensitivity",
    "SENSITIVITY_META",
    "TargetProblem",
    "target_plan",
    "recipe_to_json",
    "format_target",
]

Q = GGMLQuantizationType
RECIPE_KEY = "dsv4.recipe"  # the chosen mix as recipe JSON (next to dsv4.requantized_from)
# Fixed whatever the budget (they keep the base recipe's type): the router's logits pick the top-k experts,
# the mHC mixing weights and compressor biases feed a Sinkhorn / softmax whose errors compound over all
# layers, and the compressor / indexer projections decide which compressed KV entries are visible (top-k);
# together they are ~2% of Flash, so moving them buys little and risks flipped discrete choices.
FIXED = re.compile(r"ffn_gate_inp|hc_(attn|ffn)_fn|output_hc_fn|_ape\.|compressor|indexer|tid2eid")
MTP_WEIGHT = 0.25  # the sidecar only drafts tokens: its errors cost acceptance rate, never output quality
ERR_SEED, ERR_SHAPE = 20260, (16, 4096)  # the Gaussian sample err(q) is measured on
_FLOAT = {"F32", "F16", "BF16"}
_MARGIN = 4096  # header bytes kept spare: the recipe text's length varies a little with the types chosen
SENSITIVITY_META = "_meta"  # the key of a --sensitivity file that load_sensitivity skips (the scan's record)
_LOSSLESS = {"bf16": Q.BF16, "fp8": Q.BF16, "fp4": Q.MXFP4}  # exact stores of each checkpoint kind


class TargetError(ValueError):
    """The budget cannot be met (below the smallest / above the largest plan) or an input is malformed."""


@dataclass(frozen=True)
class Budget:
    kind: str  # "size": whole files in bytes (headers, padding); "bpw": bits per weight over the tensor data
    value: float
    text: str

    @property
    def label(self) -> str:
        if self.kind == "bpw":
            return f"{self.value:g}bpw"
        return f"{self.value / 1e9:.2f}GB" if self.value >= 1e9 else f"{self.value / 1e6:.2f}MB"


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_budget(size: str | None = None, bpw: float | None = None) -> Budget:
    """``90G`` / ``90GB`` = 90e9 bytes, ``85GiB`` = 85 * 2**30, a plain number is bytes; or bits per weight."""
    if (size is None) == (bpw is None):
        raise TargetError("give one of --target-size SIZE or --target-bpw X")
    if bpw is not None:
        if not (math.isfinite(bpw) and bpw > 0):
            raise TargetError(f"--target-bpw {bpw}: expected a positive number of bits per weight, e.g. 2.5")
        return Budget("bpw", float(bpw), f"{bpw:g} bpw")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(i?)B?|B?)\s*", str(size), re.IGNORECASE)
    if not m:
        raise TargetError(f"--target-size {size!r}: not a size (examples: 90G, 90GB = 90e9 bytes, 85GiB = 85*2^30)")
    unit = (m.group(2) or "").upper()
    mult = 1024 ** " KMGT".index(unit) if m.group(3) else _UNITS[unit]
    v = float(m.group(1)) * mult
    if v <= 0:
        raise TargetError(f"--target-size {size!r}: must be positive")
    return Budget("size", float(int(v)), str(size))


def ladder(*, imatrix: bool) -> list[GGMLQuantizationType]:
    """Block types the loaded kernels register (``_C.qtype_table``) that recipes can write, by bytes per weight;
    types that need an imatrix only with one.  Float types and activation-only formats are not rungs."""
    from dsv4_gguf import _C

    out = []
    for tid, name, block, size, _vd, needs_im in _C.qtype_table():
        if name in _FLOAT or name not in SUPPORTED_TYPES or block == 1 or (needs_im and not imatrix):
            continue
        out.append((size / block, name, Q(tid)))
    return [q for _, _, q in sorted(out)]


@cache
def type_error(qtype: GGMLQuantizationType) -> float:
    """Relative squared error of ``qtype`` on a fixed seeded Gaussian sample (our quantize + dequantize; a flat
    imatrix where the type needs one).  Deterministic: the same sample and the same kernels every run."""
    from dsv4_gguf import quants
    from dsv4_gguf.constants import QTYPES

    x = np.random.default_rng(ERR_SEED).standard_normal(ERR_SHAPE, dtype=np.float32)
    im = np.ones(ERR_SHAPE[1], np.float32) if QTYPES[qtype].needs_imatrix else None
    y = quants.dequantize(quants.quantize(x, qtype, im), qtype).reshape(x.shape).astype(np.float64)
    return float(np.sum((y - x) ** 2) / np.sum(x.astype(np.float64) ** 2))


def _err(t: GTensor, q: GGMLQuantizationType) -> float:
    return 0.0 if _LOSSLESS.get(t.kind) == q else type_error(q)


def _usage(t: GTensor, args: ModelArgs) -> tuple[float, str]:
    """Share of the tensor one token reads (the fallback importance is elements x usage)."""
    if "_exps" in t.name:
        k, e = args.n_activated_experts, args.n_routed_experts
        return k / e, f"routed: {k}/{e}"
    if t.name.startswith("token_embd"):
        # A token reads one row, but that row is the whole residual stream entering layer 0 (and stays in it
        # through every layer): its error counts like the output of a dense D x D projection, not like
        # 1/vocab of one.  Counted by the row alone, the embedding drops to 1-2 bits, and a sensitivity
        # scan measures it as the most sensitive tensor there is (docs/converter.md).
        d = t.shape[-1]
        return d / t.shape[0], f"one row per token, counted as a {d} x {d} projection"
    return 1.0, "dense"


def load_sensitivity(path: str | Path) -> dict[str, float]:
    """``{"tensor name or class (blk.N.…)": weight}``; weights scale the importance (finite, > 0).  A
    ``"_meta"`` object (what `dsv4-gguf sensitivity` measured: raw KLDs, settings) is skipped."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"--sensitivity {p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TargetError(f"--sensitivity {p}: not a JSON file ({e})") from None
    if not isinstance(raw, dict):
        raise TargetError(f"--sensitivity {p}: expected an object {{name or class: weight}}, got {type(raw).__name__}")
    out = {}
    for k, v in raw.items():
        if k == SENSITIVITY_META:  # the scan's record (raw KLDs, settings), not a weight
            if not isinstance(v, dict):
                raise TargetError(f"--sensitivity {p}: '{k}' must be an object (the scan's record), got {v!r:.60}")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise TargetError(f"--sensitivity {p}: weight of {k!r} must be a positive number, got {v!r}")
        out[k] = float(v)
    return out


def _cls(name: str) -> str:
    return re.sub(r"blk\.\d+\.", "blk.N.", name)


def importance(
    groups: dict[str, list[GTensor]],
    args: ModelArgs,
    imatrix: object | None = None,
    sensitivity: dict[str, float] | None = None,
) -> dict[str, tuple[float, str]]:
    """name -> (importance, how).  Without an imatrix: elements x usage (x ``MTP_WEIGHT`` in the sidecar), the
    expected squared output error per token for unit-variance weights and inputs.  With one (a `RawImatrix`):
    rows x the summed per-column mean squared input over all tokens, so each expert counts by how often it was
    routed; tensors the imatrix lacks (token_embd, the sidecar) get the fallback scaled by the median ratio."""
    fb: dict[str, float] = {}
    how: dict[str, str] = {}
    for name, ts in groups.items():
        fb[name] = sum(t.n_elements * _usage(t, args)[0] * (MTP_WEIGHT if t.file == MTP else 1.0) for t in ts)
        how[name] = _usage(ts[0], args)[1]
    out = dict(fb)
    if imatrix is not None:
        sums, counts = imatrix.sums, imatrix.counts
        dense = [float(c[0]) for c in counts.values() if len(c) == 1 and c[0] > 0]
        n_tok = max(dense) if dense else float(max((float(c.sum()) for c in counts.values()), default=1.0))
        seen: dict[str, float] = {}
        for name, ts in groups.items():
            t = next((t for t in ts if t.file != MTP), None)
            if t is None or name not in sums:
                continue
            n_mat = t.shape[0] if t.assemble == "stack" else 1
            s = sums[name]
            if s.size != n_mat * t.shape[-1]:
                raise TargetError(
                    f"imatrix entry '{name}' has {s.size} values, the tensor needs {n_mat} x {t.shape[-1]}; "
                    "the imatrix was computed for a different model"
                )
            rows = t.n_elements // (n_mat * t.shape[-1])
            seen[name] = rows * float(np.sum(s, dtype=np.float64)) / max(n_tok, 1.0)
            how[name] = "imatrix"
        ratios = sorted(seen[n] / fb[n] for n in seen if fb[n] > 0)
        scale = ratios[len(ratios) // 2] if ratios else 1.0
        for name in groups:
            out[name] = seen.get(name, fb[name] * scale)
            if name not in seen:
                how[name] += ", not in imatrix (fallback x median ratio)"
    used: set[str] = set()
    for name in groups:
        for key in dict.fromkeys((_cls(name), name)):  # once each: outside blk.N. the class is the name
            if sensitivity and key in sensitivity:
                out[name] *= sensitivity[key]
                how[name] += f", sensitivity {key} x{sensitivity[key]:g}"
                used.add(key)
    unknown = sorted(set(sensitivity or ()) - used - {_cls(n) for n in groups} - set(groups))
    if unknown:
        raise TargetError(f"--sensitivity: {unknown[:5]} match no adjustable tensor (names or blk.N. classes)")
    return {n: (out[n], how[n]) for n in groups}


def adjustable(planned: list[Planned], overrides: list | None = None) -> tuple[list[Planned], dict[str, list[GTensor]]]:
    """(fixed, groups): the plan entries that keep their type, and the adjustable tensors by name (one name in
    main file and sidecar: one rule, one type).  Fixed: 1-D tensors, non-float checkpoint storage, `FIXED`,
    ``--tensor-type`` matches.  The sensitivity scan probes exactly these groups."""
    fixed: list[Planned] = []
    groups: dict[str, list[GTensor]] = {}
    for p in planned:
        t = p.tensor
        pinned = any(pat.search(t.name) for pat, _ in overrides or ())
        if len(t.shape) == 1 or t.kind not in _LOSSLESS or FIXED.search(t.name) or pinned:
            fixed.append(p)
        else:
            groups.setdefault(t.name, []).append(t)
    return fixed, groups


def _hull(opts: list[tuple[int, float, GGMLQuantizationType]]) -> list[tuple[int, float, GGMLQuantizationType]]:
    """Lower convex hull of (bytes, loss), cheapest first: on it the marginal gains decrease, so greedy is
    optimal at every budget it stops on."""
    pts: list[tuple[int, float, GGMLQuantizationType]] = []
    for o in sorted(opts, key=lambda o: (o[0], o[1], o[2].name)):
        if pts and (o[1] >= pts[-1][1] or o[0] == pts[-1][0]):
            continue  # dominated: not cheaper and not better
        while len(pts) >= 2:
            (b0, l0, _), (b1, l1, _) = pts[-2], pts[-1]
            if (l0 - l1) * (o[0] - b1) <= (l1 - o[1]) * (b1 - b0):
                pts.pop()  # the middle point lies on or above the chord
            else:
                break
        pts.append(o)
    return pts


def _allocate(
    options: dict[str, list[tuple[int, float, GGMLQuantizationType]]], budget: int, slack: int
) -> dict[str, tuple[int, float, GGMLQuantizationType]]:
    """Greedy marginal gain (largest loss reduction per extra byte, ties by name) along each hull, then a fill
    pass over all options while anything fits; when that ends more than ``slack`` bytes under ``budget``, the
    exact `_knapsack`.  ``budget`` >= the cheapest plan."""
    hulls = {n: _hull(o) for n, o in options.items()}
    cur = {n: 0 for n in hulls}
    left = budget - sum(h[0][0] for h in hulls.values())
    heap: list[tuple[float, str]] = []

    def push(n: str) -> None:
        h, i = hulls[n], cur[n]
        if i + 1 < len(h):
            heapq.heappush(heap, (-(h[i][1] - h[i + 1][1]) / (h[i + 1][0] - h[i][0]), n))

    for n in sorted(hulls):
        push(n)
    while heap:
        _, n = heapq.heappop(heap)
        h, i = hulls[n], cur[n]
        step = h[i + 1][0] - h[i][0]
        if step <= left:
            cur[n], left = i + 1, left - step
            push(n)
    choice = {n: hulls[n][cur[n]] for n in hulls}
    left = _fill(options, choice, left)
    if left > slack:  # a coarse ladder (the tiny model's embedding steps are MBs): solve it exactly instead
        return _knapsack(options, budget, slack) or choice
    return choice


def _fill(options: dict[str, list[tuple[int, float, GGMLQuantizationType]]], choice: dict, left: int) -> int:
    """Take any upgrade (on the hull or not) that still fits, best loss reduction per byte first; returns the
    bytes left."""
    while True:
        best: tuple[float, str, tuple[int, float, GGMLQuantizationType]] | None = None
        for n in sorted(options):
            b0, l0, _ = choice[n]
            for o in options[n]:
                if b0 < o[0] <= b0 + left and o[1] < l0:
                    g = (l0 - o[1]) / (o[0] - b0)
                    if best is None or g > best[0]:
                        best = (g, n, o)
        if best is None:
            return left
        left -= best[2][0] - choice[best[1]][0]
        choice[best[1]] = best[2]


def _knapsack(
    options: dict[str, list[tuple[int, float, GGMLQuantizationType]]], budget: int, slack: int
) -> dict | None:
    """Least total loss with the bytes used in ``[budget - slack, budget]``: dynamic programming over byte
    buckets (costs rounded up, so the bytes never exceed ``budget``; the window is narrowed by one bucket per
    tensor for the rounding).  For coarse ladders where the greedy ends outside the window; None if nothing
    lands in it."""
    names = sorted(options)
    n_buckets = 200_000
    unit = max(1, -(-budget // n_buckets))
    top = budget // unit
    lo = -(-(budget - slack) // unit) + len(names)
    if lo > top:
        return None
    f = np.full(top + 1, np.inf)
    f[0] = 0.0
    picks = np.zeros((len(names), top + 1), np.uint8)
    for i, n in enumerate(names):
        g = np.full(top + 1, np.inf)
        for k, (nbytes, loss, _) in enumerate(options[n]):
            c = -(-nbytes // unit)
            if c > top:
                continue
            cand = np.full(top + 1, np.inf)
            cand[c:] = f[: top + 1 - c] + loss
            better = cand < g  # strict: ties keep the earlier (cheaper) option, deterministic
            g[better], picks[i][better] = cand[better], k
        f = g
    window = f[lo : top + 1]
    if not np.isfinite(window).any():
        return None
    b = lo + int(np.argmin(window))
    out = {}
    for i in range(len(names) - 1, -1, -1):
        o = options[names[i]][picks[i][b]]
        out[names[i]] = o
        b -= -(-o[0] // unit)
    return out


@dataclass
class TargetReport:
    budget: Budget
    limit: int  # the budget in the unit allocated (file bytes, or tensor data bytes for bpw)
    planned: int  # the same unit, for the chosen plan
    smallest: int
    largest: int
    n_weights: int
    data_bytes: int
    ladder: list[str]
    adjustable: int


def recipe_to_json(recipe: Recipe) -> dict:
    """The recipes/ JSON form of ``recipe`` (what ``--recipe FILE`` reads back)."""
    rules = []
    for r in recipe.rules:
        d: dict[str, str] = {}
        if r.match is not None:
            d["match"] = r.match.pattern
        if r.source is not None:
            d["source"] = r.source
        if r.when is not None:
            d["when"] = r.when
        d["type"], d["reason"] = r.type, r.reason
        rules.append(d)
    return {"name": recipe.name, "file_type": recipe.file_type, "description": recipe.description, "rules": rules}


def _file_type(choice: dict[str, GGMLQuantizationType], nbytes: dict[str, int], base: Recipe) -> int:
    """llama.cpp's MOSTLY_<type> of the type holding most adjustable bytes (the base's when there is none)."""
    from gguf import LlamaFileType

    by: dict[str, int] = {}
    for n, q in choice.items():
        by[q.name] = by.get(q.name, 0) + nbytes[n]
    top = max(sorted(by), key=lambda k: by[k]) if by else None
    return int(getattr(LlamaFileType, f"MOSTLY_{top}", base.file_type)) if top else base.file_type


class TargetProblem:
    """The allocation problem of one model, base recipe and importance: `solve` plans any number of budgets.

    ``build(recipe, extra_kvs)`` makes the convert `Plan` of a recipe (`convert.make_plan` or
    `requantize.make_requant_plan` with the output fixed); the header size it implies (tokenizer, the recipe
    JSON itself, split metadata) is measured on the first plan and kept, so later budgets build once."""

    def __init__(
        self,
        args: ModelArgs,
        tensors: list[GTensor],
        base: Recipe,
        build: Callable[[Recipe, tuple[KV, ...]], Any],
        *,
        overrides: list | None = None,
        imatrix: object | None = None,
        sensitivity: dict[str, float] | None = None,
    ):
        self.base, self.build, self.overrides = base, build, overrides or []
        planned = plan_types(base, tensors, args, self.overrides)
        self.fixed, self.groups = adjustable(planned, self.overrides)
        self.rungs = ladder(imatrix=imatrix is not None)
        self.imp = importance(self.groups, args, imatrix, sensitivity)
        self.n_weights = sum(p.tensor.n_elements for p in planned)
        # name -> [(bytes per tensor of the group, loss, type)], undominated
        self.options: dict[str, list[tuple[tuple[int, ...], float, GGMLQuantizationType]]] = {}
        for name, ts in sorted(self.groups.items()):
            cand = [q for q in self.rungs if all(t.shape[-1] % GGML_QUANT_SIZES[q][0] == 0 for t in ts)]
            cand += sorted({_LOSSLESS[t.kind] for t in ts} - set(cand), key=lambda q: q.name)
            opts = [
                (tuple(Planned(t, q, "").nbytes for t in ts), self.imp[name][0] * max(_err(t, q) for t in ts), q)
                for q in cand
            ]
            self.options[name] = [
                o for o in opts if not any(_beats((sum(p[0]), p[1]), (sum(o[0]), o[1])) for p in opts)
            ]
        self._overhead: int | None = None

    def _costs(self, size: bool) -> tuple[int, dict[str, list[tuple[int, float, GGMLQuantizationType]]]]:
        def cost(n: int) -> int:
            return n + (-n % 32) if size else n  # each tensor is padded to the 32-byte alignment in the file

        opts = {n: [(sum(map(cost, b)), loss, q) for b, loss, q in o] for n, o in self.options.items()}
        return sum(cost(p.nbytes) for p in self.fixed), opts

    def _recipe(self, budget: Budget, choice: dict[str, GGMLQuantizationType]) -> Recipe:
        rules = [Rule(q.name, f"--tensor-type {pat.pattern}={q.name}", pat) for pat, q in self.overrides]
        for n in sorted(choice):
            w, how = self.imp[n]
            err = max(_err(t, choice[n]) for t in self.groups[n])
            why = f"{budget.label}: importance {w:.3g} ({how}), err {err:.3g}"
            rules.append(Rule(choice[n].name, why, re.compile("^" + re.escape(n) + "$")))
        desc = (
            f"mix for {budget.text} from base {self.base.name}: {len(choice)} tensors on the ladder "
            f"{'/'.join(q.name for q in self.rungs)} (+ lossless), greedy marginal gain of importance x err per byte"
        )
        nb = {n: sum(Planned(t, q, "").nbytes for t in self.groups[n]) for n, q in choice.items()}
        ft = _file_type(choice, nb, self.base)
        return Recipe(f"TARGET-{budget.label}", ft, desc, (*rules, *self.base.rules))

    def _build(self, recipe: Recipe) -> Any:
        text = json.dumps(recipe_to_json(recipe), separators=(",", ":"))
        return self.build(recipe, (KV(RECIPE_KEY, "str", text),))

    def solve(self, budget: Budget) -> tuple[Any, TargetReport]:
        """The plan of the mix that fits ``budget`` (never over it, within 1% under it) and its report; raises
        `TargetError` when the budget is outside this ladder's range or no mix lands within 1%."""
        size = budget.kind == "size"
        fixed, opts = self._costs(size)
        lo = fixed + sum(min(o[0] for o in v) for v in opts.values())
        hi = fixed + sum(max(o[0] for o in v) for v in opts.values())
        limit = int(budget.value) if size else int(budget.value * self.n_weights / 8)
        what = "--target-size" if size else "--target-bpw"
        overhead = 0
        if size:
            if self._overhead is None:  # measured once: a plan's bytes beyond its padded tensor data
                cheapest = {n: min(v, key=lambda o: (o[0], o[1]))[2] for n, v in opts.items()}
                self._overhead = self._build(self._recipe(budget, cheapest)).total_bytes - lo + _MARGIN
            overhead = self._overhead
        fmt = partial(_fmt, size=size, n_weights=self.n_weights)
        if lo + overhead > limit:
            raise TargetError(
                f"{what} {budget.text}: below the smallest plan, {fmt(lo + overhead)} (every adjustable tensor at "
                f"its cheapest rung; fixed parts from {self.base.name}: {fmt(fixed)}); give a larger budget or a "
                "base --type whose fixed parts are smaller (e.g. IQ2_XXS-MOE: compressor/indexer Q8_0)"
                + ("" if "IQ1_S" in (q.name for q in self.rungs) else "; --imatrix adds the IQ1_S/IQ2_XXS/IQ2_XS rungs")
            )
        if hi + overhead < limit * 0.99:
            raise TargetError(
                f"{what} {budget.text}: above the largest plan, {fmt(hi + overhead)} (every adjustable tensor at "
                "its top rung: lossless or Q8_0); give a budget of at most that, or use --type SOURCE"
            )
        for _ in range(4):  # a header longer than measured: plan again with the excess taken off
            choice = _allocate(opts, limit - overhead - fixed, int(0.01 * limit) - (_MARGIN if size else 0))
            plan = self._build(self._recipe(budget, {n: o[2] for n, o in choice.items()}))
            total = plan.total_bytes if size else sum(p.nbytes for p in plan.entries)
            if total <= limit:
                break
            overhead += total - limit
        else:
            raise TargetError(f"{what} {budget.text}: internal: the plan's header kept growing past the budget")
        if total < limit * 0.99:
            raise TargetError(
                f"{what} {budget.text}: the closest plan is {fmt(total)}, more than 1% under the budget (the "
                "remaining upgrades are larger than the slack); adjust the budget"
            )
        data = sum(p.nbytes for p in plan.entries)
        rungs = [q.name for q in self.rungs]
        return plan, TargetReport(
            budget, limit, total, lo + overhead, hi + overhead, self.n_weights, data, rungs, len(self.groups)
        )


def _beats(a: tuple[int, float], b: tuple[int, float]) -> bool:
    """``a`` makes ``b`` pointless: no more bytes and less loss, or fewer bytes and no more loss (e.g. MXFP4
    against Q8_0 for FP4 experts: smaller and exact)."""
    return (a[0] <= b[0] and a[1] < b[1]) or (a[0] < b[0] and a[1] <= b[1])


def target_plan(
    args: ModelArgs,
    tensors: list[GTensor],
    base: Recipe,
    budget: Budget,
    build: Callable[[Recipe, tuple[KV, ...]], Any],
    **kw: Any,
) -> tuple[Any, TargetReport]:
    """One budget: `TargetProblem(...).solve(budget)`."""
    return TargetProblem(args, tensors, base, build, **kw).solve(budget)


def _fmt(n: int, size: bool, n_weights: int) -> str:
    return f"{n:,} bytes ({n / 1e9:.2f} GB)" if size else f"{8 * n / n_weights:.4f} bpw ({n:,} data bytes)"


def format_target(rep: TargetReport) -> str:
    size = rep.budget.kind == "size"
    unit = "file bytes" if size else "tensor data bytes"
    return "\n".join(
        [
            f"target {rep.budget.text}: limit {rep.limit:,} {unit}, planned {rep.planned:,} "
            f"({100 * rep.planned / rep.limit:.2f}% of the budget), "
            f"{8 * rep.data_bytes / rep.n_weights:.3f} bits per weight over {rep.n_weights:,} weights",
            f"  range of this ladder: {rep.smallest:,} .. {rep.largest:,} {unit}; {rep.adjustable} adjustable tensors; "
            f"ladder {', '.join(rep.ladder)} (+ the lossless store)",
        ]
    )
