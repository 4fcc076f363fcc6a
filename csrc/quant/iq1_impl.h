// The IQ1_S quantizer (ggml's quantize_row_iq1_s_impl, the ggml_quantize_chunk path, bytes-equal) and the
// helpers IQ1_M shares (neighbour search, grid lookup, tie-stable sort), templated over the split search `S`:
// the scalar one here, an AVX2 one in iq1_avx2.cpp (the same candidate sums, the same sequential choice).
// IQ1_M (iq1_ref.cpp) and the dequantizers and dots are not here.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "quant/blocks.h"
#include "quant/iq1_tables.h"

namespace dsv4 {
namespace iq1 {
namespace {  // internal linkage: instantiated in the reference and the -mavx2 translation units separately

constexpr float kIq1Delta = 0.125f;         // IQ1S_DELTA = IQ1M_DELTA
constexpr float kGroupMaxEpsIq1S = 1e-12f;  // GROUP_MAX_EPS_IQ1_S
constexpr float kGroupMaxEpsIq1M = 1e-7f;   // GROUP_MAX_EPS_IQ1_M

inline int grid_level(const Iq1sTables& t, int gi, int i) {
  return static_cast<int>((t.grid_levels[gi] >> (8 * i)) & 3);
}

// ggml's iq1_find_best_neighbour2: the candidate of `nb` with the least weighted squared error of
// scale * xx[level] against xval (first one on ties, in the list's (distance, index) order).
int iq1_best_neighbour(const uint16_t* nb, const Iq1sTables& t, const float* xval, const float* weight, float scale,
                       const float* xx) {
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= count; ++j) {
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const float q = xx[grid_level(t, nb[j], i)];
      const float w = weight[i];
      const float diff = scale * q - xval[i];
      d2 += w * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = nb[j];
    }
  }
  // ggml then scans the whole grid (reading xval out of bounds); every d2 is finite for finite input
  if (best < 0) throw std::runtime_error("IQ1_S/IQ1_M: no grid neighbour found (non-finite input?)");
  return best;
}

// Grid index of the 8 levels L (0..2), or of the best neighbour when the point is off the grid.
int iq1_grid_index(const Iq1sTables& t, const int8_t* L, const float* xb, const float* weight, float scale,
                   const float* xx, bool* on_grid) {
  uint16_t u = 0;
  for (int j = 0; j < 8; ++j) u = static_cast<uint16_t>(u | (L[j] << (2 * j)));
  const int gi = t.map[u];
  if (gi >= 0) return gi;
  *on_grid = false;
  return iq1_best_neighbour(t.neighbours.data() - gi - 1, t, xb, weight, scale, xx);
}

// Indices 0..n-1 ordered by xb ascending, equal values in index order: the order glibc's qsort (a
// stable merge sort) gives ggml's (value, index) pairs, which decides the split of tied values.
template <int N>
void sort_by_value(const float* xb, int* idx) {
  std::pair<float, int> p[N];
  for (int j = 0; j < N; ++j) p[j] = {xb[j], j};
  std::stable_sort(p, p + N,
                   [](const std::pair<float, int>& a, const std::pair<float, int>& b) { return a.first < b.first; });
  for (int j = 0; j < N; ++j) idx[j] = p[j].second;
}

// The scalar split search: ggml's exhaustive search over the two boundaries that split the sorted values into
// levels -1, 0, +1, with either shift sign, from prefix sums of weight*x and weight (the exact SSD solution);
// the candidates in ggml's order ((i1, i2) ascending, + before -), each replacing the best when strictly better.
// scale keeps its value when no candidate qualifies.
struct Iq1sSplitRef {
  static void split(const float* sumx, const float* sumw, const float* x_p, const float* x_m, float* scale, int* besti1,
                    int* besti2, int* best_shift) {
    constexpr int kBs = 32;
    float best_score = -FLT_MAX;
    for (int i1 = 0; i1 <= kBs; ++i1) {
      for (int i2 = i1; i2 <= kBs; ++i2) {
        const float s0 = sumx[i1] - sumx[0], s1 = sumx[i2] - sumx[i1], s2 = sumx[kBs] - sumx[i2];
        const float w0 = sumw[i1] - sumw[0], w1 = sumw[i2] - sumw[i1], w2 = sumw[kBs] - sumw[i2];
        float sumqx = s0 * x_p[0] + s1 * x_p[1] + s2 * x_p[2];
        float sumq2 = w0 * x_p[0] * x_p[0] + w1 * x_p[1] * x_p[1] + w2 * x_p[2] * x_p[2];
        if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
          *scale = sumqx / sumq2;
          best_score = *scale * sumqx;
          *besti1 = i1;
          *besti2 = i2;
          *best_shift = 1;
        }
        sumqx = s0 * x_m[0] + s1 * x_m[1] + s2 * x_m[2];
        sumq2 = w0 * x_m[0] * x_m[0] + w1 * x_m[1] * x_m[1] + w2 * x_m[2] * x_m[2];
        if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
          *scale = sumqx / sumq2;
          best_score = *scale * sumqx;
          *besti1 = i1;
          *besti2 = i2;
          *best_shift = -1;
        }
      }
    }
  }
};

