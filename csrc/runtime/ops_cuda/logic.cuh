// Per-thread logic of the CUDA kernels that is more than arithmetic (mHC Sinkhorn, the compressor state
// machine, the bitonic compare-exchange of the top-k), as __host__ __device__ functions: the kernels call
// them, and the host runners in cuda/ops_host.cu execute the very same code on the CPU for the tests that
// run without a device.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/ops_cuda/dequant.cuh"  // DSV4_HD

namespace dsv4::cudaops {

DSV4_HD float sigmoid_hd(float x) { return 1.0f / (1.0f + expf(-x)); }

// One token's mHC coefficients (DeepSeek-V4's inference/model.py): pre/post [hc], comb [hc*hc] row = source; hc <= 4.
// Sinkhorn order of the reference: row softmax + eps, column norm, then iters-1 x (row norm, column norm).
DSV4_HD void hc_coeffs_one(const float* m, const float* scale, const float* base, int hc, int iters, float eps,
                           float* pre, float* post, float* comb) {
  float c[16];
  for (int j = 0; j < hc; ++j) {
    pre[j] = sigmoid_hd(m[j] * scale[0] + base[j]) + eps;
    post[j] = 2.0f * sigmoid_hd(m[hc + j] * scale[1] + base[hc + j]);
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

// "a before b": by_idx ? idx ascending : (key descending, idx ascending) -- the CPU's stable sort order.
DSV4_HD bool topk_before(float ka, int32_t ia, float kb, int32_t ib, int by_idx) {
  if (by_idx) return ia < ib;
  return ka > kb || (ka == kb && ia < ib);
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

}  // namespace dsv4::cudaops
