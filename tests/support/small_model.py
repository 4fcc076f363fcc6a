"""The small test model (tiny preset, 1,024-token vocabulary) as GGUFs made the way users make them: the
reference model's seeded weights (`dsv4_gguf.reference.random_weights`, the statistics the parity bounds were set
on) written as a release-format checkpoint (`dsv4_gguf.synth.write_synthetic(values=...)`: FP8 / FP4 with E8M0
scales, BF16, F32) and converted by the converter (`make_plan` / `convert` with a recipe of quantize/recipes); the
reference model loads the GGUF back through `open_gguf(...).checkpoint_weights()`, i.e. exactly the weights the
runtime sees.

Fixture glue only: no checkpoint->GGUF name table, no GGUF key writer, no GGUF reader of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dsv4_gguf.config import PRESETS, ModelArgs

__all__ = ["small_args", "small_weights", "write_checkpoint", "convert", "SmallModels", "reference_model"]


def small_args(vocab: int = 1024) -> ModelArgs:
    """The tiny preset (SWA, HCA, CSA and hash layers, MTP) with ``vocab`` tokens: the head matmul of the
    full 129,280-token vocabulary would dominate every runtime test."""
    return PRESETS["tiny"].replace(vocab_size=vocab).validate()


def _cut_tokenizer(ckpt: Path, vocab: int) -> None:
    """Keep the ids below ``vocab`` of the release tokenizer `write_synthetic` puts in the checkpoint: the three
    special tokens, the 256 byte-level tokens (ids <= 258) and the earliest merges, so every byte still
    encodes.  The converter refuses (rightly) a tokenizer.json whose ids do not fit config.json's vocab_size."""
    p = ckpt / "tokenizer.json"
    tok = json.loads(p.read_text("utf-8"))
    model = tok["model"]
    if max([*model["vocab"].values(), *(a["id"] for a in tok["added_tokens"])]) < vocab:
        return  # the whole vocabulary fits
    kept = {t: i for t, i in model["vocab"].items() if i < vocab}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in kept and b in kept and a + b in kept:
            merges.append(m)
    model["vocab"], model["merges"] = kept, merges
    tok["added_tokens"] = [a for a in tok["added_tokens"] if a["id"] < vocab]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(tok, ensure_ascii=False), "utf-8")
    os.replace(tmp, p)


def small_weights(args: ModelArgs, seed: int = 0) -> dict[str, np.ndarray]:
    """``random_weights(args, seed)`` as numpy: every weight of the checkpoint layout (MTP blocks included),
    float32 (int64 ``tid2eid``) in logical shapes."""
    from dsv4_gguf.reference import random_weights

    return {k: v.numpy() for k, v in random_weights(args, seed).items()}


def write_checkpoint(args: ModelArgs, out: Path, seed: int = 0) -> Path:
    """``small_weights(args, seed)`` as a checkpoint in the release format at ``out``: each weight rounded to its
    release storage (FP8 E4M3 with 128x128 E8M0 scales, FP4 e2m1 experts with 1x32 E8M0 scales, BF16, F32)."""
    from dsv4_gguf.synth import write_synthetic

    path = write_synthetic(args, out, values=small_weights(args, seed))
    _cut_tokenizer(path, args.vocab_size)
    return path


def convert(
    ckpt: Path, out: Path, variant: str, *, split_max_tensors: int = 0, tensor_types: Sequence[str] = ()
) -> Path:
    """``dsv4-gguf convert CKPT -o OUT --type VARIANT --no-mtp [--split-max-tensors N] [--tensor-type P=T ...]``
    through the library; returns the path to load (the first shard of a split)."""
    from dsv4_gguf.quantize.convert import convert as run
    from dsv4_gguf.quantize.convert import make_plan
    from dsv4_gguf.quantize.recipes import load_recipe, parse_tensor_type

    from dsv4_gguf.checkpoint import Checkpoint

    with Checkpoint(ckpt) as ck:
        plan = make_plan(
            ck.args,
            load_recipe(variant),
            Path(out),
            ckpt_dir=ck.path,
            name="small",
            overrides=[parse_tensor_type(t) for t in tensor_types],
            mtp=False,
            split_max_tensors=split_max_tensors,
        )
        run(plan, ck)
    return plan.files[0].path


class SmallModels:
    """One checkpoint of ``small_weights(args, seed)`` (written on first use) and its GGUF per variant (converted
    on first use); a session fixture holds one, so each is made once per test session."""

    def __init__(self, root: Path, args: ModelArgs, seed: int = 0):
        self.root, self.args, self.seed = Path(root), args, seed
        self._ckpt: Path | None = None
        self._ggufs: dict[str, Path] = {}

    @property
    def ckpt(self) -> Path:
        if self._ckpt is None:
            self._ckpt = write_checkpoint(self.args, self.root / f"ckpt-seed{self.seed}", self.seed)
        return self._ckpt

    def gguf(self, variant: str) -> Path:
        if variant not in self._ggufs:
            self._ggufs[variant] = convert(self.ckpt, self.root / f"small-{variant}.gguf", variant)
        return self._ggufs[variant]


def reference_model(args: ModelArgs, path: Path, qat: bool = True) -> Any:
    """The PyTorch reference on the GGUF's weights (dequantized as stored); the MTP block, which the
    converted file lacks (--no-mtp) and forward never runs, keeps zero placeholders."""
    from dsv4_gguf import open_gguf
    from dsv4_gguf.reference import RefOptions, Transformer, load_weights

    model = Transformer(args, RefOptions(qat=qat))
    mtp = {k: v.zero_() for k, v in model.state_dict().items() if k.startswith("mtp.")}
    g = open_gguf(path)
    try:
        load_weights(model, {**mtp, **dict(g.checkpoint_weights())})
    finally:
        g.close()
    return model
