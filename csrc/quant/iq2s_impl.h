// The IQ2_XS and IQ2_S quantization algorithms (ggml's quantize_row_iq2_xs_impl / quantize_row_iq2_s_impl),
// one template for both types, over the neighbour search F (scalar here, AVX2 in iq2s_avx2.cpp).  Same
// floats, same candidates, same tie-breaking as ggml; compile with -ffp-contract=off.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "quant/blocks.h"
#include "quant/iq2s_tables.h"
#include "quant/iquant_common.h"

namespace dsv4 {
namespace iq2s {
// Internal linkage, as kquant_impl.h (header-only helpers of iq2s_ref.cpp).
namespace {

// ggml's iq2_find_best_neighbour: the candidate with the smallest weighted squared error, first on ties.
// The 24 possible terms weight[i] * (scale * q - xval[i])^2 (q in {1, 3, 5}) are computed once, with
// ggml's operations, and each candidate's error sums its 8 terms in ggml's order: the same floats as
// evaluating every candidate from scratch, without the multiplications.
inline void neighbour_costs(const float* xval, const float* weight, float scale, float (*cost)[3]) {
  for (int i = 0; i < 8; ++i)
    for (int l = 0; l < 3; ++l) {
      const float diff = scale * static_cast<float>(2 * l + 1) - xval[i];
      cost[i][l] = weight[i] * diff * diff;
    }
}

inline int find_neighbour(const uint16_t* nb, const Iq2GridTables& t, const float* xval, const float* weight,
                          float scale, int8_t* L) {
  float cost[8][3];
  neighbour_costs(xval, weight, scale, cost);
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= count; ++j) {
    const uint64_t g = t.grid_odd[nb[j]];
    float d2 = 0;
    for (int i = 0; i < 8; ++i) d2 += cost[i][((g >> (8 * i)) & 0xff) >> 1];
    if (d2 < best_d2) {
      best_d2 = d2;
      best = nb[j];
    }
  }
  if (best < 0) throw std::runtime_error("IQ2_XS/IQ2_S: no grid neighbour found (non-finite input?)");
  kq::grid_levels<8>(t.grid_odd[best], L);
  return best;
}

// The scalar search policy (iq2s_avx2.cpp has the AVX2 one: the same terms, 8 candidates per step).
struct ScalarFind {
  static int find(const uint16_t* nb, const Iq2GridTables& t, const float* xval, const float* weight, float scale,
                  int8_t* L) {
    return find_neighbour(nb, t, xval, weight, scale, L);
  }
};

// The two types share everything but the weights, the sign storage and the scale packing.
enum class Variant { XS, S };

template <Variant V, class F = ScalarFind>
void quantize_row(const float* x, void* vy, int64_t n, const float* qw) {
  constexpr bool kXS = V == Variant::XS;
  if (kXS && !qw) throw std::invalid_argument("IQ2_XS quantization requires importance weights (imatrix)");
  const Iq2GridTables& t = kXS ? iq2xs_tables() : iq2s_tables();
  const int32_t* map = t.map.data();
  const uint16_t* nbrs = t.neighbours.data();
  constexpr int kMaxQ = 3;
  constexpr float kEps = kXS ? 1e-15f : 1e-8f;  // ggml's GROUP_MAX_EPS / GROUP_MAX_EPS_IQ2_S
  float scales[QK_K / 16], weight[16], xval[16], waux[16];
  int8_t L[16], Laux[16];
  bool on_grid[2], on_grid_aux[2];
  uint8_t block_signs[2];
  uint16_t q2[2 * (QK_K / 16)];  // IQ2_XS: grid index | 7 sign bits << 9
  for (int64_t ibl = 0; ibl < n / QK_K; ++ibl) {
    BlockIQ2_XS* yx = nullptr;  // the block of this row's type (the other stays null)
    BlockIQ2_S* ys = nullptr;
    if constexpr (kXS) {
      yx = static_cast<BlockIQ2_XS*>(vy) + ibl;
      yx->d = f32_to_fp16(0.f);
      std::memset(q2, 0, sizeof(q2));
      std::memset(yx->scales, 0, sizeof(yx->scales));
    } else {
      ys = static_cast<BlockIQ2_S*>(vy) + ibl;
      std::memset(ys, 0, sizeof(*ys));
      ys->d = f32_to_fp16(0.f);
    }
    float max_scale = 0;
    const float* xbl = x + QK_K * ibl;
    float sumx2 = 0;
    for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
    const float sigma2 = kXS ? sumx2 / QK_K : 2 * sumx2 / QK_K;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const float* xb = xbl + 16 * ib;
      if (qw) {
        const float* w = qw + QK_K * ibl + 16 * ib;
        for (int i = 0; i < 16; ++i) weight[i] = w[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
      } else {
        for (int i = 0; i < 16; ++i) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
      }
      for (int i = 0; i < 16; ++i) waux[i] = std::sqrt(weight[i]);
      // IQ2_XS stores 7 sign bits (even parity), IQ2_S 8
      for (int k = 0; k < 2; ++k) block_signs[k] = kq::fold_signs8(xb + 8 * k, weight + 8 * k, kXS, xval + 8 * k);
      float max = xval[0];
      for (int i = 1; i < 16; ++i) max = std::max(max, xval[i]);
      std::memset(L, 0, 16);
      if (max < kEps) {
        scales[ib] = 0;
        continue;
      }
      float best = 0;
      float scale = max / (2 * kMaxQ - 1);
      on_grid[0] = on_grid[1] = true;
      for (int is = -9; is <= 9; ++is) {
        const float id = (2 * kMaxQ - 1 + is * 0.1f) / max;
        const float this_scale = 1 / id;
        for (int k = 0; k < 2; ++k) {
          kq::odd_levels(8, id, xval + 8 * k, kMaxQ, Laux + 8 * k);
          const uint16_t u = kq::grid_key<8, 2>(Laux + 8 * k);
          on_grid_aux[k] = map[u] >= 0;
          if (map[u] < 0) F::find(nbrs - map[u] - 1, t, xval + 8 * k, waux + 8 * k, this_scale, Laux + 8 * k);
        }
        float sumqx, sumq2;
        kq::odd_level_sums(16, weight, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          scale = sumqx / sumq2;
          best = scale * sumqx;
          std::memcpy(L, Laux, 16);
          on_grid[0] = on_grid_aux[0];
          on_grid[1] = on_grid_aux[1];
        }
      }
      if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        // re-round the off-grid groups at the final scale
        const float id = 1 / scale;
        for (int k = 0; k < 2; ++k) {
          if (on_grid[k]) continue;
          kq::odd_levels(8, id, xval + 8 * k, kMaxQ, L + 8 * k);
          const uint16_t u = kq::grid_key<8, 2>(L + 8 * k);
          if (map[u] < 0) F::find(nbrs - map[u] - 1, t, xval + 8 * k, waux + 8 * k, scale, L + 8 * k);
        }
        float sumqx, sumq2;
        kq::odd_level_sums(16, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0) scale = sumqx / sumq2;
      }
      if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 2; ++k)
          block_signs[k] = kXS ? static_cast<uint8_t>((~block_signs[k]) & 127) : static_cast<uint8_t>(~block_signs[k]);
      }
      for (int k = 0; k < 2; ++k) {
        const int gi = map[kq::grid_key<8, 2>(L + 8 * k)];
        if (gi < 0) throw std::runtime_error("IQ2_XS/IQ2_S: quantized point is not on the grid (internal error)");
        if constexpr (kXS) {
          q2[2 * ib + k] = static_cast<uint16_t>(gi | (block_signs[k] << 9));
        } else {
          const int i8 = 2 * ib + k;
          ys->qs[i8] = static_cast<uint8_t>(gi & 255);
          ys->qh[i8 / 4] = static_cast<uint8_t>(ys->qh[i8 / 4] | ((gi >> 8) << (2 * (i8 % 4))));
          ys->qs[QK_K / 8 + i8] = block_signs[k];
        }
      }
      scales[ib] = scale;
      max_scale = std::max(max_scale, scale);
    }
    if (max_scale == 0.f) {
      if constexpr (kXS) std::memset(yx->qs, 0, sizeof(yx->qs));
      continue;
    }
    const float d = max_scale / 31;
    uint8_t* sc = kXS ? yx->scales : ys->scales;
    if constexpr (kXS)
      yx->d = f32_to_fp16(d);
    else
      ys->d = f32_to_fp16(d * 0.9875f);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const int l = std::max(0, std::min(15, nearest_int(0.5f * (id * scales[ib] - 1))));
      if (ib % 2 == 0)
        sc[ib / 2] = static_cast<uint8_t>(l);
      else
        sc[ib / 2] = static_cast<uint8_t>(sc[ib / 2] | (l << 4));
    }
    if constexpr (kXS) std::memcpy(yx->qs, q2, sizeof(yx->qs));
  }
}

}  // namespace
}  // namespace iq2s
}  // namespace dsv4
