"""Names and numbers declared once.

QType table: ggml type ids and block geometry for the types dsv4-gguf quantizes, mirrored from the
C++ table in ``csrc/quant/quant.cpp`` (a test checks the two and the ``gguf`` package agree).
"""

from __future__ import annotations

from typing import NamedTuple

from gguf import GGMLQuantizationType


class QTypeInfo(NamedTuple):
    qtype: GGMLQuantizationType
    block_size: int  # elements per block
    type_size: int  # bytes per block
    vec_dot_type: GGMLQuantizationType  # activation format of the type's dot product
    needs_imatrix: bool  # quantize() refuses to run without importance weights


_Q = GGMLQuantizationType

QTYPES: dict[GGMLQuantizationType, QTypeInfo] = {
    info.qtype: info
    for info in (
        QTypeInfo(_Q.F32, 1, 4, _Q.F32, False),
        QTypeInfo(_Q.F16, 1, 2, _Q.F32, False),
        QTypeInfo(_Q.Q4_0, 32, 18, _Q.Q8_0, False),
        QTypeInfo(_Q.Q4_1, 32, 20, _Q.Q8_1, False),
        QTypeInfo(_Q.Q5_0, 32, 22, _Q.Q8_0, False),
        QTypeInfo(_Q.Q5_1, 32, 24, _Q.Q8_1, False),
        QTypeInfo(_Q.Q8_0, 32, 34, _Q.Q8_0, False),
        QTypeInfo(_Q.Q8_1, 32, 36, _Q.Q8_1, False),
        QTypeInfo(_Q.Q2_K, 256, 84, _Q.Q8_K, False),
        QTypeInfo(_Q.Q3_K, 256, 110, _Q.Q8_K, False),
        QTypeInfo(_Q.Q4_K, 256, 144, _Q.Q8_K, False),
        QTypeInfo(_Q.Q5_K, 256, 176, _Q.Q8_K, False),
        QTypeInfo(_Q.Q6_K, 256, 210, _Q.Q8_K, False),
        QTypeInfo(_Q.Q8_K, 256, 292, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ2_XXS, 256, 66, _Q.Q8_K, True),
        QTypeInfo(_Q.IQ2_XS, 256, 74, _Q.Q8_K, True),
        QTypeInfo(_Q.IQ3_XXS, 256, 98, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ1_S, 256, 50, _Q.Q8_K, True),
        QTypeInfo(_Q.IQ4_NL, 32, 18, _Q.Q8_0, False),
        QTypeInfo(_Q.IQ2_S, 256, 82, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ3_S, 256, 110, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ4_XS, 256, 136, _Q.Q8_K, False),
        QTypeInfo(_Q.IQ1_M, 256, 56, _Q.Q8_K, False),
        QTypeInfo(_Q.BF16, 1, 2, _Q.F32, False),
        QTypeInfo(_Q.MXFP4, 32, 17, _Q.Q8_0, False),
    )
}

# Activation-only formats (the dot products' vec_dot types; no file storage, no imatrix).
ACTIVATION_QTYPES: tuple[GGMLQuantizationType, ...] = (_Q.Q8_1, _Q.Q8_K)
# Storage types.
WEIGHT_QTYPES: tuple[GGMLQuantizationType, ...] = tuple(t for t in QTYPES if t not in ACTIVATION_QTYPES)


# =============================================================================================
# GGUF arch / key / tensor-name tables for llama.cpp's `deepseek4` (converter section, issue 6).
# Checked against the llama.cpp bundled in llama-cpp-python 0.3.36 (src/llama-arch.cpp key and
# tensor names; src/models/deepseek4.cpp load_arch_hparams/load_arch_tensors for value types and
# shapes). The PyPI `gguf` 0.19 has no deepseek4 constants, hence these tables.
# =============================================================================================

GGUF_ARCH = "deepseek4"
GGML_QNT_VERSION = 2  # general.quantization_version
GGUF_DEFAULT_ALIGNMENT = 32
EXPERT_GATING_SQRTSOFTPLUS = 4  # llama_expert_gating_func_type; the loader refuses anything else
TOKENIZER_MODEL = "gpt2"  # byte-level BPE
# llama.cpp has no DSV4 entry in its pre-tokenizer table; the hash of the DSV4 tokenizer.json equals
# JoyAI-LLM's, which is what llama.cpp's own converter writes (src/llama-vocab.cpp maps it).
TOKENIZER_PRE = "joyai-llm"

# gguf-split keys (UINT16, UINT16, INT32) and file name pattern (1-based shard number).
KEY_SPLIT_NO = "split.no"
KEY_SPLIT_COUNT = "split.count"
KEY_SPLIT_TENSORS_COUNT = "split.tensors.count"
SPLIT_NAME_FORMAT = "{prefix}-{no:05d}-of-{count:05d}.gguf"

