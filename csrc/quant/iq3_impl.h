// The IQ3_XXS and IQ3_S code books (ggml's iq3xs_init_impl for grid sizes 256 and 512) and quantizers
// (ggml's quantize_row_iq3_xxs_impl and quantize_row_iq3_s_impl, float for float, the ggml_quantize_chunk
// path, with or without an imatrix), templated over the off-grid neighbour search `N`: the scalar one
// here, an AVX2 one in iq3_avx2.cpp (same sums per candidate, same first-minimum rule, same bytes).
// Not here: dequantize and dot (iq3_ref.cpp, iq3_avx2.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "quant/blocks.h"
#include "quant/iquant_common.h"

namespace dsv4 {

struct Iq3Tables {
  int size = 0;                       // grid points: 256 (IQ3_XXS) or 512 (IQ3_S)
  std::vector<uint32_t> grid_values;  // dequant grid: byte i = coordinate i (ggml iq3xxs_grid / iq3s_grid)
  std::vector<uint32_t> grid_odd;     // quantizer grid: byte i = 2*l+1, l in 0..7
  uint8_t ksigns[128];                // 7 sign bits + an 8th making the parity even (IQ3_XXS)
  // map[u] for a packed 4x3-bit point u (u < 4096): grid index >= 0, or -(offset+1) into `neighbours`,
  // where neighbours[offset] = count and the next `count` entries are the candidate grid indices.
  std::vector<int32_t> map;
  std::vector<uint16_t> neighbours;
  std::vector<uint32_t> nb_words;  // grid_odd of each candidate at its offset in `neighbours` (neighbour_words)
};

const Iq3Tables& iq3xxs_tables();
const Iq3Tables& iq3s_tables();

namespace kq {
namespace {  // internal linkage: instantiated in the reference and the -mavx2 translation units separately

// The scalar policy: ggml's iq3_find_best_neighbour (the candidate of least weighted squared distance,
// first on ties) one search at a time, and each trial's fit sums in ggml's order.
struct Iq3NeighbourRef {
  static int find(const uint16_t* nb, const Iq3Tables& t, const float* xval, const float* weight, float scale,
                  int8_t* L) {
    return best_neighbour<4>(nb, t.grid_odd.data(), xval, weight, scale, L, "IQ3");
  }
  static void find_all(const GridSearch* s, int n, const Iq3Tables& t) {
    for (int j = 0; j < n; ++j) find(s[j].nb, t, s[j].xval, s[j].weight, s[j].scale, s[j].L);
  }
  static void trial_sums(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                         float* sumq2) {
    trial_sums_scalar(ntrials, L, weight, xval, sumqx, sumq2);
  }
};

// The per-32-value part both quantizers share: weights, |x| with sign bits, then the scale search of
// 2*nsteps+1 candidates (each group of 4 on the grid or moved to its best neighbour), then one re-fit
// of the groups left off the grid.  Returns the sub-block scale; L holds the levels, signs the sign bytes.
// xxs: IQ3_XXS (signs with even parity in 7 bits, eps 1e-8, on-grid groups kept in the re-fit) or IQ3_S.
// ggml runs the trials one after the other; every trial's levels depend only on its own scale, so here all
// trials' levels are found first (the off-grid searches handed to the policy together, which lets the AVX2
// one overlap them), then all trials' fit sums, then ggml's sequential choice over the trials: the same
// floats in the same order per trial, so the same result.
template <class N, bool xxs>
float iq3_subblock(const Iq3Tables& t, const float* xb, const float* qw, float sigma2, int8_t* L, uint8_t* signs) {
  constexpr int kMaxQ = 8;
  constexpr int nsteps = xxs ? 15 : 9;
  constexpr int ntrials = 2 * nsteps + 1;
  float weight[32], waux[32], xval[32];
  if (qw) {
    for (int i = 0; i < 32; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
  } else {
    for (int i = 0; i < 32; ++i) weight[i] = xb[i] * xb[i];
  }
  for (int i = 0; i < 32; ++i) waux[i] = std::sqrt(weight[i]);
  // IQ3_XXS stores 7 sign bits (even parity), IQ3_S 8
  for (int k = 0; k < 4; ++k) signs[k] = fold_signs8(xb + 8 * k, weight + 8 * k, xxs, xval + 8 * k);
  float max = xval[0];
  for (int i = 1; i < 32; ++i) max = std::max(max, xval[i]);
  std::memset(L, 0, 32);
  if (xxs ? max < 1e-8f : !max) return -1.f;  // all (near-)zero: the caller skips the sub-block
  const int32_t* map = t.map.data();
  const uint16_t* nbrs = t.neighbours.data();
  alignas(32) int8_t Lt[ntrials][32];
  bool on_grid_t[ntrials][8];
  GridSearch todo[ntrials * 8];
  int ntodo = 0;
  for (int it = 0; it < ntrials; ++it) {
    const float id = (2 * kMaxQ - 1 + (it - nsteps) * 0.2f) / max;
    const float this_scale = 1 / id;
    for (int k = 0; k < 8; ++k) {
      odd_levels(4, id, xval + 4 * k, kMaxQ, Lt[it] + 4 * k);
      const int gi = map[grid_key<4, 3>(Lt[it] + 4 * k)];
      on_grid_t[it][k] = gi >= 0;
      if (gi < 0) todo[ntodo++] = {nbrs - gi - 1, xval + 4 * k, waux + 4 * k, this_scale, Lt[it] + 4 * k};
    }
  }
  N::find_all(todo, ntodo, t);
  float sumqx_t[ntrials], sumq2_t[ntrials];
  N::trial_sums(ntrials, Lt, weight, xval, sumqx_t, sumq2_t);
  float best = 0;
  float scale = max / (2 * kMaxQ - 1);
  bool on_grid[8];
  for (int k = 0; k < 8; ++k) on_grid[k] = xxs;
  for (int it = 0; it < ntrials; ++it) {
    const float sumqx = sumqx_t[it], sumq2 = sumq2_t[it];
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      scale = sumqx / sumq2;
      best = scale * sumqx;
      std::memcpy(L, Lt[it], 32);
      std::memcpy(on_grid, on_grid_t[it], sizeof(on_grid));
    }
  }
  int n_not_ongrid = 0;
  for (int k = 0; k < 8; ++k) n_not_ongrid += on_grid[k] ? 0 : 1;
  if (n_not_ongrid > 0 && scale > 0) {
    const float id = 1 / scale;
    for (int k = 0; k < 8; ++k) {
      if (xxs && on_grid[k]) continue;  // ggml's IQ3_S re-fits every group (its skip is commented out)
      int8_t Lk[4];
      odd_levels(4, id, xval + 4 * k, kMaxQ, Lk);
      const int gi = map[grid_key<4, 3>(Lk)];
      grid_levels<4>(t.grid_odd[gi >= 0 ? gi : N::find(nbrs - gi - 1, t, xval + 4 * k, waux + 4 * k, scale, Lk)],
                     L + 4 * k);
    }
    float sumqx, sumq2;
    odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
    if (sumq2 > 0) scale = sumqx / sumq2;
  }
  if (scale < 0) {  // ggml: "should never happen"; the scale is stored unsigned, so flip the signs
    scale = -scale;
    for (int k = 0; k < 4; ++k) signs[k] = static_cast<uint8_t>(xxs ? (~signs[k]) & 127 : ~signs[k]);
  }
  return scale;
}

// Grid index of each of the 8 groups of L (all on the grid after iq3_subblock).
inline void iq3_indices(const Iq3Tables& t, const int8_t* L, int* gi, const char* type) {
  for (int k = 0; k < 8; ++k) {
    gi[k] = t.map[grid_key<4, 3>(L + 4 * k)];
    if (gi[k] < 0)
      throw std::runtime_error(std::string(type) + ": quantized point is not on the grid (internal error)");
  }
}

template <class N>
void quantize_row_iq3_xxs(const float* x, void* vy, int64_t n, const float* qw) {
  const Iq3Tables& t = iq3xxs_tables();
  BlockIQ3_XXS* y = static_cast<BlockIQ3_XXS*>(vy);
  float scales[QK_K / 32];
  int8_t L[32];
  uint8_t signs[4], q3[QK_K / 4];
  uint32_t sas[QK_K / 32];
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    y[ibl].d = f32_to_fp16(0.f);
    std::memset(q3, 0, sizeof(q3));
    std::memset(sas, 0, sizeof(sas));
    float max_scale = 0;
    const float* xbl = x + QK_K * ibl;
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float* w = qw ? qw + QK_K * ibl + 32 * ib : nullptr;
      const float scale = iq3_subblock<N, true>(t, xbl + 32 * ib, w, sigma2, L, signs);
      if (scale < 0) {
        scales[ib] = 0;
        continue;
      }
      int gi[8];
      iq3_indices(t, L, gi, "IQ3_XXS");
      for (int k = 0; k < 8; ++k) q3[8 * ib + k] = static_cast<uint8_t>(gi[k]);
      sas[ib] = signs[0] | (signs[1] << 7) | (signs[2] << 14) | (static_cast<uint32_t>(signs[3]) << 21);
      scales[ib] = scale;
      max_scale = std::max(max_scale, scale);
    }
    if (max_scale == 0.f) {
      std::memset(y[ibl].qs, 0, sizeof(y[ibl].qs));
      continue;
    }
    const float d = max_scale / 31;
    y[ibl].d = f32_to_fp16(d * 1.0125f);  // ggml's fudge factor
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const int l = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib] - 1))));
      sas[ib] |= static_cast<uint32_t>(l) << 28;
    }
    std::memcpy(y[ibl].qs, q3, sizeof(q3));
    std::memcpy(y[ibl].qs + sizeof(q3), sas, sizeof(sas));
  }
}

