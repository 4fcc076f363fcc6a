"""Seeded random weights for the reference model, keyed by the release's checkpoint tensor names
(``layout.checkpoint_tensors``).

Used by tests (and by anyone needing a model before a checkpoint exists): every non-scale tensor of
``checkpoint_tensors(args)`` in its logical (dequantized) shape, scaled so activations stay O(1) through
all blocks.  It does not imitate trained statistics.
"""

from __future__ import annotations

import math

import torch

from ..config import ModelArgs
from ..layout import checkpoint_tensors

__all__ = ["random_weights"]


def random_weights(args: ModelArgs, seed: int = 0) -> dict[str, torch.Tensor]:
    """fp32 tensors (int64 for ``tid2eid``) for every model weight of ``args``."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std + mean

    out: dict[str, torch.Tensor] = {}
    for t in checkpoint_tensors(args):
        if t.kind == "scale":
            continue
        shape = t.logical_shape
        leaf = t.name.rsplit(".", 2)
        last = t.name.split(".")[-1]
        if last == "tid2eid":
            E = args.n_routed_experts
            perm = torch.argsort(torch.rand(shape[0], E, generator=g), dim=-1)
            out[t.name] = perm[:, : shape[1]].to(torch.int64)  # distinct experts per token
        elif t.name == "embed.weight":
            out[t.name] = randn(*shape)
        elif t.name.endswith("norm.weight"):
            out[t.name] = randn(*shape, std=0.1, mean=1.0)
        elif last.endswith("_fn"):  # hc_*_fn / hc_head_fn: mixes ~ N(0, 1) on the normalised stream
            out[t.name] = randn(*shape, std=1.0 / math.sqrt(shape[1]))
        elif last.endswith("_base"):
            out[t.name] = randn(*shape, std=0.5)
        elif last.endswith("_scale"):
            out[t.name] = randn(*shape, std=0.1, mean=1.0)
        elif last == "attn_sink":
            out[t.name] = randn(*shape)
        elif last == "ape":
            out[t.name] = randn(*shape, std=0.5)
        elif last == "bias":
            out[t.name] = randn(*shape, std=0.1)
        elif len(shape) == 2:  # projections [out, in]
            out[t.name] = randn(*shape, std=1.0 / math.sqrt(shape[1]))
        else:  # pragma: no cover - every layout entry is covered above
            raise AssertionError(f"random_weights: no rule for {t.name} {shape} ({leaf})")
    return out
