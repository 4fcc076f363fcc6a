// The IQ4_XS, IQ4_NL and IQ2_XXS quantization algorithms (ggml's quantize_row_iq4_nl_impl with ntry 7 and
// quantize_row_iq2_xxs_impl), templated over the same `Search` policy as kquant_impl.h: the scalar
// policy here, the AVX2 one (vectorised code lookup and neighbour search) in quant_avx2.cpp.
#pragma once

#include <stdexcept>

#include "quant/iquant_common.h"
#include "quant/kquant_impl.h"

namespace dsv4 {
namespace kq {
namespace {  // internal linkage, see kquant_impl.h

// ------------------------------------------------------------------ IQ4_XS
inline int best_index_iq4nl(float x) {
  const int8_t* val = kValuesIQ4NL;
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < val[mav])
      mu = mav;
    else
      ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// Nearest IQ4_NL code of id*xb[j] for 32 values (the part the AVX2 policy vectorises).
inline void iq4_index32_scalar(const float* xb, float id, uint8_t* idx) {
  for (int j = 0; j < 32; ++j) idx[j] = static_cast<uint8_t>(best_index_iq4nl(id * xb[j]));
}

// The scale search of one 32-value sub-block in ggml's quantize_row_iq4_nl_impl (ntry = 7, the
// ggml_quantize_chunk path of both IQ4_XS and IQ4_NL): start at -max/values[0], then try 2*ntry+1
// inverse scales and keep the weighted least-squares scale of the best.  0 for an all-(near-)zero block.
template <class S>
float iq4nl_subblock_scale(const float* xb, const float* weight) {
  constexpr int ntry = 7;
  const int8_t* values = kValuesIQ4NL;
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  if (amax < kGroupMaxEps) return 0.f;
  float d = -max / values[0];
  float id = 1 / d;
  float sumqx = 0, sumq2 = 0;
  uint8_t idx[32];
  S::iq4_index32(xb, id, idx);
  for (int j = 0; j < 32; ++j) {
    const float q = values[idx[j]];
    const float w = weight[j];
    sumqx += w * q * xb[j];
    sumq2 += w * q * q;
  }
  d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
  float best = d * sumqx;
  for (int itry = -ntry; itry <= ntry; ++itry) {
    id = (itry + values[0]) / max;
    sumqx = sumq2 = 0;
    S::iq4_index32(xb, id, idx);
    for (int j = 0; j < 32; ++j) {
      const float q = values[idx[j]];
      const float w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      d = sumqx / sumq2;
      best = d * sumqx;
    }
  }
  return d;
}

// ggml's quantize_row_iq4_nl_impl(QK_K, 32, ..., ntry = 7); used with and without imatrix.
template <class S>
void quantize_iq4_xs_block(const float* x, const float* qw, BlockIQ4_XS* y) {
  float scales[QK_K / 32], weight[32];
  uint8_t L[QK_K];
  float sigma2 = 0;
  for (int j = 0; j < QK_K; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / QK_K;
  std::memset(y->qs, 0, QK_K / 2);
  y->d = f32_to_fp16(0.f);
  float max_scale = 0, amax_scale = 0;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    const float* xb = x + 32 * ib;
    if (qw) {
      for (int j = 0; j < 32; ++j) weight[j] = qw[32 * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    } else {
      for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
    }
    const float d = iq4nl_subblock_scale<S>(xb, weight);
    scales[ib] = d;
    const float abs_d = std::fabs(d);
    if (abs_d > amax_scale) {
      amax_scale = abs_d;
      max_scale = d;
    }
  }
  y->scales_h = 0;
  const float d = -max_scale / 32;
  y->d = f32_to_fp16(d);
  const float id = d != 0.f ? 1 / d : 0.f;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    int l = nearest_int(id * scales[ib]);
    l = std::max(-32, std::min(31, l));
    const float dl = d * l;
    const float idl = dl != 0.f ? 1 / dl : 0.f;
    S::iq4_index32(x + 32 * ib, idl, L + 32 * ib);
    l += 32;
    const uint8_t l_l = static_cast<uint8_t>(l & 0xf), l_h = static_cast<uint8_t>(l >> 4);
    if (ib % 2 == 0)
      y->scales_l[ib / 2] = l_l;
    else
      y->scales_l[ib / 2] |= static_cast<uint8_t>(l_l << 4);
    y->scales_h |= static_cast<uint16_t>(l_h << (2 * ib));
  }
  for (int i = 0; i < QK_K / 32; ++i)
    for (int j = 0; j < 16; ++j) y->qs[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

// ggml's quantize_row_iq4_nl_impl(32, 32, ..., ntry = 7), the quantize_iq4_nl (ggml_quantize_chunk) path,
// with or without imatrix: one sub-block, its scale stored as is, codes re-chosen with 1/(fp32 scale).
// (ggml's quantize_row_iq4_nl_ref, ntry = -1, is a different search and is not what files are written with.)
template <class S>
void quantize_iq4_nl_block(const float* x, const float* qw, BlockIQ4_NL* y) {
  float weight[32];
  float sigma2 = 0;
  for (int j = 0; j < 32; ++j) sigma2 += x[j] * x[j];
  sigma2 *= 2.f / 32;
  if (qw) {
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + x[j] * x[j]);
  } else {
    for (int j = 0; j < 32; ++j) weight[j] = x[j] * x[j];
  }
  const float d = iq4nl_subblock_scale<S>(x, weight);
  y->d = f32_to_fp16(d);
  const float id = d != 0.f ? 1 / d : 0.f;
  uint8_t L[32];
  S::iq4_index32(x, id, L);
  for (int j = 0; j < 16; ++j) y->qs[j] = static_cast<uint8_t>(L[j] | (L[16 + j] << 4));
}

// ------------------------------------------------------------------ IQ2_XXS (ggml quantize_row_iq2_xxs_impl)
inline int ScalarSearch::iq2_neighbour(const uint16_t* nb, const Iq2xxsTables& t, const float* xval,
                                       const float* weight, float scale, int8_t* L) {
  return best_neighbour<8>(nb, t.grid_odd, xval, weight, scale, L, "IQ2_XXS");
}

inline void ScalarSearch::iq2_find_all(const GridSearch* s, int n, const Iq2xxsTables& t) {
  for (int j = 0; j < n; ++j) iq2_neighbour(s[j].nb, t, s[j].xval, s[j].weight, s[j].scale, s[j].L);
}

inline void ScalarSearch::trial_sums(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval,
                                     float* sumqx, float* sumq2) {
  trial_sums_scalar(ntrials, L, weight, xval, sumqx, sumq2);
}

inline void ScalarSearch::iq4_index32(const float* xb, float id, uint8_t* idx) { iq4_index32_scalar(xb, id, idx); }

template <class S>
void quantize_row_iq2_xxs(const float* x, void* vy, int64_t n, const float* qw) {
  if (!qw) throw std::invalid_argument("IQ2_XXS quantization requires importance weights (imatrix)");
  const Iq2xxsTables& t = iq2xxs_tables();
  const uint64_t* grid = t.grid_odd;
  const int32_t* map = t.map.data();
  const uint16_t* nbrs = t.neighbours.data();
  constexpr int kMaxQ = 3;
  BlockIQ2_XXS* y = static_cast<BlockIQ2_XXS*>(vy);
  float scales[QK_K / 32], weight[32], xval[32], waux[32];
  int8_t L[32];
  uint8_t block_signs[4];
  uint32_t q2[2 * (QK_K / 32)];
  auto lookup = [&](const int8_t* Lg, const float* xv, const float* wv, float scale, int8_t* Lout) {
    const uint16_t u = grid_key<8, 2>(Lg);
    int gi = map[u];
    if (gi < 0) gi = S::iq2_neighbour(nbrs - map[u] - 1, t, xv, wv, scale, Lout);
    return gi;
  };
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    y[ibl].d = f32_to_fp16(0.f);
    std::memset(q2, 0, QK_K / 4);
    float max_scale = 0;
    const float* xbl = x + QK_K * ibl;
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    const float sigma2 = sumx2 / QK_K;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float* xb = xbl + 32 * ib;
      const float* w = qw + QK_K * ibl + 32 * ib;
      for (int i = 0; i < 32; ++i) weight[i] = w[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      for (int i = 0; i < 32; ++i) waux[i] = std::sqrt(weight[i]);
      // signs are stored with even parity, 7 bits
      for (int k = 0; k < 4; ++k) block_signs[k] = fold_signs8(xb + 8 * k, weight + 8 * k, true, xval + 8 * k);
      float max = xval[0];
      for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
      if (max < kGroupMaxEps) {
        scales[ib] = 0;
        std::memset(L, 0, 32);
        continue;
      }
      float scale = kq::make_qp_quants(32, kMaxQ + 1, xval, reinterpret_cast<uint8_t*>(L), weight);
      const float eff_max = scale * kMaxQ;
      if (eff_max <= 0) {
        scales[ib] = 0;
        std::memset(L, 0, 32);
        continue;
      }
      // ggml runs the 13 trials one after the other; each trial's levels depend only on its scale, so all
      // trials' levels come first (the off-grid searches handed to the policy together), then their fit
      // sums, then ggml's sequential choice: per trial the same floats in the same order (as iq3_subblock)
      constexpr int ntrials = 13;
      alignas(32) int8_t Lt[ntrials][32];
      GridSearch todo[ntrials * 4];
      int ntodo = 0;
      for (int it = 0; it < ntrials; ++it) {
        const float id = (2 * kMaxQ - 1 + (it - 6) * 0.1f) / eff_max;
        const float this_scale = 1 / id;
        for (int k = 0; k < 4; ++k) {
          odd_levels(8, id, xval + 8 * k, kMaxQ, Lt[it] + 8 * k);
          const int gi = map[grid_key<8, 2>(Lt[it] + 8 * k)];
          if (gi < 0) todo[ntodo++] = {nbrs - gi - 1, xval + 8 * k, waux + 8 * k, this_scale, Lt[it] + 8 * k};
        }
      }
      S::iq2_find_all(todo, ntodo, t);
      float sumqx_t[ntrials], sumq2_t[ntrials];
      S::trial_sums(ntrials, Lt, weight, xval, sumqx_t, sumq2_t);
      float best = 0;
      for (int it = 0; it < ntrials; ++it) {
        const float sumqx = sumqx_t[it], sumq2 = sumq2_t[it];
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          scale = sumqx / sumq2;
          best = scale * sumqx;
          std::memcpy(L, Lt[it], 32);
        }
      }
      if (scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < 4; ++k) {
          int8_t Lk[8];
          odd_levels(8, id, xval + 8 * k, kMaxQ, Lk);
          const int gi = lookup(Lk, xval + 8 * k, waux + 8 * k, scale, L + 8 * k);
          grid_levels<8>(grid[gi], L + 8 * k);
        }
        float sumqx, sumq2;
        odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
      }
      if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; ++k) block_signs[k] = static_cast<uint8_t>((~block_signs[k]) & 127);
      }
      for (int k = 0; k < 4; ++k) {
        const int gi = map[grid_key<8, 2>(L + 8 * k)];
        if (gi < 0) throw std::runtime_error("IQ2_XXS: quantized point is not on the grid (internal error)");
        q2[2 * ib + 0] |= static_cast<uint32_t>(gi) << (8 * k);
        q2[2 * ib + 1] |= static_cast<uint32_t>(block_signs[k]) << (7 * k);
      }
      scales[ib] = scale;
      max_scale = std::max(max_scale, scale);
    }
    if (max_scale == 0.f) {
      std::memset(y[ibl].qs, 0, QK_K / 4);
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = f32_to_fp16(d);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const int l = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib] - 1))));
      q2[2 * ib + 1] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y[ibl].qs, q2, QK_K / 4);
  }
}

}  // namespace
}  // namespace kq
}  // namespace dsv4
