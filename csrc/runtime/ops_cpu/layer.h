// Layer-level CPU ops: the attention sub-layer (projections, compressors and indexer, sparse attention,
// grouped output projection; DeepSeek-V4's inference/model.py) and the MoE sub-layer (router, routed experts grouped by expert,
// shared expert; DeepSeek-V4's inference/model.py) over a chunk of T tokens (the attention: of one or several sequences,
// each with its own layer state).  They read and write layer KV state and know nothing of sessions, files or
// scheduling; mHC mixing around them stays with the caller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/ops_cpu/ops.h"
#include "runtime/taps.h"

namespace dsv4 {

// Everything a sub-layer needs besides its activations: the block's weights, numerics options, the
// RoPE table of the block's compression ratio, and the taps of the calling session (names prefixed
// with `pre`, e.g. "layers.3.").
struct LayerCtx {
  const ModelConfig& cfg;
  const BlockWeights& b;
  int layer;
  const OpCtx& ops;
  bool qat;
  const float* freqs;
  Taps& taps;
  const std::string& pre;
};

// One sequence's rows in a chunk of the attention sub-layer: its layer state, the position of its first row,
// its row count and its KV storage dtype.
struct SeqRows {
  LayerState* S;
  int64_t p0, T;
  KvDtype kv;
};
// h: [N][dim] normed attention input, N = the sum of seqs[i].T, the rows of seqs[0] (positions p0..p0+T-1)
// first, then those of seqs[1], ...; out: [N][dim].  One sequence (prefill, decode) or several (batched
// decode): the weight products run over all N rows at once, the state updates and the attention per
// sequence on its own state; every row's bits are those of its sequence run alone.
void attention_layer(const LayerCtx& lc, const std::vector<SeqRows>& seqs, const float* h, float* out);
// The window KV rows of a window-only layer (ratio 0, the MTP block) for positions p0..p0+T-1 whose attention
// output nobody reads: the rows attention_layer would write, bit for bit, without queries, attention or output.
void attention_kv_rows(const LayerCtx& lc, LayerState& S, const float* h, int64_t T, int64_t p0);
// h: [T][dim] normed FFN input; tokens: the chunk's ids (hash routing); out: [T][dim].
void moe_layer(const LayerCtx& lc, const float* h, const int32_t* tokens, int64_t T, float* out);

}  // namespace dsv4