# Architecture keys, without the "deepseek4." prefix, with the value type llama.cpp reads them as
# (the model loader compares scalar types exactly: UINT32 stored as INT32 fails to load).
ARCH_KEY_TYPES: dict[str, str] = {
    "context_length": "u32",
    "embedding_length": "u32",
    "embedding_length_out": "u32",
    "block_count": "u32",
    "attention.head_count": "u32",
    "attention.head_count_kv": "u32",
    "attention.key_length": "u32",
    "attention.value_length": "u32",
    "attention.layer_norm_rms_epsilon": "f32",
    "attention.q_lora_rank": "u32",
    "attention.sliding_window": "u32",
    "attention.indexer.head_count": "u32",
    "attention.indexer.key_length": "u32",
    "attention.indexer.top_k": "u32",
    "attention.output_group_count": "u32",
    "attention.output_lora_rank": "u32",
    "attention.compress_ratios": "i32[]",
    "attention.compress_rope_freq_base": "f32",
    "rope.dimension_count": "u32",
    "rope.freq_base": "f32",
    "rope.scaling.type": "str",
    "rope.scaling.factor": "f32",
    "rope.scaling.original_context_length": "u32",
    "rope.scaling.yarn_beta_fast": "f32",
    "rope.scaling.yarn_beta_slow": "f32",
    "expert_count": "u32",
    "expert_used_count": "u32",
    "expert_shared_count": "u32",
    "expert_feed_forward_length": "u32",
    "expert_weights_scale": "f32",
    "expert_weights_norm": "bool",
    "expert_gating_func": "u32",
    "swiglu_clamp_exp": "f32[]",
    "swiglu_clamp_shexp": "f32[]",
    "hyper_connection.count": "u32",
    "hyper_connection.sinkhorn_iterations": "u32",
    "hyper_connection.epsilon": "f32",
    "hash_layer_count": "u32",
    "nextn_predict_layers": "u32",
}

# Checkpoint name (block prefix stripped) -> GGUF name template ({bid} = block index).
# Routed experts are stacked per layer into one 3-D tensor; MTP's e_proj/h_proj are fused into
# nextn.eh_proj (ggml {2D, D}: e_proj columns first, as llama.cpp's graph concatenates [e; h]).
TOP_TENSOR_NAMES: dict[str, str] = {
    "embed.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "head.weight": "output.weight",
    "hc_head_fn": "output_hc_fn.weight",
    "hc_head_base": "output_hc_base.weight",
    "hc_head_scale": "output_hc_scale.weight",
}
BLOCK_TENSOR_NAMES: dict[str, str] = {
    "attn_norm.weight": "blk.{bid}.attn_norm.weight",
    "ffn_norm.weight": "blk.{bid}.ffn_norm.weight",
    "hc_attn_fn": "blk.{bid}.hc_attn_fn.weight",
    "hc_attn_base": "blk.{bid}.hc_attn_base.weight",
    "hc_attn_scale": "blk.{bid}.hc_attn_scale.weight",
    "hc_ffn_fn": "blk.{bid}.hc_ffn_fn.weight",
    "hc_ffn_base": "blk.{bid}.hc_ffn_base.weight",
    "hc_ffn_scale": "blk.{bid}.hc_ffn_scale.weight",
    "attn.attn_sink": "blk.{bid}.attn_sinks.weight",
    "attn.wq_a.weight": "blk.{bid}.attn_q_a.weight",
    "attn.q_norm.weight": "blk.{bid}.attn_q_a_norm.weight",
    "attn.wq_b.weight": "blk.{bid}.attn_q_b.weight",
    "attn.wkv.weight": "blk.{bid}.attn_kv.weight",
    "attn.kv_norm.weight": "blk.{bid}.attn_kv_a_norm.weight",
    "attn.wo_a.weight": "blk.{bid}.attn_output_a.weight",
    "attn.wo_b.weight": "blk.{bid}.attn_output_b.weight",
    "attn.compressor.wkv.weight": "blk.{bid}.attn_compressor_kv.weight",
    "attn.compressor.wgate.weight": "blk.{bid}.attn_compressor_gate.weight",
    "attn.compressor.ape": "blk.{bid}.attn_compressor_ape.weight",
    "attn.compressor.norm.weight": "blk.{bid}.attn_compressor_norm.weight",
    "attn.indexer.wq_b.weight": "blk.{bid}.indexer.attn_q_b.weight",
    "attn.indexer.weights_proj.weight": "blk.{bid}.indexer.proj.weight",
    "attn.indexer.compressor.wkv.weight": "blk.{bid}.indexer_compressor_kv.weight",
    "attn.indexer.compressor.wgate.weight": "blk.{bid}.indexer_compressor_gate.weight",
    "attn.indexer.compressor.ape": "blk.{bid}.indexer_compressor_ape.weight",
    "attn.indexer.compressor.norm.weight": "blk.{bid}.indexer_compressor_norm.weight",
    "ffn.gate.weight": "blk.{bid}.ffn_gate_inp.weight",
    "ffn.gate.bias": "blk.{bid}.exp_probs_b.bias",
    "ffn.gate.tid2eid": "blk.{bid}.ffn_gate_tid2eid.weight",
    "ffn.shared_experts.w1.weight": "blk.{bid}.ffn_gate_shexp.weight",
    "ffn.shared_experts.w2.weight": "blk.{bid}.ffn_down_shexp.weight",
    "ffn.shared_experts.w3.weight": "blk.{bid}.ffn_up_shexp.weight",
    # MTP-only tensors (llama.cpp's `--mtp` sidecar layout)
    "enorm.weight": "blk.{bid}.nextn.enorm.weight",
    "hnorm.weight": "blk.{bid}.nextn.hnorm.weight",
    "norm.weight": "blk.{bid}.nextn.shared_head_norm.weight",
}
EXPERT_TENSOR_NAMES: dict[str, str] = {  # ffn.experts.{e}.wN.weight, stacked over e
    "w1": "blk.{bid}.ffn_gate_exps.weight",
    "w2": "blk.{bid}.ffn_down_exps.weight",
    "w3": "blk.{bid}.ffn_up_exps.weight",
}
MTP_EH_PROJ_NAME = "blk.{bid}.nextn.eh_proj.weight"
MTP_FILE_PREFIX = "mtp-"  # llama.cpp names its MTP-only GGUF "mtp-<name>.gguf"

# Most tokens one runtime session holds (csrc/runtime/session.cpp kMaxCtx): the caches' byte counts stay far
# from overflow.  The Python API and the run/chat options check it before the C++ core does.
MAX_CTX = 1 << 32
