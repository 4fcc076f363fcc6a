// Per-thread logic of the CUDA kernels, as __host__ __device__ functions: the kernels call them, and the host
// runners in ops_cuda/ops_host.cu execute the very same code on the CPU (lane by lane, with the warp and block
// reductions replayed in the device's order) for the tests that run without a device.  The math the CPU ops
// share (rounding, RoPE pair, norm factor, router) is runtime/ops_shared.h; what is here is the kernels' own
// decomposition (which thread does which element, in which order): mHC Sinkhorn, the compressor state machine,
// the bitonic top-k, RMSNorm partial sums, RoPE and fake-quant threads, the router's lane scan, SwiGLU.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/ops_shared.h"

namespace dsv4::cudaops {

// One token's mHC coefficients (DeepSeek-V4's inference/model.py): pre/post [hc], comb [hc*hc] row = source; hc <= 4.
// Sinkhorn order of the reference: row softmax + eps, column norm, then iters-1 x (row norm, column norm).
DSV4_HD void hc_coeffs_one(const float* m, const float* scale, const float* base, int hc, int iters, float eps,
                           float* pre, float* post, float* comb) {
  float c[16];
  for (int j = 0; j < hc; ++j) {
    pre[j] = sigmoid(m[j] * scale[0] + base[j]) + eps;
    post[j] = 2.0f * sigmoid(m[hc + j] * scale[1] + base[hc + j]);
  }
  for (int j = 0; j < hc; ++j) {
    float mx = -INFINITY;
    for (int k = 0; k < hc; ++k) {
      c[j * 4 + k] = m[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
      mx = fmaxf(mx, c[j * 4 + k]);
    }
    float s = 0.f;
    for (int k = 0; k < hc; ++k) s += (c[j * 4 + k] = expf(c[j * 4 + k] - mx));
    for (int k = 0; k < hc; ++k) c[j * 4 + k] = c[j * 4 + k] / s + eps;
  }
  for (int it = 0; it < iters; ++it) {
    if (it > 0)
      for (int j = 0; j < hc; ++j) {
        float s = 0.f;
        for (int k = 0; k < hc; ++k) s += c[j * 4 + k];
        for (int k = 0; k < hc; ++k) c[j * 4 + k] /= (s + eps);
      }
    for (int k = 0; k < hc; ++k) {
      float s = 0.f;
      for (int j = 0; j < hc; ++j) s += c[j * 4 + k];
      for (int j = 0; j < hc; ++j) c[j * 4 + k] /= (s + eps);
    }
  }
  for (int j = 0; j < hc; ++j)
    for (int k = 0; k < hc; ++k) comb[j * hc + k] = c[j * 4 + k];
}

// Compressor state machine (DeepSeek-V4's inference/model.py) for channel c < d of one token at `pos`: state kv/score
// [coff*m][coff*d] with the slot layout of ops_cpu/compressor.cpp.  Channel c owns channels c and d + c
// of every slot, so threads need no synchronisation.  Returns true (and the pooled value in *out) when
// the token completes a block; the state then advances (m = 4: current block -> previous block).
DSV4_HD bool compressor_channel(float* kv, float* score, int m, int d, const float* a, const float* g, int64_t pos,
                                int c, float* out) {
  const bool overlap = m == 4;
  const int coff = overlap ? 2 : 1, w = coff * d, off = overlap ? m : 0;
  const int slot = off + static_cast<int>(pos % m);
  for (int h = 0; h < coff; ++h) {
    kv[slot * w + h * d + c] = a[h * d + c];
    score[slot * w + h * d + c] = g[h * d + c];
  }
  if ((pos + 1) % m != 0) return false;
  float mx = -INFINITY;
  if (overlap)
    for (int i = 0; i < m; ++i) mx = fmaxf(mx, fmaxf(score[i * w + c], score[(m + i) * w + d + c]));
  else
    for (int i = 0; i < m; ++i) mx = fmaxf(mx, score[i * w + c]);
  // as the CPU: sum of exps first, then values weighted by exp / sum
  float s = 0.f, acc = 0.f;
  if (overlap) {
    for (int i = 0; i < m; ++i) s += expf(score[i * w + c] - mx);
    for (int i = 0; i < m; ++i) s += expf(score[(m + i) * w + d + c] - mx);
    for (int i = 0; i < m; ++i) acc += kv[i * w + c] * (expf(score[i * w + c] - mx) / s);
    for (int i = 0; i < m; ++i) acc += kv[(m + i) * w + d + c] * (expf(score[(m + i) * w + d + c] - mx) / s);
  } else {
    for (int i = 0; i < m; ++i) s += expf(score[i * w + c] - mx);
    for (int i = 0; i < m; ++i) acc += kv[i * w + c] * (expf(score[i * w + c] - mx) / s);
  }
  *out = acc;
  for (int i = 0; i < m; ++i)
    for (int h = 0; h < coff; ++h) {
      const int cur = (off + i) * w + h * d + c;
      if (overlap) {
        kv[i * w + h * d + c] = kv[cur];
        score[i * w + h * d + c] = score[cur];
      }
      kv[cur] = 0.f;
      score[cur] = -INFINITY;
    }
  return true;
}

// "a before b": by_idx ? idx ascending : ranks_before (key descending, idx ascending: the CPU's stable sort order).
DSV4_HD bool topk_before(float ka, int32_t ia, float kb, int32_t ib, int by_idx) {
  if (by_idx) return ia < ib;
  return ranks_before(ka, ia, kb, ib);
}

// One compare-exchange of bitonic stage (k, j) for element i (acts when its partner i ^ j is above it).
DSV4_HD void bitonic_pair(float* key, int32_t* idx, int64_t i, int64_t j, int64_t k, int by_idx) {
  const int64_t l = i ^ j;
  if (l <= i) return;
  const bool up = (i & k) == 0;
  const bool swap =
      up ? topk_before(key[l], idx[l], key[i], idx[i], by_idx) : topk_before(key[i], idx[i], key[l], idx[l], by_idx);
  if (swap) {
    const float tk = key[i];
    key[i] = key[l];
    key[l] = tk;
    const int32_t ti = idx[i];
    idx[i] = idx[l];
    idx[l] = ti;
  }
}

// ---- norm_rope.cu ----

constexpr int kNormThreads = 256;  // block size of rms_norm and hc_scale_mixes (one block per row)

// Thread tid's share of a row's sum of squares: elements tid, tid + nthreads, ..., each a fused multiply-add (as
// the device compiler contracts `ss += x * x`); block_sum (common.cuh) then adds the threads' shares.
DSV4_HD float sumsq_partial(const float* x, int64_t n, int tid, int nthreads) {
  float ss = 0.f;
  for (int64_t i = tid; i < n; i += nthreads) ss = fmaf(x[i], x[i], ss);
  return ss;
}

// Thread i of rope_tail: pair i % (rd / 2) of row i / (rd / 2), at position pos0 + row / rows_per_pos.
DSV4_HD void rope_tail_thread(float* x, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
                              bool inverse, int64_t i) {
  const int64_t half = rd / 2, row = i / half, k = i % half;
  rope_pair(x + row * n + (n - rd) + 2 * k, static_cast<float>(pos0 + row / rows_per_pos), freqs[k], inverse);
}

// Fake-quant of one element of a block whose absolute max is amax (fp4: e2m1, else e4m3).
DSV4_HD float fake_quant_scale(float amax, bool fp4) { return fp4 ? fp4_block_scale(amax) : fp8_block_scale(amax); }
DSV4_HD float fake_quant_value(float x, float s, bool fp4) {
  return fp4 ? fp4_fake_quant_one(x, s) : fp8_fake_quant_one(x, s);
}

// ---- moe.cu ----

// One round of the router's warp top-k, lane `lane`'s part: the first of sel[lane], sel[lane + 32], ... by
// ranks_before, or (-inf, INT32_MAX) for a lane without entries.  The warp then merges the lanes' picks with
// ranks_before over an xor-shuffle tree, so the round picks what route_topk's round picks.
DSV4_HD void route_lane_best(const float* sel, int64_t E, int lane, float* best, int* bi) {
  float b = -INFINITY;
  int i = 0x7fffffff;
  for (int64_t e = lane; e < E; e += 32)
    if (ranks_before(sel[e], e, b, i)) {
      b = sel[e];
      i = static_cast<int>(e);
    }
  *best = b;
  *bi = i;
}

// Element i of the clamped SwiGLU of T rows of I: wt[i / I] * swiglu_one(g, u) (wt may be null).
DSV4_HD float swiglu_at(const float* g, const float* u, const float* wt, int64_t I, float limit, int64_t i) {
  const float r = swiglu_one(g[i], u[i], limit);
  return wt ? wt[i / I] * r : r;
}

}  // namespace dsv4::cudaops
