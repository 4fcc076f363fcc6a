"""`dsv4-gguf requantize IN.gguf OUT.gguf --type VARIANT`: a ``deepseek4`` GGUF (ours or llama.cpp's)
to another variant.

The plan is the converter's, built from the input's ModelArgs, so recipes see each tensor's original
checkpoint storage (``fp8``/``fp4``/...) through the name map.  A tensor whose planned type equals its
stored type is copied byte for byte; everything else is dequantized to float32 and quantized again
(row blocks, one expert at a time).  An input that is not SOURCE (every tensor in SOURCE's type) cannot
give SOURCE back, so that target is refused; from such an input the output records where it came from
in ``dsv4.requantized_from`` (variant and bits per weight of the blocks, chained over requantizations).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

from dsv4_gguf.gguf_io import KV
from dsv4_gguf.gguf_model import GGUFModel, dequantize_raw
from dsv4_gguf.names import MTP

from .convert import Plan, make_plan
from .produce import quant_checked, row_block
from .recipes import Planned, Recipe, load_recipe, plan_types

__all__ = ["make_requant_plan", "produce_from_gguf", "stored_tensor", "tokenizer_kvs_from", "ORIGIN_KEY"]

ORIGIN_KEY = "dsv4.requantized_from"

_TOK_TYPES = {
    "tokenizer.ggml.model": "str",
    "tokenizer.ggml.pre": "str",
    "tokenizer.ggml.tokens": "str[]",
    "tokenizer.ggml.token_type": "i32[]",
    "tokenizer.ggml.merges": "str[]",
    "tokenizer.ggml.bos_token_id": "u32",
    "tokenizer.ggml.eos_token_id": "u32",
    "tokenizer.ggml.padding_token_id": "u32",
    "tokenizer.ggml.add_bos_token": "bool",
    "tokenizer.ggml.add_eos_token": "bool",
    "tokenizer.chat_template": "str",
}


def tokenizer_kvs_from(md: dict) -> list[KV]:
    return [KV(k, t, md[k]) for k, t in _TOK_TYPES.items() if k in md]


def _mismatch(m: GGUFModel, variant: str) -> str | None:
    """The first tensor whose stored type is not the one ``variant`` gives it ("'name' is STORED, VARIANT has
    PLANNED"), or None when the input's types are exactly that variant's."""
    for p in plan_types(load_recipe(variant), m.gtensors(), m.args):
        got = m.info(p.tensor.name, MTP if p.tensor.file == MTP else "main").qtype
        if got != p.qtype:
            return f"'{p.tensor.name}' is {got.name}, {variant} has {p.qtype.name}"
    return None


def _label(m: GGUFModel) -> str:
    """What the input is: our variant when its tensor types bear out ``general.quantized_by`` (llama-quantize
    keeps that key when it changes the types), else llama.cpp's file type; with the blocks' bits per weight."""
    from gguf import LlamaFileType

    md = m.metadata
    ours = re.fullmatch(r"dsv4-gguf \((.+)\)", str(md.get("general.quantized_by", "")))
    try:
        name = ours.group(1) if ours and _mismatch(m, ours.group(1)) is None else ""
    except ValueError:  # a variant this version has no recipe for
        name = ""
    if not name:
        ft = md.get("general.file_type")
        try:
            name = LlamaFileType(int(ft)).name.removeprefix("MOSTLY_") if ft is not None else "unknown type"
        except ValueError:
            name = f"file_type {ft}"
    # over the blocks' weights (as eval's bpw_blocks): on small models the vocabulary matrices dominate
    refs = [r for r in map(m.info, m.names()) if r.name.startswith("blk.") and not r.qtype.name.startswith("I")]
    n_el = sum(int(np.prod(r.shape)) for r in refs)
    return f"{name} ({8 * sum(r.nbytes for r in refs) / max(n_el, 1):.2f} bpw in blk.*)"


def make_requant_plan(
    m: GGUFModel,
    recipe: Recipe,
    out: Path,
    *,
    overrides=None,
    split_max_size: int = 0,
    only: re.Pattern[str] | None = None,
    extra_kvs: tuple[KV, ...] = (),
) -> Plan:
    name = str(m.metadata.get("general.name", "DeepSeek-V4"))
    lossy = m.metadata.get(ORIGIN_KEY)  # an earlier requantization from a lossy file
    why = _mismatch(m, "SOURCE")
    origin = None
    if lossy is not None or why is not None:
        label = _label(m)
        origin = f"{lossy} -> {label}" if lossy is not None else label
        if recipe.name == "SOURCE":
            raise ValueError(
                f"{m.path}: is {origin}, not SOURCE ({why or 'requantized from ' + str(lossy)}); SOURCE is the "
                f"release's weights bit for bit and cannot be rebuilt from a lossy file: convert the checkpoint "
                f"(dsv4-gguf convert CKPT_DIR --type SOURCE), or requantize to a lossy --type such as Q8_0"
            )
    plan = make_plan(
        m.args,
        recipe,
        out,
        ckpt_dir=None,
        name=name,
        overrides=overrides,
        mtp=m.mtp is not None,
        split_max_size=split_max_size,
        only=only,
        extra_kvs=extra_kvs,
    )
    have = {(t.file, t.name) for t in m.gtensors()}
    tok = tokenizer_kvs_from(m.metadata)
    for f in plan.files:
        missing = [p.tensor.name for p in f.entries if (p.tensor.file, p.tensor.name) not in have]
        if missing:
            raise ValueError(f"{m.path}: tensors {missing[:3]} are missing from the input GGUF")
        if f.kvs and any(kv.key.startswith("tokenizer.") for kv in f.kvs):
            f.kvs = [kv for kv in f.kvs if not kv.key.startswith("tokenizer.")] + tok
        if origin is not None and any(kv.key == "general.quantized_by" for kv in f.kvs):
            at = max(i for i, kv in enumerate(f.kvs) if kv.key.startswith("general.")) + 1
            f.kvs.insert(at, KV(ORIGIN_KEY, "str", origin))
        f.finalize()
    return plan


def stored_tensor(m: GGUFModel, p: Planned) -> tuple[np.ndarray, GGMLQuantizationType]:
    """The input's raw array of ``p``'s tensor and its stored type (what produce_from_gguf reads)."""
    file = MTP if p.tensor.file == MTP else "main"
    return m.raw(p.tensor.name, file), m.info(p.tensor.name, file).qtype


def produce_from_gguf(p: Planned, *, model: GGUFModel, imatrix: np.ndarray | None = None) -> Iterator[np.ndarray]:
    t = p.tensor
    file = MTP if t.file == MTP else "main"
    info = model.info(t.name, file)
    raw = model.raw(t.name, file)
    if info.qtype == p.qtype:
        step = max(1, (64 << 20) // max(1, raw[0].nbytes if raw.ndim > 1 else raw.nbytes))
        for r0 in range(0, raw.shape[0] if raw.ndim else 1, step):
            yield np.ascontiguousarray(raw[r0 : r0 + step] if raw.ndim else raw).view(np.uint8).reshape(-1)
        return
    if t.assemble == "stack":
        for e in range(t.shape[0]):
            x = dequantize_raw(raw[e], info.qtype)
            yield quant_checked(x, p.qtype, imatrix[e] if imatrix is not None else None).reshape(-1)
        return
    if p.qtype.name == "I32":
        yield np.asarray(dequantize_raw(raw, info.qtype), np.int32).view(np.uint8).reshape(-1)
        return
    im = imatrix[0] if imatrix is not None else None
    if raw.ndim <= 1 or len(t.shape) == 1:
        x = dequantize_raw(raw, info.qtype).astype(np.float32).reshape(t.shape)
        yield (
            quant_checked(x, p.qtype, im).view(np.uint8).reshape(-1)
            if p.qtype.name != "F32"
            else x.view(np.uint8).reshape(-1)
        )
        return
    step = row_block(t.shape[-1])
    for r0 in range(0, t.shape[0], step):
        x = np.ascontiguousarray(dequantize_raw(raw[r0 : r0 + step], info.qtype), dtype=np.float32)
        if p.qtype.name == "F32":
            yield x.view(np.uint8).reshape(-1)
        else:
            yield quant_checked(x, p.qtype, im).reshape(-1)
