// CPU ops of the DeepSeek-V4 forward pass, one family per file (DeepSeek-V4's inference/model.py).  Every op works on f32
// activations; weights are WeightViews of any supported GGUF type.  *_ref functions are the scalar
// definitions; fast paths (AVX2 dot, quantized-activation matmul) are checked against them by tests.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/cpu_features.h"
#include "runtime/model.h"
#include "runtime/ops_shared.h"  // e4m3_round, e2m1_round, rope_pair, route_score, ...: shared with ops_cuda/
#include "runtime/thread_pool.h"

namespace dsv4 {

// An allocator whose elements start uninitialized (std::vector<float>(n) writes n zeros first), for outputs a
// product then writes in full: a decode step's logits are the vocabulary times the batch, megabytes per step.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <class U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
// Logits [rows][vocab] as the head writes them.
using Logits = std::vector<float, DefaultInitAllocator<float>>;

struct OpCtx {
  ThreadPool* pool = nullptr;
  // exact: every weight row is dequantized to f32 and dotted with f32 activations (the reference's
  // math).  Otherwise quantized weights use the ggml-style dot with activations quantized to the
  // type's vec_dot format (Q8_0 / Q8_K), as llama.cpp does.
  bool exact = false;
  Impl impl = Impl::Auto;
};

// fn(begin, end) over [0, n) rows that do not depend on each other (a batch's sequences or tokens, a step's
// experts): split over the pool, or on this thread when `serial` (taps record in call order) or n <= 1.
inline void for_rows(int64_t n, bool serial, const OpCtx& ctx, const std::function<void(int64_t, int64_t)>& fn) {
  if (serial || n <= 1)
    fn(0, n);
  else
    ctx.pool->parallel_for(n, 1, fn);
}

// ---- linear.cpp ----
float dot_f32_ref(const float* a, const float* b, int64_t n);
float dot_f32(const float* a, const float* b, int64_t n);  // the process's kernel level, dot_f32_ref's bits
// y[t][r] = W[r,:] . x[t,:] for t < T; x is [T][w.cols], y is [T][y_stride] (y_stride >= w.rows).
void linear(const WeightView& w, const float* x, int64_t T, float* y, int64_t y_stride, const OpCtx& ctx);
inline void linear(const WeightView& w, const float* x, int64_t T, float* y, const OpCtx& ctx) {
  linear(w, x, T, y, w.rows, ctx);
}
void dequant_row(const WeightView& w, int64_t r, float* out);
// Several independent products in one parallel job (one thread wake-up and one balance for all of
// them, e.g. every routed expert of a decode step); each value equals linear()'s bit for bit.  Inputs
// that several tasks share (same x, same activation type) are quantized once.
struct LinearTask {
  WeightView w;
  const float* x;
  int64_t T;
  float* y;
  int64_t ys;
};
void linear_batch(const std::vector<LinearTask>& tasks, const OpCtx& ctx);
// y[i] += a * x[i]: product rounded, then the sum (never fused), so every SIMD level gives the same bits.
void axpy_f32(float* y, float a, const float* x, int64_t n);

// ---- norm_rope.cpp ----
void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps);  // w may be nullptr
// Per-pair angular frequencies of a block (DeepSeek-V4's inference/model.py): base rope_theta without YaRN for ratio 0,
// compress_rope_theta with the YaRN ramp otherwise.
std::vector<float> rope_freqs(const ModelConfig& c, int ratio);
// Rotate the last `rd` dims of x (adjacent pairs) by pos*freq; inverse = conjugate rotation.
void rope_tail(float* x, int64_t n, int64_t rd, int64_t pos, const float* freqs, bool inverse);
void fp8_fake_quant(float* x, int64_t n, int64_t block);
void fp4_fake_quant(float* x, int64_t n, int64_t block);
void hadamard(float* x, int64_t n);

// ---- mhc.cpp ----
// From the 24 (or 4 for the head) mixes of one token: pre [hc], post [hc], comb [hc*hc] (row = source).
void hc_coeffs(const float* mixes, const float* scale, const float* base, int hc, int iters, float eps, float* pre,
               float* post, float* comb);
// mixes[t] = (fn . x[t]) * rsqrt(mean(x[t]^2) + norm_eps) for the flattened streams x [T][hc*D].
void hc_mixes(const WeightView& fn, const float* x, int64_t T, float norm_eps, float* mixes, const OpCtx& ctx);
void hc_collapse(const float* x, const float* pre, int hc, int64_t D, float* y);
void hc_expand(const float* f, const float* x, const float* post, const float* comb, int hc, int64_t D, float* out);

// ---- attention.cpp ----
// One query token: q [H][hd], keys = rows of (window rows, compressed rows); out [H][hd].
void sparse_attention(const float* q, int64_t H, int64_t hd, const std::vector<const float*>& keys, const float* sinks,
                      float scale, float* out);

// ---- compressor.cpp ----
struct CompressorState {
  int ratio = 0, d = 0, coff = 1;
  std::vector<float> kv, score;  // [coff*ratio][coff*d], empty slot = (0, -inf)
  void init(int ratio_, int d_);
};
// Feed one token's projections a, g ([coff*d] each, g already + ape) at position pos; when the token
// completes a block, writes the pooled (un-normalised) entry to `out` [d] and returns true.
bool compressor_step(CompressorState& st, const float* a, const float* g, int64_t pos, float* out);

// ---- moe.cpp ----
struct Routing {
  std::vector<int> idx;  // [K]
  std::vector<float> w;  // [K]
  float margin = 0.f;    // K-th minus (K+1)-th biased score (inf for hash layers)
};
Routing route(const float* logits, int64_t E, int K, const float* bias, const int32_t* hash_row, float route_scale,
              bool norm);
// SwiGLU expert with clamp on T token rows: y[t] = W2 (w[t] * silu(min(W1 x, L)) * clamp(W3 x, -L, L)).
// mid (optional, [T][I]): receives W2's input rows (imatrix collection); nullptr costs nothing.
void expert_ffn(const WeightView& w1, const WeightView& w3, const WeightView& w2, const float* x, int64_t T,
                const float* wt, float limit, float* y, const OpCtx& ctx, float* mid = nullptr);

}  // namespace dsv4