template <class N>
void quantize_row_iq3_s(const float* x, void* vy, int64_t n, const float* qw) {
  const Iq3Tables& t = iq3s_tables();
  BlockIQ3_S* y = static_cast<BlockIQ3_S*>(vy);
  float scales[QK_K / 32];
  int8_t L[32];
  uint8_t block_signs[4];
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    std::memset(&y[ibl], 0, sizeof(BlockIQ3_S));
    y[ibl].d = f32_to_fp16(0.f);
    uint8_t* qs = y[ibl].qs;
    uint8_t* signs = y[ibl].signs;
    float max_scale = 0;
    const float* xbl = x + QK_K * ibl;
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / QK_K;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float* w = qw ? qw + QK_K * ibl + 32 * ib : nullptr;
      const float scale = iq3_subblock<N, false>(t, xbl + 32 * ib, w, sigma2, L, block_signs);
      if (scale < 0) {
        // an all-zero sub-block: as in ggml, qs and signs do not advance (the next sub-block's codes take
        // its slots; its scale nibble is 0), which dequantizes differently but is what ggml writes
        scales[ib] = 0;
        continue;
      }
      int gi[8];
      iq3_indices(t, L, gi, "IQ3_S");
      for (int k = 0; k < 8; ++k) {
        qs[k] = static_cast<uint8_t>(gi[k] & 255);
        y[ibl].qh[ib] = static_cast<uint8_t>(y[ibl].qh[ib] | ((gi[k] >> 8) << k));
      }
      qs += 8;
      std::memcpy(signs, block_signs, 4);
      signs += 4;
      scales[ib] = scale;
      max_scale = std::max(max_scale, scale);
    }
    if (max_scale == 0.f) continue;
    const float d = max_scale / 31;
    y[ibl].d = f32_to_fp16(d * 1.033f);  // ggml's fudge factor
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      const int l1 = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib + 0] - 1))));
      const int l2 = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib + 1] - 1))));
      y[ibl].scales[ib / 2] = static_cast<uint8_t>(l1 | (l2 << 4));
    }
  }
}

}  // namespace
}  // namespace kq
}  // namespace dsv4
