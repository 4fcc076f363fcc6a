"""Variant recipes (data files in ``recipes/``) and the per-tensor type plan they imply.

`plan_types` turns a recipe, ``--tensor-type`` overrides and the tensor list of `names.gguf_tensors`
into one `Planned` entry per GGUF tensor (type, bytes, why).  Rule semantics are described in
``recipes/README.md``.  Sizes are exact: they are what the writer will put in the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from dsv4_gguf.config import ModelArgs
from dsv4_gguf.names import GTensor, use_more_bits

__all__ = [
    "Recipe",
    "Planned",
    "RecipeError",
    "load_recipe",
    "load_recipe_file",
    "recipe_names",
    "plan_types",
    "parse_tensor_type",
    "SUPPORTED_TYPES",
]

Q = GGMLQuantizationType
SUPPORTED_TYPES: dict[str, GGMLQuantizationType] = {
    t.name: t
    for t in (
        Q.F32,
        Q.F16,
        Q.BF16,
        Q.Q8_0,
        Q.Q4_0,
        Q.Q4_1,
        Q.Q5_0,
        Q.Q5_1,
        Q.Q2_K,
        Q.Q3_K,
        Q.Q4_K,
        Q.Q5_K,
        Q.Q6_K,
        Q.IQ2_XXS,
        Q.IQ2_XS,
        Q.IQ2_S,
        Q.IQ3_XXS,
        Q.IQ3_S,
        Q.IQ1_S,
        Q.IQ1_M,
        Q.IQ4_NL,
        Q.IQ4_XS,
        Q.MXFP4,
    )
}
_KEEP = {"bf16": Q.BF16, "f32": Q.F32, "f16": Q.F16, "fp8": Q.BF16, "fp4": Q.MXFP4}


class RecipeError(ValueError):
    """Unknown variant, malformed recipe file or bad ``--tensor-type`` override."""


@dataclass(frozen=True)
class Rule:
    type: str
    reason: str
    match: re.Pattern[str] | None = None
    source: str | None = None
    when: str | None = None


@dataclass(frozen=True)
class Recipe:
    name: str
    file_type: int
    description: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Planned:
    tensor: GTensor
    qtype: GGMLQuantizationType
    reason: str

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.tensor.n_elements // block * size

    @property
    def lossless(self) -> bool:
        """Whether the stored values reproduce the checkpoint's dequantized values exactly."""
        k, t = self.tensor.kind, self.qtype
        return (
            t == Q.F32
            or (t == Q.BF16 and k in ("bf16", "fp8"))
            or (t == Q.MXFP4 and k == "fp4")
            or (t == Q.I32 and k == "i64")
        )


def _dir() -> Any:
    return resources.files("dsv4_gguf.quantize") / "recipes"


