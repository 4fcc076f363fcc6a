// Scalar reference kernels for the 256-element super-block types: Q2_K..Q6_K, IQ4_XS, IQ2_XXS.
// Quantizers are kquant_impl.h instantiated with the scalar searches; IQ2_XXS (ggml's
// quantize_row_iq2_xxs_impl, imatrix required) lives here because it has no SIMD variant.
// Dequantizers use ggml's/gguf's operation order, so they are bit-exact with gguf.quants.
#include <stdexcept>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"

namespace dsv4 {

using kq::ScalarSearch;

void quantize_row_q2_k_ref(const float* x, void* y, int64_t n, const float* qw) { kq::quantize_row_q2_k<ScalarSearch>(x, y, n, qw); }
void quantize_row_q3_k_ref(const float* x, void* y, int64_t n, const float* qw) { kq::quantize_row_q3_k<ScalarSearch>(x, y, n, qw); }
void quantize_row_q4_k_ref(const float* x, void* y, int64_t n, const float* qw) { kq::quantize_row_q4_k<ScalarSearch>(x, y, n, qw); }
void quantize_row_q5_k_ref(const float* x, void* y, int64_t n, const float* qw) { kq::quantize_row_q5_k<ScalarSearch>(x, y, n, qw); }
void quantize_row_q6_k_ref(const float* x, void* y, int64_t n, const float* qw) { kq::quantize_row_q6_k<ScalarSearch>(x, y, n, qw); }
void quantize_row_iq4_xs_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockIQ4_XS* y = static_cast<BlockIQ4_XS*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b) kq::quantize_iq4_xs_block(x + QK_K * b, qw ? qw + QK_K * b : nullptr, &y[b]);
}

