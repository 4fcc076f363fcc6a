"""Checkpoint -> GGUF tensor map for llama.cpp's ``deepseek4`` (and back, for loading GGUFs by checkpoint name).

`gguf_tensors(args)` lists every output tensor of the main file and of the MTP sidecar with its ggml
shape and the checkpoint tensors it is made of.  Layout decisions (all from llama.cpp's converter and
loader, see ``dsv4_gguf.constants``): routed experts stacked per layer; ``tid2eid`` I64 -> I32; MTP
not in the main file but in llama.cpp's ``mtp-*.gguf`` sidecar layout, where the MTP block is
``blk.{n_layers}`` with ``nextn.*`` names and ``mtp.0.hc_head_*`` becomes the root ``output_hc_*``.
No I/O, no quantization.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsv4_gguf.config import ModelArgs
from dsv4_gguf.constants import (
    BLOCK_TENSOR_NAMES,
    EXPERT_TENSOR_NAMES,
    MTP_EH_PROJ_NAME,
    TOP_TENSOR_NAMES,
)
from dsv4_gguf.layout import TensorSpec, block_prefix, checkpoint_tensors

__all__ = ["GTensor", "gguf_tensors", "MAIN", "MTP", "source_kind", "use_more_bits"]

MAIN, MTP = "main", "mtp"


@dataclass(frozen=True)
class GTensor:
    """One GGUF tensor: name, numpy-order logical shape, and its checkpoint sources.

    ``assemble``: ``one`` (a single checkpoint tensor), ``stack`` (experts along a new axis 0),
    ``cols`` (concatenated along the input axis: MTP e_proj | h_proj).  ``kind`` is the source storage
    (``fp8``, ``fp4``, ``bf16``, ``f32``, ``i64``); ``block`` the layer index (``None`` top-level).
    """

    name: str
    shape: tuple[int, ...]
    sources: tuple[str, ...]
    assemble: str
    kind: str
    block: int | None
    file: str = MAIN

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def source_kind(spec: TensorSpec) -> str:
    if spec.kind in ("fp8", "fp4"):
        return spec.kind
    return {"BF16": "bf16", "F32": "f32", "I64": "i64", "F16": "f16"}[spec.dtype]


def use_more_bits(i: int, n: int) -> bool:
    """llama-quantize's choice of layers that get more bits (first/last eighth, every third in between)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _local(name: str, prefix: str) -> str:
    return name[len(prefix) + 1 :]


def gguf_tensors(args: ModelArgs, *, mtp: bool = True) -> list[GTensor]:
    """Every GGUF tensor in file order: main file (top-level, then blocks), then the MTP sidecar."""
    specs = [s for s in checkpoint_tensors(args) if s.kind != "scale"]
    by_name = {s.name: s for s in specs}
    out: list[GTensor] = []
    top = [s for s in specs if s.block is None]
    for s in top:
        out.append(GTensor(TOP_TENSOR_NAMES[s.name], s.logical_shape, (s.name,), "one", source_kind(s), None))
    for b in range(args.n_layers):
        out.extend(_block(args, b, [s for s in specs if s.block == b], MAIN))
    if mtp and args.n_mtp_layers:
        # Sidecar: embed/norm/head of the main model, the MTP block's own hc_head as the root collapse.
        for s in top:
            src = s.name if not s.name.startswith("hc_head") else f"mtp.0.{s.name}"
            ss = by_name[src]
            out.append(GTensor(TOP_TENSOR_NAMES[s.name], ss.logical_shape, (src,), "one", source_kind(ss), None, MTP))
        for b in range(args.n_layers, args.n_blocks):
            out.extend(_block(args, b, [s for s in specs if s.block == b], MTP))
    return out


def _block(args: ModelArgs, b: int, specs: list[TensorSpec], file: str) -> list[GTensor]:
    prefix = block_prefix(args, b)
    out: list[GTensor] = []
    experts: dict[str, list[TensorSpec]] = {"w1": [], "w2": [], "w3": []}
    eh: list[TensorSpec] = []
    for s in specs:
        loc = _local(s.name, prefix)
        if loc.startswith("ffn.experts."):
            experts[loc.split(".")[3]].append(s)
            continue
        if loc in ("e_proj.weight", "h_proj.weight"):
            eh.append(s)
            continue
        if loc.startswith("hc_head_"):
            continue  # MTP's hc_head_*: the sidecar's root output_hc_* (see gguf_tensors)
        shape = s.logical_shape
        if loc == "ffn.gate.tid2eid":
            kind = "i64"
        else:
            kind = source_kind(s)
        out.append(GTensor(BLOCK_TENSOR_NAMES[loc].format(bid=b), shape, (s.name,), "one", kind, b, file))
    if eh:
        e, h = sorted(eh, key=lambda s: s.name)  # e_proj before h_proj: llama.cpp concatenates [e; h]
        shape = (e.logical_shape[0], e.logical_shape[1] + h.logical_shape[1])
        out.insert(0, GTensor(MTP_EH_PROJ_NAME.format(bid=b), shape, (e.name, h.name), "cols", "fp8", b, file))
    for w in ("w1", "w2", "w3"):
        lst = sorted(experts[w], key=lambda s: int(s.name.split(".experts.")[1].split(".")[0]))
        if not lst:
            continue
        shape = (len(lst), *lst[0].logical_shape)
        out.append(
            GTensor(
                EXPERT_TENSOR_NAMES[w].format(bid=b),
                shape,
                tuple(s.name for s in lst),
                "stack",
                source_kind(lst[0]),
                b,
                file,
            )
        )
    return out
