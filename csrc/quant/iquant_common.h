// The loops the grid i-quant quantizers share (IQ2_XXS in iquant_impl.h, IQ2_XS/IQ2_S in iq2s_impl.h,
// IQ3_XXS/IQ3_S in iq3_impl.h): sign folding, levels <-> grid points, ggml's nearest-neighbour scan and
// the weighted fit sums, with the grid width (values per point) and bits per level as parameters.
// Float for float what each quantizer did inline (same operations, same order; -ffp-contract=off).
// Not here: the scale searches themselves, which differ per type; the AVX2 neighbour scan (simd_avx2.h).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "quant/blocks.h"

namespace dsv4 {
namespace kq {
namespace {  // internal linkage, see kquant_impl.h

// |x| of 8 values into xval; returns their sign bits (bit i set: x[i] < 0).  even_parity: for the types
// that store 7 sign bits with even parity, an odd count of negatives flips the sign of the least
// important value (least weight * x^2, the first on ties) and bit 7 is dropped.
inline uint8_t fold_signs8(const float* xb, const float* weight, bool even_parity, float* xval) {
  int nflip = 0;
  uint8_t s = 0;
  for (int i = 0; i < 8; ++i) {
    if (xb[i] >= 0) {
      xval[i] = xb[i];
    } else {
      xval[i] = -xb[i];
      ++nflip;
      s = static_cast<uint8_t>(s | (1 << i));
    }
  }
  if (!even_parity) return s;
  if (nflip % 2) {
    int imin = 0;
    float min = weight[0] * xb[0] * xb[0];
    for (int i = 1; i < 8; ++i) {
      const float ax = weight[i] * xb[i] * xb[i];
      if (ax < min) {
        min = ax;
        imin = i;
      }
    }
    xval[imin] = -xval[imin];
    s = static_cast<uint8_t>(s ^ (1 << imin));
  }
  return static_cast<uint8_t>(s & 127);
}

// Levels l of the kDim coordinates of a quantizer grid point g (byte i = 2l+1).
template <int kDim, class G>
inline void grid_levels(G g, int8_t* L) {
  for (int i = 0; i < kDim; ++i) L[i] = static_cast<int8_t>((static_cast<int>((g >> (8 * i)) & 0xff) - 1) / 2);
}

// The map key of kDim levels, kBits bits each.
template <int kDim, int kBits>
inline uint16_t grid_key(const int8_t* L) {
  uint16_t u = 0;
  for (int i = 0; i < kDim; ++i) u = static_cast<uint16_t>(u | (L[i] << (kBits * i)));
  return u;
}

// Levels of n values at inverse scale id: the nearest odd 2l+1 to id * xval, l in [0, nmax-1].
inline void odd_levels(int n, float id, const float* xval, int nmax, int8_t* L) {
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(0.5f * (id * xval[i] - 1));
    L[i] = static_cast<int8_t>(std::max(0, std::min(nmax - 1, l)));
  }
}

// The weighted least-squares sums of xval against the odd values q = 2L+1.
inline void odd_level_sums(int n, const float* weight, const float* xval, const int8_t* L, float* sumqx, float* sumq2) {
  float sqx = 0, sq2 = 0;
  for (int i = 0; i < n; ++i) {
    const float w = weight[i];
    const float q = static_cast<float>(2 * L[i] + 1);
    sqx += w * xval[i] * q;
    sq2 += w * q * q;
  }
  *sumqx = sqx;
  *sumq2 = sq2;
}

// The fit sums of several trials' levels L[it] (32 each, it < ntrials), each trial as odd_level_sums.
inline void trial_sums_scalar(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                              float* sumq2) {
  for (int it = 0; it < ntrials; ++it) odd_level_sums(32, weight, xval, L[it], sumqx + it, sumq2 + it);
}

// One off-grid group of one trial of a grid i-quant's scale search: its candidate list, values, weights, the
// trial's scale, and where the chosen point's levels go.  The quantizers collect a sub-block's searches
// over all trials and hand them to their policy together (the AVX2 policies overlap them).
struct GridSearch {
  const uint16_t* nb;
  const float* xval;
  const float* weight;
  float scale;
  int8_t* L;
};

// ggml's iq2/iq3_find_best_neighbour: of the nb[0] candidates nb[1..], the grid point of least weighted
// squared distance to xval at `scale` (the first on ties); its levels go to L.  `type` names the
// quantizer in the error thrown when no distance is below FLT_MAX (non-finite input).
template <int kDim, class G>
int best_neighbour(const uint16_t* nb, const G* grid_odd, const float* xval, const float* weight, float scale,
                   int8_t* L, const char* type) {
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= count; ++j) {
    const G g = grid_odd[nb[j]];
    float d2 = 0;
    for (int i = 0; i < kDim; ++i) {
      const float q = static_cast<float>((g >> (8 * i)) & 0xff);
      const float diff = scale * q - xval[i];
      d2 += weight[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = nb[j];
    }
  }
  if (best < 0) throw std::runtime_error(std::string(type) + ": no grid neighbour found (non-finite input?)");
  grid_levels<kDim>(grid_odd[best], L);
  return best;
}

}  // namespace
}  // namespace kq
}  // namespace dsv4
