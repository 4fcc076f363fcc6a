"""Test GGUFs for the runtime: reference-model weights (keyed by checkpoint name) written as a
llama.cpp ``deepseek4`` GGUF with one of several type recipes, and read back dequantized and keyed by
checkpoint name so the reference model runs on exactly the weights the runtime sees.

Stand-in until the converter (issue 6) is used for every variant; names and keys follow llama.cpp
(src/llama-arch.cpp, src/models/deepseek4.cpp, conversion/deepseek.py).  MTP tensors are not written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFWriter

from dsv4_gguf import _C
from dsv4_gguf.config import ModelArgs

ARCH = "deepseek4"

# checkpoint leaf -> GGUF leaf inside a block
_BLOCK = {
    "attn_norm.weight": "attn_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "hc_attn_fn": "hc_attn_fn.weight",
    "hc_attn_base": "hc_attn_base.weight",
    "hc_attn_scale": "hc_attn_scale.weight",
    "hc_ffn_fn": "hc_ffn_fn.weight",
    "hc_ffn_base": "hc_ffn_base.weight",
    "hc_ffn_scale": "hc_ffn_scale.weight",
    "attn.attn_sink": "attn_sinks.weight",
    "attn.wq_a.weight": "attn_q_a.weight",
    "attn.q_norm.weight": "attn_q_a_norm.weight",
    "attn.wq_b.weight": "attn_q_b.weight",
    "attn.wkv.weight": "attn_kv.weight",
    "attn.kv_norm.weight": "attn_kv_a_norm.weight",
    "attn.wo_a.weight": "attn_output_a.weight",
    "attn.wo_b.weight": "attn_output_b.weight",
    "attn.compressor.wkv.weight": "attn_compressor_kv.weight",
    "attn.compressor.wgate.weight": "attn_compressor_gate.weight",
    "attn.compressor.ape": "attn_compressor_ape.weight",
    "attn.compressor.norm.weight": "attn_compressor_norm.weight",
    "attn.indexer.wq_b.weight": "indexer.attn_q_b.weight",
    "attn.indexer.weights_proj.weight": "indexer.proj.weight",
    "attn.indexer.compressor.wkv.weight": "indexer_compressor_kv.weight",
    "attn.indexer.compressor.wgate.weight": "indexer_compressor_gate.weight",
    "attn.indexer.compressor.ape": "indexer_compressor_ape.weight",
    "attn.indexer.compressor.norm.weight": "indexer_compressor_norm.weight",
    "ffn.gate.weight": "ffn_gate_inp.weight",
    "ffn.gate.bias": "exp_probs_b.bias",
    "ffn.gate.tid2eid": "ffn_gate_tid2eid.weight",
    "ffn.shared_experts.w1.weight": "ffn_gate_shexp.weight",
    "ffn.shared_experts.w3.weight": "ffn_up_shexp.weight",
    "ffn.shared_experts.w2.weight": "ffn_down_shexp.weight",
}
_TOP = {
    "embed.weight": "token_embd.weight",
    "head.weight": "output.weight",
    "norm.weight": "output_norm.weight",
    "hc_head_fn": "output_hc_fn.weight",
    "hc_head_base": "output_hc_base.weight",
    "hc_head_scale": "output_hc_scale.weight",
}
_EXPERTS = {"w1": "ffn_gate_exps.weight", "w3": "ffn_up_exps.weight", "w2": "ffn_down_exps.weight"}
# weights stored BF16 in the release (kept BF16 by the MXFP4_MOE recipe, like llama.cpp's converter)
_BF16_SOURCE = ("token_embd", "output.weight", "ffn_gate_inp", "compressor_kv", "compressor_gate", "indexer.proj")

VARIANTS = ("F32", "BF16", "Q8_0", "MXFP4_MOE", "Q4_K_M")


def _pick(variant: str, gname: str, cols: int) -> Q:
    """Storage type of one 2-D+ weight under a recipe (1-D tensors, hc_*_fn, ape stay F32)."""
    if variant == "F32":
        return Q.F32
    if variant == "BF16":
        return Q.BF16
    expert = "_exps" in gname
    if variant == "Q8_0":
        return Q.Q8_0
    if variant == "MXFP4_MOE":
        if expert:
            return Q.MXFP4
        return Q.BF16 if any(s in gname for s in _BF16_SOURCE) else Q.Q8_0
    if variant == "Q4_K_M":
        if "output.weight" in gname:
            return Q.Q6_K if cols % 256 == 0 else Q.Q8_0
        if cols % 256:
            return Q.Q8_0  # K-quants need 256-element rows (llama-quantize falls back too)
        return Q.Q6_K if "down" in gname else Q.Q4_K
    raise ValueError(f"unknown variant {variant!r}")


def gguf_tensors(args: ModelArgs, weights: dict) -> dict[str, np.ndarray]:
    """Checkpoint-keyed fp32 weights -> GGUF-named arrays (numpy order, experts stacked)."""
    out: dict[str, np.ndarray] = {}
    for k, v in _TOP.items():
        out[v] = np.asarray(weights[k], dtype=np.float32)
    for i in range(args.n_layers):
        p = f"layers.{i}."
        for k, v in _BLOCK.items():
            if p + k in weights:
                a = np.asarray(weights[p + k])
                out[f"blk.{i}.{v}"] = a.astype(np.int32) if k.endswith("tid2eid") else a.astype(np.float32)
        for w, v in _EXPERTS.items():
            out[f"blk.{i}.{v}"] = np.stack(
                [
                    np.asarray(weights[f"{p}ffn.experts.{e}.{w}.weight"], dtype=np.float32)
                    for e in range(args.n_routed_experts)
                ]
            )
    return out


def write_keys(w: GGUFWriter, args: ModelArgs) -> None:
    """The deepseek4 metadata of ``args`` (llama.cpp key names and scalar types) and a "test"
    tokenizer with one token per id (the parity tests feed ids directly)."""
    a = args
    u32 = {
        "block_count": a.n_layers,
        "context_length": 1 << 20,
        "embedding_length": a.dim,
        "attention.head_count": a.n_heads,
        "attention.head_count_kv": 1,
        "attention.key_length": a.head_dim,
        "attention.value_length": a.head_dim,
        "rope.dimension_count": a.rope_head_dim,
        "rope.scaling.original_context_length": a.original_seq_len,
        "attention.q_lora_rank": a.q_lora_rank,
        "attention.sliding_window": a.window_size,
        "expert_count": a.n_routed_experts,
        "expert_used_count": a.n_activated_experts,
        "expert_shared_count": 1,
        "expert_feed_forward_length": a.moe_inter_dim,
        "expert_gating_func": 4,
        "attention.indexer.head_count": a.index_n_heads,
        "attention.indexer.key_length": a.index_head_dim,
        "attention.indexer.top_k": a.index_topk,
        "attention.output_group_count": a.o_groups,
        "attention.output_lora_rank": a.o_lora_rank,
        "hyper_connection.count": a.hc_mult,
        "hyper_connection.sinkhorn_iterations": a.hc_sinkhorn_iters,
        "hash_layer_count": a.n_hash_layers,
        "vocab_size": a.vocab_size,
    }
    for k, v in u32.items():
        w.add_uint32(f"{ARCH}.{k}", int(v))
    f32 = {
        "attention.layer_norm_rms_epsilon": a.norm_eps,
        "rope.freq_base": a.rope_theta,
        "rope.scaling.factor": a.rope_factor,
        "rope.scaling.yarn_beta_fast": float(a.beta_fast),
        "rope.scaling.yarn_beta_slow": float(a.beta_slow),
        "expert_weights_scale": a.route_scale,
        "attention.compress_rope_freq_base": a.compress_rope_theta,
        "hyper_connection.epsilon": a.hc_eps,
    }
    for k, v in f32.items():
        w.add_float32(f"{ARCH}.{k}", float(v))
    w.add_string(f"{ARCH}.rope.scaling.type", "yarn")
    w.add_bool(f"{ARCH}.expert_weights_norm", True)
    w.add_array(f"{ARCH}.swiglu_clamp_exp", [float(a.swiglu_limit)] * a.n_layers)
    w.add_array(f"{ARCH}.swiglu_clamp_shexp", [float(a.swiglu_limit)] * a.n_layers)
    w.add_array(f"{ARCH}.attention.compress_ratios", [int(r) for r in a.compress_ratios])
    w.add_uint32("general.file_type", 0)
    # "test" tokenizer of llama.cpp: one token per id (the parity tests feed ids directly)
    w.add_string("tokenizer.ggml.model", "test")
    w.add_array("tokenizer.ggml.tokens", [f"<t{i}>" for i in range(a.vocab_size)])
    w.add_array("tokenizer.ggml.token_type", [1] * a.vocab_size)
    w.add_array("tokenizer.ggml.scores", [0.0] * a.vocab_size)


def write_gguf(path: Path, args: ModelArgs, weights: dict, variant: str = "F32", split_max_tensors: int = 0) -> Path:
    """Write ``weights`` (checkpoint names, fp32) as a deepseek4 GGUF with the ``variant`` recipe
    (``split_max_tensors``: gguf-split style shards; the first shard's path is returned)."""
    path = Path(path)
    w = GGUFWriter(str(path), ARCH, split_max_tensors=split_max_tensors)
    write_keys(w, args)
    for name, arr in gguf_tensors(args, weights).items():
        if arr.dtype == np.int32:
            w.add_tensor(name, arr)
            continue
        if arr.ndim == 1 or name.endswith(
            ("hc_attn_fn.weight", "hc_ffn_fn.weight", "output_hc_fn.weight", "_ape.weight")
        ):
            w.add_tensor(name, arr.astype(np.float32))
            continue
        qt = _pick(variant, name, arr.shape[-1])
        if qt == Q.F32:
            w.add_tensor(name, arr)
            continue
        flat = np.ascontiguousarray(arr.reshape(-1, arr.shape[-1]))
        data = _C.quantize_rows(int(qt), flat)
        w.add_tensor(name, data.reshape(*arr.shape[:-1], data.shape[-1]), raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if split_max_tensors:
        shards = sorted(path.parent.glob(f"{path.stem}-00001-of-*.gguf"))
        assert len(shards) == 1, shards
        return shards[0]
    return path


def read_back(path: Path, args: ModelArgs, fallback: dict) -> dict[str, np.ndarray]:
    """GGUF -> checkpoint-keyed fp32 weights (dequantized exactly as stored); names the GGUF lacks
    (MTP) come from ``fallback``."""
    r = GGUFReader(str(path))
    g: dict[str, np.ndarray] = {}
    for t in r.tensors:
        shape = tuple(int(x) for x in reversed(t.shape))  # numpy order
        data = np.asarray(t.data)
        qt = Q(int(t.tensor_type))
        if qt in (Q.F32, Q.I32):
            g[t.name] = np.array(data.reshape(shape))  # writable copy (memmap views are read-only)
        else:
            rows = int(np.prod(shape[:-1]))
            raw = np.frombuffer(data.tobytes(), dtype=np.uint8).reshape(rows, -1)
            g[t.name] = _C.dequantize_rows(int(qt), raw).reshape(shape)
    out = dict(fallback)
    for k, v in _TOP.items():
        out[k] = g[v]
    for i in range(args.n_layers):
        p = f"layers.{i}."
        for k, v in _BLOCK.items():
            if f"blk.{i}.{v}" in g:
                out[p + k] = g[f"blk.{i}.{v}"].astype(np.int64) if k.endswith("tid2eid") else g[f"blk.{i}.{v}"]
        for wn, v in _EXPERTS.items():
            st = g[f"blk.{i}.{v}"]
            for e in range(args.n_routed_experts):
                out[f"{p}ffn.experts.{e}.{wn}.weight"] = st[e]
    return out


def _plan(args: ModelArgs) -> list[tuple[str, tuple[int, ...]]]:
    """(GGUF name, numpy shape) of every main-model tensor of ``args`` (experts stacked)."""
    from dsv4_gguf.layout import checkpoint_tensors

    out: list[tuple[str, tuple[int, ...]]] = []
    for t in checkpoint_tensors(args):
        if t.kind == "scale" or t.name.startswith("mtp."):
            continue
        if t.name in _TOP:
            out.append((_TOP[t.name], t.logical_shape))
            continue
        parts = t.name.split(".")
        i, leaf = int(parts[1]), ".".join(parts[2:])
        if leaf.startswith("ffn.experts."):
            e, wn = int(parts[4]), parts[5]
            if e == 0:
                out.append((f"blk.{i}.{_EXPERTS[wn]}", (args.n_routed_experts, *t.logical_shape)))
            continue
        out.append((f"blk.{i}.{_BLOCK[leaf]}", t.logical_shape))
    return out


def write_streaming(path: Path, args: ModelArgs, variant: str, seed: int = 0, pool_rows: int = 512) -> Path:
    """A full-width GGUF for speed benchmarks, written tensor by tensor (bounded memory): every
    quantized matrix is rows drawn at random from a pool of ``pool_rows`` quantized N(0, 1/cols) rows
    (valid blocks, O(1) activations, every byte still read at run time).  Not a parity fixture."""
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), ARCH)
    write_keys(w, args)
    plan = []
    for name, shape in _plan(args):
        cols = shape[-1]
        if name.endswith("tid2eid.weight"):
            qt = Q.I32
        elif len(shape) == 1 or name.endswith(("_fn.weight", "_ape.weight")):
            qt = Q.F32
        else:
            qt = _pick(variant, name, cols)
        if qt in (Q.F32, Q.I32):
            nbytes = int(np.prod(shape)) * 4
            w.add_tensor_info(name, shape, np.dtype(np.float32 if qt == Q.F32 else np.int32), nbytes)
        else:
            rb = int(_C.quantize_rows(int(qt), np.zeros((1, cols), np.float32)).shape[1])
            rows = int(np.prod(shape[:-1]))
            w.add_tensor_info(name, (*shape[:-1], rb), np.dtype(np.uint8), rows * rb, raw_dtype=qt)
        plan.append((name, shape, qt))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    assert w.fout is not None
    f = w.fout[0]
    align = w.data_alignment

    def put(b: bytes) -> None:  # tensor bytes + padding, in tensor-info order (what llama.cpp requires)
        f.write(b)
        f.write(b"\0" * ((-len(b)) % align))

    f.write(b"\0" * ((-f.tell()) % align))
    pools: dict[tuple[int, int], np.ndarray] = {}
    for name, shape, qt in plan:
        cols = shape[-1]
        if qt == Q.I32:
            put(rng.integers(0, args.n_routed_experts, shape).astype(np.int32).tobytes())
            continue
        if qt == Q.F32:
            leaf = name.rsplit(".", 2)[-2] if name.endswith(".weight") or name.endswith(".bias") else name
            if "norm" in leaf or leaf.endswith("_scale"):
                data = np.ones(shape, np.float32)
            elif leaf.endswith("_fn"):
                data = (rng.standard_normal(shape) / np.sqrt(cols)).astype(np.float32)
            else:  # sinks, base, ape, bias
                data = np.zeros(shape, np.float32)
            put(data.tobytes())
            continue
        key = (int(qt), cols)
        if key not in pools:
            pools[key] = _C.quantize_rows(
                int(qt), (rng.standard_normal((pool_rows, cols)) / np.sqrt(cols)).astype(np.float32)
            )
        pool = pools[key]
        rows = int(np.prod(shape[:-1]))
        chunk = max(1, (64 << 20) // pool.shape[1])
        for r0 in range(0, rows, chunk):
            f.write(pool[rng.integers(0, pool_rows, min(chunk, rows - r0))].tobytes())
        f.write(b"\0" * ((-(rows * pool.shape[1])) % align))
    f.flush()
    f.close()
    return Path(path)