// ---------------------------------------------------------------- dequantizers
void dequantize_row_q2_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[b].scales[is++];
          const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d_all = fp16_to_f32(x[b].d);
    const uint8_t* q = x[b].qs;
    const uint8_t* hm = x[b].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * static_cast<float>(kq::get_q3_scale(is++, x[b].scales));
          for (int l = 0; l < 16; ++l) {
            const int o = l + 16 * half;
            *y++ = dl * static_cast<float>(((q[o] >> shift) & 3) - ((hm[o] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequantize_row_q4_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      kq::get_scale_min_k4(j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* ql = x[b].qs;
    const uint8_t* qh = x[b].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2, ql += 32) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      kq::get_scale_min_k4(j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void dequantize_row_q6_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    const uint8_t* ql = x[b].ql;
    const uint8_t* qh = x[b].qh;
    const int8_t* sc = x[b].scales;
    for (int h = 0; h < QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

void dequantize_row_iq4_xs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ4_XS* x = static_cast<const BlockIQ4_XS*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    const uint8_t* qs = x[b].qs;
    for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
      const int ls = ((x[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[b].scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kValuesIQ4NL[qs[j] & 0xf]);
        y[j + 16] = dl * static_cast<float>(kValuesIQ4NL[qs[j] >> 4]);
      }
    }
  }
}

void dequantize_row_iq2_xxs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ2_XXS* x = static_cast<const BlockIQ2_XXS*>(vx);
  const Iq2xxsTables& t = iq2xxs_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, x[b].qs + 4 * ib, 8);
      const uint8_t* idx = reinterpret_cast<const uint8_t*>(aux);
      const float db = d * (0.5f + static_cast<float>(aux[1] >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint64_t g = t.grid_values[idx[l]];
        const uint8_t signs = t.ksigns[(aux[1] >> (7 * l)) & 127];
        for (int j = 0; j < 8; ++j)
          y[j] = db * static_cast<float>((g >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
      }
    }
  }
}

// ---------------------------------------------------------------- IQ2_XXS quantizer
namespace {

int iq2_best_neighbour(const uint16_t* nb, const uint64_t* grid, const float* xval, const float* weight, float scale,
                       int8_t* L) {
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  for (int j = 1; j <= count; ++j) {
    const uint64_t g = grid[nb[j]];
    float d2 = 0;
    for (int i = 0; i < 8; ++i) {
      const float q = static_cast<float>((g >> (8 * i)) & 0xff);
      const float diff = scale * q - xval[i];
      d2 += weight[i] * diff * diff;
    }
    if (d2 < best_d2) {
      best_d2 = d2;
      best = nb[j];
    }
  }
  if (best < 0) throw std::runtime_error("IQ2_XXS: no grid neighbour found (non-finite input?)");
  const uint64_t g = grid[best];
  for (int i = 0; i < 8; ++i) L[i] = static_cast<int8_t>((static_cast<int>((g >> (8 * i)) & 0xff) - 1) / 2);
  return best;
}

}  // namespace

void quantize_row_iq2_xxs_ref(const float* x, void* vy, int64_t n, const float* qw) {
  if (!qw) throw std::invalid_argument("IQ2_XXS quantization requires importance weights (imatrix)");
  const Iq2xxsTables& t = iq2xxs_tables();
  const uint64_t* grid = t.grid_odd;
  const int32_t* map = t.map.data();
  const uint16_t* nbrs = t.neighbours.data();
  constexpr int kMaxQ = 3;
  BlockIQ2_XXS* y = static_cast<BlockIQ2_XXS*>(vy);
  float scales[QK_K / 32], weight[32], xval[32], waux[32];
  int8_t L[32], Laux[32];
  uint8_t block_signs[4];
  uint32_t q2[2 * (QK_K / 32)];
  auto lookup = [&](const int8_t* Lg, const float* xv, const float* wv, float scale, int8_t* Lout) {
    uint16_t u = 0;
    for (int i = 0; i < 8; ++i) u = static_cast<uint16_t>(u | (Lg[i] << (2 * i)));
    int gi = map[u];
    if (gi < 0) gi = iq2_best_neighbour(nbrs - map[u] - 1, grid, xv, wv, scale, Lout);
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
      for (int k = 0; k < 4; ++k) {
        int nflip = 0;
        uint8_t s = 0;
        for (int i = 0; i < 8; ++i) {
          if (xb[8 * k + i] >= 0) {
            xval[8 * k + i] = xb[8 * k + i];
          } else {
            xval[8 * k + i] = -xb[8 * k + i];
            ++nflip;
            s = static_cast<uint8_t>(s | (1 << i));
          }
        }
        if (nflip % 2) {
          // odd number of negatives: flip the sign of the least important value (signs are stored
          // with even parity, 7 bits)
          int imin = 0;
          float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
          for (int i = 1; i < 8; ++i) {
            const float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
            if (ax < min) {
              min = ax;
              imin = i;
            }
          }
          xval[8 * k + imin] = -xval[8 * k + imin];
          s = static_cast<uint8_t>(s ^ (1 << imin));
        }
        block_signs[k] = s & 127;
      }
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
      float best = 0;
      for (int is = -6; is <= 6; ++is) {
        const float id = (2 * kMaxQ - 1 + is * 0.1f) / eff_max;
        const float this_scale = 1 / id;
        for (int k = 0; k < 4; ++k) {
          for (int i = 0; i < 8; ++i) {
            const int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
            Laux[8 * k + i] = static_cast<int8_t>(std::max(0, std::min(kMaxQ - 1, l)));
          }
          lookup(Laux + 8 * k, xval + 8 * k, waux + 8 * k, this_scale, Laux + 8 * k);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; ++i) {
          const float q = static_cast<float>(2 * Laux[i] + 1);
          sumqx += weight[i] * xval[i] * q;
          sumq2 += weight[i] * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          scale = sumqx / sumq2;
          best = scale * sumqx;
          std::memcpy(L, Laux, 32);
        }
      }
      if (scale > 0) {
        const float id = 1 / scale;
        for (int k = 0; k < 4; ++k) {
          int8_t Lk[8];
          for (int i = 0; i < 8; ++i) {
            const int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
            Lk[i] = static_cast<int8_t>(std::max(0, std::min(kMaxQ - 1, l)));
          }
          const int gi = lookup(Lk, xval + 8 * k, waux + 8 * k, scale, L + 8 * k);
          const uint64_t g = grid[gi];
          for (int i = 0; i < 8; ++i) L[8 * k + i] = static_cast<int8_t>((static_cast<int>((g >> (8 * i)) & 0xff) - 1) / 2);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; ++i) {
          const float q = static_cast<float>(2 * L[i] + 1);
          sumqx += weight[i] * xval[i] * q;
          sumq2 += weight[i] * q * q;
        }
        if (sumq2 > 0) scale = sumqx / sumq2;
      }
      if (scale < 0) {
        scale = -scale;
        for (int k = 0; k < 4; ++k) block_signs[k] = static_cast<uint8_t>((~block_signs[k]) & 127);
      }
      for (int k = 0; k < 4; ++k) {
        uint16_t u = 0;
        for (int i = 0; i < 8; ++i) u = static_cast<uint16_t>(u | (L[8 * k + i] << (2 * i)));
        const int gi = map[u];
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

}  // namespace dsv4