def recipe_names() -> list[str]:
    out = []
    for f in _dir().iterdir():
        if f.name.endswith(".json"):
            out.append(json.loads(f.read_text(encoding="utf-8"))["name"])
    order = ["SOURCE", "MXFP4_MOE", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K-MOE", "Q3_K_M", "IQ3_XXS-MOE", "Q2_K"]
    order += ["IQ2_XXS-DS4", "IQ2_XXS-MOE", "IQ1_S-MOE"]
    return sorted(out, key=lambda n: (order.index(n) if n in order else 99, n))


def load_recipe(name: str) -> Recipe:
    fn = name.lower().replace("-", "_") + ".json"
    f = _dir() / fn
    if not f.is_file():
        raise RecipeError(f"unknown variant {name!r}; choose one of {', '.join(recipe_names())}")
    try:
        raw = json.loads(f.read_text(encoding="utf-8"))
        rules = []
        for r in raw["rules"]:
            t = r["type"]
            if t != "keep" and t not in SUPPORTED_TYPES:
                raise RecipeError(f"recipe {fn}: unsupported type {t!r}")
            rules.append(
                Rule(t, r["reason"], re.compile(r["match"]) if "match" in r else None, r.get("source"), r.get("when"))
            )
        return Recipe(raw["name"], int(raw["file_type"]), raw["description"], tuple(rules))
    except (KeyError, TypeError, json.JSONDecodeError, re.error) as e:
        raise RecipeError(f"recipe {fn} is malformed: {e}") from None


def load_recipe_file(path: str | Path) -> Recipe:
    """``--recipe FILE``: a recipe JSON in the recipes/ format (e.g. a ``--target-size`` mix), checked field by
    field; every error names the file, the rule and the fix."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"--recipe {p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecipeError(f"--recipe {p}: not a JSON file ({e})") from None
    fields = {"name": str, "file_type": int, "description": str, "rules": list}
    for k, typ in fields.items():
        if not isinstance(raw, dict) or k not in raw or not isinstance(raw[k], typ) or isinstance(raw[k], bool):
            raise RecipeError(f"--recipe {p}: needs '{k}' ({typ.__name__}); the format is quantize/recipes/README.md's")
    rules = []
    for i, r in enumerate(raw["rules"]):
        where = f"--recipe {p}: rule {i}"
        if not isinstance(r, dict) or not isinstance(r.get("type"), str) or not isinstance(r.get("reason"), str):
            raise RecipeError(f"{where}: needs string 'type' and 'reason', got {r!r:.120}")
        extra = set(r) - {"match", "source", "when", "type", "reason"}
        if extra:
            raise RecipeError(f"{where}: unknown fields {sorted(extra)} (match, source, when, type, reason)")
        if r["type"] != "keep" and r["type"] not in SUPPORTED_TYPES:
            raise RecipeError(f"{where}: unsupported type {r['type']!r}; one of keep, {', '.join(SUPPORTED_TYPES)}")
        if r.get("source") not in (None, *_KEEP, "i64") or r.get("when") not in (None, "more_bits"):
            raise RecipeError(f"{where}: 'source' must be one of {', '.join(_KEEP)}; 'when' only 'more_bits'")
        try:
            pat = re.compile(r["match"]) if "match" in r else None
        except (re.error, TypeError) as e:
            raise RecipeError(f"{where}: bad 'match' pattern {r['match']!r} ({e})") from None
        rules.append(Rule(r["type"], r["reason"], pat, r.get("source"), r.get("when")))
    return Recipe(raw["name"], raw["file_type"], raw["description"], tuple(rules))


def parse_tensor_type(text: str) -> tuple[re.Pattern[str], GGMLQuantizationType]:
    """``PATTERN=TYPE`` (llama-quantize ``--tensor-type`` syntax; PATTERN is a regex searched in the name)."""
    if "=" not in text:
        raise RecipeError(f"--tensor-type {text!r}: expected PATTERN=TYPE, e.g. 'attn_kv=q8_0'")
    pat, typ = text.rsplit("=", 1)
    qt = SUPPORTED_TYPES.get(typ.upper())
    if qt is None:
        raise RecipeError(f"--tensor-type {text!r}: unknown type {typ!r}; one of {', '.join(SUPPORTED_TYPES)}")
    try:
        return re.compile(pat), qt
    except re.error as e:
        raise RecipeError(f"--tensor-type {text!r}: bad pattern ({e})") from None


def _fits(t: GTensor, qt: GGMLQuantizationType) -> bool:
    return t.shape[-1] % GGML_QUANT_SIZES[qt][0] == 0


def _choose(
    recipe: Recipe, t: GTensor, args: ModelArgs, overrides: list[tuple[re.Pattern[str], GGMLQuantizationType]]
) -> tuple[GGMLQuantizationType, str]:
    if t.kind == "i64":
        return Q.I32, "hash-routing table: I64 -> I32 (llama.cpp's type; values < n_routed_experts)"
    if len(t.shape) == 1:
        return Q.F32, "1-D tensor (norm, bias, sink, hc base/scale): F32 (BF16 widens exactly)"
    for pat, qt in overrides:
        if pat.search(t.name):
            return qt, f"--tensor-type {pat.pattern}={qt.name}"
    for r in recipe.rules:
        if r.match is not None and not r.match.search(t.name):
            continue
        if r.source is not None and r.source != t.kind:
            continue
        if r.when == "more_bits" and not (
            t.block is not None and t.block < args.n_layers and use_more_bits(t.block, args.n_layers)
        ):
            continue
        if r.type == "keep":
            return _KEEP[t.kind], r.reason
        qt = SUPPORTED_TYPES[r.type]
        if qt == Q.MXFP4 and t.kind != "fp4":
            pass  # MXFP4 requantization of non-FP4 data is allowed (ggml's quantizer), just not lossless
        return qt, r.reason
    raise RecipeError(f"recipe {recipe.name}: no rule matches tensor '{t.name}'")


def plan_types(
    recipe: Recipe,
    tensors: list[GTensor],
    args: ModelArgs,
    overrides: list[tuple[re.Pattern[str], GGMLQuantizationType]] | None = None,
) -> list[Planned]:
    out = []
    for t in tensors:
        qt, why = _choose(recipe, t, args, overrides or [])
        if qt not in (Q.I32,) and not _fits(t, qt):
            fb = Q.Q8_0 if _fits(t, Q.Q8_0) else Q.F16
            why = f"{why}; row length {t.shape[-1]} is not a multiple of the {qt.name} block -> {fb.name} (fallback)"
            qt = fb
        out.append(Planned(t, qt, why))
    return out