template <class S>
void quantize_block_iq1_s(const float* xbl, const float* qwl, BlockIQ1_S* y, const Iq1sTables& t) {
  constexpr int kBs = 32;
  const float x_p[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
  const float x_m[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};
  // prefix sums, 8 spare entries (zero) so a policy may load 8 past the last one
  alignas(32) float sumx[kBs + 9] = {}, sumw[kBs + 9] = {};
  float scales[QK_K / kBs], weight[kBs];
  int8_t L[kBs], shifts[QK_K / kBs];
  int idx[kBs];
  uint16_t index[kBs / 8];

  y->d = f32_to_fp16(0.f);
  std::memset(y->qs, 0, sizeof(y->qs));
  std::memset(y->qh, 0, sizeof(y->qh));
  float max_scale = 0;
  float sumx2 = 0;
  for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
  const float sigma2 = 2 * sumx2 / QK_K;

  for (int ib = 0; ib < QK_K / kBs; ++ib) {
    const float* xb = xbl + kBs * ib;
    const float* qw = qwl + kBs * ib;
    for (int i = 0; i < kBs; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
    float max = std::fabs(xb[0]);
    for (int i = 1; i < kBs; ++i) max = std::max(max, std::fabs(xb[i]));
    if (max < kGroupMaxEpsIq1S) {
      scales[ib] = 0;
      shifts[ib] = 1;
      continue;
    }
    // Exhaustive search over the two boundaries that split the sorted values into levels -1, 0, +1,
    // with either shift sign, from prefix sums of weight*x and weight (ggml's exact SSD solution).
    sort_by_value<kBs>(xb, idx);
    sumx[0] = sumw[0] = 0;
    for (int j = 0; j < kBs; ++j) {
      const int i = idx[j];
      sumx[j + 1] = sumx[j] + weight[i] * xb[i];
      sumw[j + 1] = sumw[j] + weight[i];
    }
    float scale = max;
    int besti1 = -1, besti2 = -1, best_shift = 0;
    S::split(sumx, sumw, x_p, x_m, &scale, &besti1, &besti2, &best_shift);
    if (besti1 < 0 || besti2 < 0 || best_shift == 0) {
      scales[ib] = 0;
      shifts[ib] = 1;
      continue;
    }
    for (int j = 0; j < besti1; ++j) L[idx[j]] = 0;
    for (int j = besti1; j < besti2; ++j) L[idx[j]] = 1;
    for (int j = besti2; j < kBs; ++j) L[idx[j]] = 2;
    if (scale < 0) {
      for (int j = 0; j < kBs; ++j) L[j] = static_cast<int8_t>(2 - L[j]);
      scale = -scale;
      best_shift = -best_shift;
    }
    bool all_on_grid = true;
    const float* xx = best_shift == 1 ? x_p : x_m;
    for (int k = 0; k < kBs / 8; ++k)
      index[k] =
          static_cast<uint16_t>(iq1_grid_index(t, L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx, &all_on_grid));
    if (!all_on_grid) {
      float sumqx = 0, sumq2 = 0;
      for (int k = 0; k < kBs / 8; ++k)
        for (int j = 0; j < 8; ++j) {
          const float w = weight[8 * k + j];
          const float q = xx[grid_level(t, index[k], j)];
          sumqx += w * q * xb[8 * k + j];
          sumq2 += w * q * q;
        }
      if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
    }
    uint16_t h = 0;
    for (int k = 0; k < kBs / 8; ++k) {
      y->qs[(kBs / 8) * ib + k] = static_cast<uint8_t>(index[k] & 255);
      h = static_cast<uint16_t>(h | ((index[k] >> 8) << (3 * k)));
    }
    y->qh[ib] = h;
    scales[ib] = scale;
    shifts[ib] = static_cast<int8_t>(best_shift);
    max_scale = std::max(max_scale, scale);
  }
  if (max_scale == 0.f) return;
  const float d = max_scale / 15;
  y->d = f32_to_fp16(d * 1.125f);  // ggml's fudge factor
  const float id = 1 / d;
  for (int ib = 0; ib < QK_K / kBs; ++ib) {
    int l = nearest_int(0.5f * (id * scales[ib] - 1));
    l = std::max(0, std::min(7, l));
    if (shifts[ib] == -1) l |= 8;
    y->qh[ib] = static_cast<uint16_t>(y->qh[ib] | (l << 12));
  }
}

}  // namespace
}  // namespace iq1
}  // namespace dsv4
