// The K-quant (and weighted Q4_0) quantization algorithms, written once as templates over a `Search`
// policy that supplies the per-sub-block scale searches (make_qkx2/qkx3/qx).  quant_k_ref.cpp
// instantiates them with the scalar searches below; quant_avx2.cpp with searches that evaluate
// 8 candidate scales at once, one per AVX2 lane, keeping each lane's sums in the scalar order, so
// both give identical bytes.  The algorithms reproduce ggml's (ggml-quants.c) float-for-float:
// same candidates, same accumulation order, same rounding; compile with -ffp-contract=off.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/blocks.h"
#include "quant/tables.h"

namespace dsv4 {
namespace kq {
// Internal linkage: instantiated in the reference and the -mavx2 translation units separately (an
// ODR-merged copy could otherwise run AVX2 code on the reference path).
namespace {

// ------------------------------------------------------------------ scalar scale searches
// Signed symmetric codes in [-nmax, nmax-1]; weights x^2 (rmse_type 1) unless qw is given.
inline float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = qw ? qw[i] : x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = qw ? qw[i] : x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K reference: initial codes from the signed max, then coordinate-descent refinement.
inline float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = -nmax / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<int8_t>(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * l;
    suml2 += w * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * L[i];
      if (slx > 0) {
        float sl2 = suml2 - w * L[i] * L[i];
        int nl = nearest_int(x[i] * sl2 / slx);
        nl = std::max(-nmax, std::min(nmax - 1, nl));
        if (nl != L[i]) {
          slx += w * x[i] * nl;
          sl2 += w * nl * nl;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<int8_t>(nl);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// The start every make_qkx search shares (scalar, AVX2, NEON): the range and weighted sums, the
// early-out for an empty range, and the codes of the first candidate nmax / (max - min) with their
// error.  weights == nullptr means x^2.
struct QkxStart {
  float min, max;      // min clamped to <= 0
  float sum_w, sum_x;  // sum w, sum w*x
  float scale;         // of the first candidate; L holds its codes
  float best_error;    // its weighted squared (or absolute, mad) error
};

// Returns false for an empty range (all x equal, or max <= min for qkx3): L is then all zero,
// *the_min = -min, and the search returns 0.
inline bool qkx_start(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, bool mad,
                      bool qkx3, QkxStart* s) {
  float min = x[0], max = x[0];
  float sum_w = weights ? weights[0] : x[0] * x[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights ? weights[i] : x[i] * x[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (qkx3 ? (max <= min) : (max == min)) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return false;
  }
  const float iscale = nmax / (max - min);
  const float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = scale * L[i] + min - x[i];
    diff = mad ? std::fabs(diff) : diff * diff;
    const float w = weights ? weights[i] : x[i] * x[i];
    best_error += w * diff;
  }
  *s = {min, max, sum_w, sum_x, scale, best_error};
  return true;
}

// Asymmetric codes in [0, nmax] with a (scale, min) pair fitted by weighted least squares over
// nstep+1 candidate inverse scales.  weights == nullptr means x^2 (the qkx3 variant); `mad` selects
// absolute instead of squared error.  Returns the scale; *the_min receives -min (>= 0).
inline float make_qkx_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                             uint8_t* Laux, float rmin, float rdelta, int nstep, bool mad, bool qkx3) {
  QkxStart s;
  if (!qkx_start(n, nmax, x, weights, L, the_min, mad, qkx3, &s)) return 0.f;
  const float max = s.max, sum_w = s.sum_w, sum_x = s.sum_x;
  float min = s.min, scale = s.scale, best_error = s.best_error;
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    const float iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights ? weights[i] : x[i] * x[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * Laux[i] + this_min - x[i];
        diff = mad ? std::fabs(diff) : diff * diff;
        const float w = weights ? weights[i] : x[i] * x[i];
        cur_error += w * diff;
      }
      if (cur_error < best_error) {
        std::memcpy(L, Laux, static_cast<size_t>(n));
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The SIMD searches (quant_avx2.cpp, quant_neon.cpp) evaluate the 8 candidates is0..is0+7 at once
// against the group's starting min (D, error, scale, min per lane).  Takes the lanes in the
// reference's order and updates best_error/scale/min as its loop would; a winner that moves min
// ends the group, since later candidates depend on it, and *next restarts there.  Returns the
// last winning lane, whose codes the caller copies to L, or -1.
inline int qkx_pick_lane(const float* Dv, const float* ev, const float* sv, const float* mv, int is0, int nstep,
                         float* best_error, float* scale, float* min, int* next) {
  int win = -1;
  *next = is0 + 8;
  for (int k = 0; k < 8 && is0 + k <= nstep; ++k) {
    if (Dv[k] > 0 && ev[k] < *best_error) {
      *best_error = ev[k];
      *scale = sv[k];
      win = k;
      if (mv[k] != *min) {
        *min = mv[k];
        *next = is0 + k + 1;
        break;
      }
    }
  }
  return win;
}

// Non-negative values -> codes in [0, nmax] with one scale (used for the 6-bit super-block scales
// and IQ2_XXS).  Search 9 inverse scales, then up to 5 rounds of coordinate refinement.
inline float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* qw) {
  float max = 0;
  for (int i = 0; i < n; ++i) max = std::max(max, x[i]);
  if (max < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = nmax / max;
  for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
  const float scale = 1 / iscale;
  float best_mse = 0;
  for (int i = 0; i < n; ++i) {
    const float diff = x[i] - scale * L[i];
    best_mse += qw[i] * diff * diff;
  }
  for (int is = -4; is <= 4; ++is) {
    if (is == 0) continue;
    const float iscale_is = (0.1f * is + nmax) / max;
    const float scale_is = 1 / iscale_is;
    float mse = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::min(nmax, nearest_int(iscale_is * x[i]));
      const float diff = x[i] - scale_is * l;
      mse += qw[i] * diff * diff;
    }
    if (mse < best_mse) {
      best_mse = mse;
      iscale = iscale_is;
    }
  }
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = std::min(nmax, nearest_int(iscale * x[i]));
    L[i] = static_cast<uint8_t>(l);
    sumlx += qw[i] * x[i] * l;
    suml2 += qw[i] * l * l;
  }
  for (int itry = 0; itry < 5; ++itry) {
    int changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = qw[i];
      float slx = sumlx - w * x[i] * L[i];
      float sl2 = suml2 - w * L[i] * L[i];
      if (slx > 0 && sl2 > 0) {
        const int nl = std::min(nmax, nearest_int(x[i] * sl2 / slx));
        if (nl != L[i]) {
          slx += w * x[i] * nl;
          sl2 += w * nl * nl;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = static_cast<uint8_t>(nl);
            sumlx = slx;
            suml2 = sl2;
            ++changed;
          }
        }
      }
    }
    if (!changed) break;
  }
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

struct GridSearch;  // iquant_common.h

struct ScalarSearch {
  static float qkx(int n, int nmax, const float* x, const float* w, uint8_t* L, float* the_min, uint8_t* Laux,
                   float rmin, float rdelta, int nstep, bool mad, bool qkx3) {
    return make_qkx_quants(n, nmax, x, w, L, the_min, Laux, rmin, rdelta, nstep, mad, qkx3);
  }
  static float qx(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    return make_qx_quants(n, nmax, x, L, qw);
  }
  static void iq4_index32(const float* xb, float id, uint8_t* idx);
  static int iq2_neighbour(const uint16_t* nb, const Iq2xxsTables& t, const float* xval, const float* weight,
                           float scale, int8_t* L);
  static void iq2_find_all(const GridSearch* s, int n, const Iq2xxsTables& t);
  static void trial_sums(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                         float* sumq2);
};

// ------------------------------------------------------------------ packing helpers
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

inline void put_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* s) {
  if (j < 4) {
    s[j] = ls;
    s[j + 4] = lm;
  } else {
    s[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    s[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
    s[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
  }
}

inline void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] =
          static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// Requantize all 8 sub-blocks of a Q4_K/Q5_K super-block against the stored fp16/6-bit scales.
inline void requant_k4(const float* x, uint16_t dh, uint16_t mh, const uint8_t* scales, int nmax, uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, scales, &sc, &m);
    const float d = fp16_to_f32(dh) * sc;
    if (d == 0.f) continue;
    const float dm = fp16_to_f32(mh) * m;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

inline void pack_q4_k(const uint8_t* L, uint8_t* q) {
  for (int j = 0; j < QK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

inline void pack_q5_k(const uint8_t* L, uint8_t* qh, uint8_t* ql) {
  std::memset(qh, 0, QK_K / 8);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64, ql += 32) {
    for (int j = 0; j < 32; ++j) {  // branch-free: bit 4 of each code goes to qh
      const int l1 = L[n + j], l2 = L[n + j + 32];
      qh[j] = static_cast<uint8_t>(qh[j] | ((l1 >> 4) * m1) | ((l2 >> 4) * m2));
      ql[j] = static_cast<uint8_t>((l1 & 15) | ((l2 & 15) << 4));
    }
    m1 = static_cast<uint8_t>(m1 << 2);
    m2 = static_cast<uint8_t>(m2 << 2);
  }
}

// ------------------------------------------------------------------ Q4_K / Q5_K
// Without imatrix: ggml's *_ref (qkx2 search per 32, scales/mins to 6 bits by max).
// With imatrix: ggml's *_impl (qkx3 search with sigma-weighted imatrix, make_qp_quants for scales).
template <class S>
void quantize_k45_block(const float* x, int nmax, const float* qw, uint16_t* dh, uint16_t* mh, uint8_t* scales,
                        uint8_t* L) {
  float mins[QK_K / 32], sc[QK_K / 32], weights[32];
  uint8_t Laux[32];
  std::memset(scales, 0, 12);
  if (!qw) {
    const float rmin = nmax == 15 ? -1.f : -0.5f;
    const int nstep = nmax == 15 ? 20 : 15;
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
      sc[j] = S::qkx(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, false, false);
      if (sc[j] > max_scale) max_scale = sc[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
      uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * sc[j]));
      uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
      put_scale_min_k4(j, std::min<uint8_t>(63, ls), std::min<uint8_t>(63, lm), scales);
    }
    *dh = f32_to_fp16(max_scale / 63.f);
    *mh = f32_to_fp16(max_min / 63.f);
  } else {
    float sw[QK_K / 32];
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / QK_K;
    for (int j = 0; j < QK_K / 32; ++j) {
      for (int l = 0; l < 32; ++l) weights[l] = qw[32 * j + l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += weights[l];
      sw[j] = sumw;
      sc[j] = S::qkx(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false, true);
    }
    const float d_block = make_qp_quants(QK_K / 32, 63, sc, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j)
      put_scale_min_k4(j, std::min<uint8_t>(63, Ls[j]), std::min<uint8_t>(63, Lm[j]), scales);
    *dh = f32_to_fp16(d_block);
    *mh = f32_to_fp16(m_block);
  }
  requant_k4(x, *dh, *mh, scales, nmax, L);
}

template <class S>
void quantize_row_q4_k(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ4_K* y = static_cast<BlockQ4_K*>(vy);
  uint8_t L[QK_K];
  for (int64_t b = 0; b < n / QK_K; ++b) {
    quantize_k45_block<S>(x + QK_K * b, 15, qw ? qw + QK_K * b : nullptr, &y[b].d, &y[b].dmin, y[b].scales, L);
    pack_q4_k(L, y[b].qs);
  }
}

template <class S>
void quantize_row_q5_k(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ5_K* y = static_cast<BlockQ5_K*>(vy);
  uint8_t L[QK_K];
  for (int64_t b = 0; b < n / QK_K; ++b) {
    quantize_k45_block<S>(x + QK_K * b, 31, qw ? qw + QK_K * b : nullptr, &y[b].d, &y[b].dmin, y[b].scales, L);
    pack_q5_k(L, y[b].qh, y[b].qs);
  }
}

// ------------------------------------------------------------------ Q2_K
template <class S>
void quantize_row_q2_k(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ2_K* y = static_cast<BlockQ2_K*>(vy);
  uint8_t L[QK_K], Laux[16];
  float weight[16], mins[QK_K / 16], sc[QK_K / 16];
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    if (!qw) {
      float max_scale = 0, max_min = 0;
      for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = std::fabs(x[16 * j + l]);
        sc[j] = S::qkx(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true, false);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      if (max_scale > 0) {
        const float iscale = 15.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) y[b].scales[j] = static_cast<uint8_t>(nearest_int(iscale * sc[j]));
        y[b].d = f32_to_fp16(max_scale / 15.f);
      } else {
        for (int j = 0; j < QK_K / 16; ++j) y[b].scales[j] = 0;
        y[b].d = f32_to_fp16(0.f);
      }
      if (max_min > 0) {
        const float iscale = 15.f / max_min;
        for (int j = 0; j < QK_K / 16; ++j) y[b].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
        y[b].dmin = f32_to_fp16(max_min / 15.f);
      } else {
        y[b].dmin = f32_to_fp16(0.f);
      }
    } else {
      const float* q = qw + QK_K * b;
      float sw[QK_K / 16] = {0};
      uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = q[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += weight[l];
        sc[j] = S::qkx(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false, true);
      }
      const float dm = make_qp_quants(QK_K / 16, 15, sc, Ls, sw);
      const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
      y[b].d = f32_to_fp16(dm);
      y[b].dmin = f32_to_fp16(mm);
      for (int j = 0; j < QK_K / 16; ++j) y[b].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
    }
    const float dall = fp16_to_f32(y[b].d), mall = fp16_to_f32(y[b].dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = dall * (y[b].scales[j] & 0xF);
      if (d == 0.f) continue;
      const float dm = mall * (y[b].scales[j] >> 4);
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, y[b].qs);
  }
}

// ------------------------------------------------------------------ Q3_K
inline void put_q3_scale(int j, int l, uint8_t* s) {
  if (j < 8)
    s[j] = static_cast<uint8_t>(l & 0xF);
  else
    s[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
  l >>= 4;
  s[j % 4 + 8] |= static_cast<uint8_t>(l << (2 * (j / 4)));
}
inline int get_q3_scale(int j, const uint8_t* s) {
  int8_t sc = static_cast<int8_t>(j < 8 ? s[j] & 0xF : s[j - 8] >> 4);
  return static_cast<int8_t>((sc | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}

template <class S>
void quantize_row_q3_k(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ3_K* y = static_cast<BlockQ3_K*>(vy);
  int8_t L[QK_K];
  float sc[QK_K / 16];
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    std::memset(y[b].scales, 0, 12);
    if (!qw) {
      float max_scale = 0, amax = 0;
      for (int j = 0; j < QK_K / 16; ++j) {
        sc[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float a = std::fabs(sc[j]);
        if (a > amax) {
          amax = a;
          max_scale = sc[j];
        }
      }
      if (max_scale != 0.f) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
          int8_t l = static_cast<int8_t>(nearest_int(iscale * sc[j]));
          l = static_cast<int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
          put_q3_scale(j, l, y[b].scales);
        }
        y[b].d = f32_to_fp16(1 / iscale);
      } else {
        y[b].d = f32_to_fp16(0.f);
      }
    } else {
      const float* q = qw + QK_K * b;
      float weight[16], sw[QK_K / 16];
      int8_t Ls[QK_K / 16];
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = 2 * sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j) {
        for (int l = 0; l < 16; ++l) weight[l] = q[16 * j + l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += weight[l];
        sw[j] = sumw;
        sc[j] = S::qx(16, 4, x + 16 * j, L + 16 * j, weight);
      }
      const float d_block = S::qx(QK_K / 16, 32, sc, Ls, sw);
      for (int j = 0; j < QK_K / 16; ++j) put_q3_scale(j, Ls[j], y[b].scales);
      y[b].d = f32_to_fp16(d_block);
    }
    const float dall = fp16_to_f32(y[b].d);
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = dall * get_q3_scale(j, y[b].scales);
      if (d == 0.f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-4, std::min(3, l)) + 4);
      }
    }
    // high bit of value j -> bit j/32 of hmask[j%32]; branch-free (the 50/50 branch of the obvious
    // loop costs more than the rest of the requantization)
    std::memset(y[b].hmask, 0, QK_K / 8);
    for (int j = 0; j < QK_K; ++j) {
      y[b].hmask[j % 32] = static_cast<uint8_t>(y[b].hmask[j % 32] | ((L[j] >> 2) << (j / 32)));
      L[j] = static_cast<int8_t>(L[j] & 3);
    }
    pack_2bit(reinterpret_cast<const uint8_t*>(L), y[b].qs);
  }
}

// ------------------------------------------------------------------ Q6_K
template <class S>
void quantize_row_q6_k(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ6_K* y = static_cast<BlockQ6_K*>(vy);
  int8_t L[QK_K];
  float sc[QK_K / 16];
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float max_scale = 0, max_abs = 0;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      sc[ib] = S::qx(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + QK_K * b + 16 * ib : nullptr);
      const float a = std::fabs(sc[ib]);
      if (a > max_abs) {
        max_abs = a;
        max_scale = sc[ib];
      }
    }
    if (max_abs < kGroupMaxEps) {
      std::memset(&y[b], 0, sizeof(BlockQ6_K));
      continue;
    }
    const float iscale = -128.f / max_scale;
    y[b].d = f32_to_fp16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib)
      y[b].scales[ib] = static_cast<int8_t>(std::min(127, nearest_int(iscale * sc[ib])));
    const float dall = fp16_to_f32(y[b].d);
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = dall * y[b].scales[j];
      if (d == 0.f) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int(x[16 * j + ii] / d);
        L[16 * j + ii] = static_cast<int8_t>(std::max(-32, std::min(31, l)) + 32);
      }
    }
    uint8_t* ql = y[b].ql;
    uint8_t* qh = y[b].qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                     ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

// ------------------------------------------------------------------ Q4_0 with imatrix
// ggml's quantize_row_q4_0_impl: weighted make_qx_quants per 32 (sigma2 over the whole row).
template <class S>
void quantize_row_q4_0_weighted(const float* x, BlockQ4_0* y, int64_t n, const float* qw) {
  float weight[32];
  int8_t L[32];
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  const float sigma2 = sum_x2 / n;
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x + 32 * ib;
    for (int j = 0; j < 32; ++j) weight[j] = qw[32 * ib + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
    const float d = S::qx(32, 8, xb, L, weight);
    y[ib].d = f32_to_fp16(d);
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
  }
}

}  // namespace
}  // namespace kq
}  // namespace dsv4
