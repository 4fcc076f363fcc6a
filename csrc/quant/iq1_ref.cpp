// IQ1_S and IQ1_M (ggml's 1.56 / 1.75 bpw lattice types): the reference quantizers (IQ1_S from iq1_impl.h
// with the scalar split search; IQ1_M, ggml's quantize_row_iq1_m_impl, here; both the ggml_quantize_chunk
// path, bytes-equal), the dequantizers and the scalar dot products with Q8_K.  IQ1_S refuses to run without
// importance weights, as ggml_quantize_requires_imatrix; IQ1_M takes either.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "quant/iq1_impl.h"
#include "quant/iq1_tables.h"
#include "quant/kernels.h"

namespace dsv4 {

using iq1::grid_level;
using iq1::iq1_grid_index;
using iq1::kGroupMaxEpsIq1M;
using iq1::kIq1Delta;
using iq1::sort_by_value;

namespace {

// Shift sign choice k of an IQ1_M 16-value half (0: +,+  1: +,-  2: -,+  3: -,-) for its group g.
inline const float* iq1m_shift(int k, int g, const float* x_p, const float* x_m) {
  return (g == 0 ? k < 2 : k % 2 == 0) ? x_p : x_m;
}

void quantize_block_iq1_m(const float* xbl, const float* qwl, BlockIQ1_M* y, const Iq1sTables& t) {
  constexpr int kBs = 16;
  const float x_p[3] = {-1 + kIq1Delta, kIq1Delta, 1 + kIq1Delta};
  const float x_m[3] = {-1 - kIq1Delta, -kIq1Delta, 1 - kIq1Delta};
  static const uint8_t kMasks[4] = {0x00, 0x80, 0x08, 0x88};
  float scales[QK_K / kBs], weight[kBs];
  int8_t L[kBs], shifts[QK_K / kBs];
  int idx[kBs];
  uint16_t index[kBs / 8];
  uint16_t sc[4] = {0, 0, 0, 0};

  std::memset(y, 0, sizeof(*y));
  float max_scale = 0;
  float sumx2 = 0;
  for (int i = 0; i < QK_K; ++i) sumx2 += xbl[i] * xbl[i];
  const float sigma2 = 2 * sumx2 / QK_K;
  auto set_weights = [&](const float* xb, int ib) {
    if (qwl) {
      const float* qw = qwl + kBs * ib;
      for (int i = 0; i < kBs; ++i) weight[i] = qw[i] * std::sqrt(sigma2 + xb[i] * xb[i]);
    } else {
      for (int i = 0; i < kBs; ++i) weight[i] = xb[i] * xb[i];
    }
  };

  for (int ib = 0; ib < QK_K / kBs; ++ib) {
    const float* xb = xbl + kBs * ib;
    set_weights(xb, ib);
    float max = std::fabs(xb[0]);
    for (int i = 1; i < kBs; ++i) max = std::max(max, std::fabs(xb[i]));
    if (max < kGroupMaxEpsIq1M) {
      scales[ib] = 0;
      shifts[ib] = 0;
      continue;
    }
    sort_by_value<kBs>(xb, idx);
    float best_score = -FLT_MAX, scale = max;
    int besti1 = -1, besti2 = -1, best_k = -1;
    {
      // Prefix sums per 8-value group (each group has its own shift sign); since v[0]-v[1] = v[1]-v[2] = -1
      // for both shifts, the 3-level sum of a split is T*v[2] - px[i1] - px[i2] (ggml's formulation, kept
      // term for term because the rounding decides ties).
      float px[2][kBs + 1], pw[2][kBs + 1];
      px[0][0] = px[1][0] = 0;
      pw[0][0] = pw[1][0] = 0;
      for (int j = 0; j < kBs; ++j) {
        const int i = idx[j];
        const int h = i < kBs / 2 ? 0 : 1;
        px[h][j + 1] = px[h][j] + weight[i] * xb[i];
        px[1 - h][j + 1] = px[1 - h][j];
        pw[h][j + 1] = pw[h][j] + weight[i];
        pw[1 - h][j + 1] = pw[1 - h][j];
      }
      const float txs[2] = {px[0][kBs], px[1][kBs]};
      const float tws[2] = {pw[0][kBs], pw[1][kBs]};
      const float p2 = x_p[2], m2 = x_m[2];
      const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
      const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
      const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
      const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
      float sumqx[4], sumq2[4];
      for (int i1 = 0; i1 <= kBs; ++i1) {
        for (int i2 = i1; i2 <= kBs; ++i2) {
          float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
          for (int h = 0; h < 2; ++h) {
            const float sx = px[h][i1] + px[h][i2];
            qx_p[h] = txs[h] * p2 - sx;
            qx_m[h] = txs[h] * m2 - sx;
            q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
            q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
          }
          sumqx[0] = qx_p[0] + qx_p[1];
          sumqx[1] = qx_p[0] + qx_m[1];
          sumqx[2] = qx_m[0] + qx_p[1];
          sumqx[3] = qx_m[0] + qx_m[1];
          sumq2[0] = q2_p[0] + q2_p[1];
          sumq2[1] = q2_p[0] + q2_m[1];
          sumq2[2] = q2_m[0] + q2_p[1];
          sumq2[3] = q2_m[0] + q2_m[1];
          for (int k = 0; k < 4; ++k) {
            if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
              scale = sumqx[k] / sumq2[k];
              best_score = scale * sumqx[k];
              besti1 = i1;
              besti2 = i2;
              best_k = k;
            }
          }
        }
      }
    }
    if (besti1 < 0 || besti2 < 0 || best_k < 0) {
      scales[ib] = 0;
      shifts[ib] = 0;
      continue;
    }
    for (int j = 0; j < besti1; ++j) L[idx[j]] = 0;
    for (int j = besti1; j < besti2; ++j) L[idx[j]] = 1;
    for (int j = besti2; j < kBs; ++j) L[idx[j]] = 2;
    if (scale < 0) {
      for (int j = 0; j < kBs; ++j) L[j] = static_cast<int8_t>(2 - L[j]);
      scale = -scale;
      best_k = 3 - best_k;
    }
    bool all_on_grid = true;
    for (int k = 0; k < kBs / 8; ++k)
      index[k] = static_cast<uint16_t>(iq1_grid_index(t, L + 8 * k, xb + 8 * k, weight + 8 * k, scale,
                                                      iq1m_shift(best_k, k, x_p, x_m), &all_on_grid));
    if (!all_on_grid) {
      float sumqx_f = 0, sumq2_f = 0;
      for (int k = 0; k < kBs / 8; ++k) {
        const float* xx = iq1m_shift(best_k, k, x_p, x_m);
        for (int j = 0; j < 8; ++j) {
          const float w = weight[8 * k + j];
          const float q = xx[grid_level(t, index[k], j)];
          sumqx_f += w * q * xb[8 * k + j];
          sumq2_f += w * q * q;
        }
      }
      if (sumqx_f > 0 && sumq2_f > 0) scale = sumqx_f / sumq2_f;
    }
    y->qs[2 * ib + 0] = static_cast<uint8_t>(index[0] & 255);
    y->qs[2 * ib + 1] = static_cast<uint8_t>(index[1] & 255);
    y->qh[ib] = static_cast<uint8_t>((index[0] >> 8) | ((index[1] >> 8) << 4));
    scales[ib] = scale;
    shifts[ib] = static_cast<int8_t>(best_k);
    max_scale = std::max(max_scale, scale);
  }
  if (max_scale == 0.f) return;

  // Second pass: the 3-bit half scales against d = max/15, then d itself refit by weighted least squares
  // over the stored codes (with ggml's 1.1125 fudge factor).
  float d = max_scale / 15;
  const float id = 1 / d;
  float sumqx_f = 0, sumq2_f = 0;
  for (int ib = 0; ib < QK_K / kBs; ++ib) {
    int l = nearest_int(0.5f * (id * scales[ib] - 1));
    l = std::max(0, std::min(7, l));
    sc[ib / 4] = static_cast<uint16_t>(sc[ib / 4] | (l << (3 * (ib % 4))));
    y->qh[ib] = static_cast<uint8_t>(y->qh[ib] | kMasks[shifts[ib]]);
    const float* xb = xbl + kBs * ib;
    set_weights(xb, ib);
    for (int k = 0; k < kBs / 8; ++k) {
      const float* xx = iq1m_shift(shifts[ib], k, x_p, x_m);
      const int gi = y->qs[2 * ib + k] | ((y->qh[ib] << (8 - 4 * k)) & 0x700);
      for (int j = 0; j < 8; ++j) {
        const float w = weight[8 * k + j];
        const float q = xx[grid_level(t, gi, j)] * static_cast<float>(2 * l + 1);
        sumqx_f += w * q * xb[8 * k + j];
        sumq2_f += w * q * q;
      }
    }
  }
  if (sumq2_f > 0) d = sumqx_f / sumq2_f;
  const uint16_t s = f32_to_fp16(d * 1.1125f);
  sc[0] = static_cast<uint16_t>(sc[0] | ((s & 0x000f) << 12));
  sc[1] = static_cast<uint16_t>(sc[1] | ((s & 0x00f0) << 8));
  sc[2] = static_cast<uint16_t>(sc[2] | ((s & 0x0f00) << 4));
  sc[3] = static_cast<uint16_t>(sc[3] | (s & 0xf000));
  std::memcpy(y->scales, sc, sizeof(sc));
}

inline float iq1m_d(const BlockIQ1_M& b) {
  uint16_t sc[4];
  std::memcpy(sc, b.scales, sizeof(sc));
  return fp16_to_f32(
      static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)));
}

inline int8_t grid_value(uint64_t g, int j) { return static_cast<int8_t>((g >> (8 * j)) & 0xff); }

}  // namespace

void quantize_row_iq1_s_ref(const float* x, void* vy, int64_t n, const float* qw) {
  if (!qw) throw std::invalid_argument("IQ1_S quantization requires importance weights (imatrix)");
  const Iq1sTables& t = iq1s_tables();
  BlockIQ1_S* y = static_cast<BlockIQ1_S*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b)
    iq1::quantize_block_iq1_s<iq1::Iq1sSplitRef>(x + QK_K * b, qw + QK_K * b, y + b, t);
}

void quantize_row_iq1_m_ref(const float* x, void* vy, int64_t n, const float* qw) {
  const Iq1sTables& t = iq1s_tables();
  BlockIQ1_M* y = static_cast<BlockIQ1_M*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b) quantize_block_iq1_m(x + QK_K * b, qw ? qw + QK_K * b : nullptr, y + b, t);
}

void dequantize_row_iq1_s_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ1_S* x = static_cast<const BlockIQ1_S*>(vx);
  const Iq1sTables& t = iq1s_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < 8; ++ib) {
      const uint16_t qh = x[b].qh[ib];
      const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
      const float delta = qh & 0x8000 ? -kIq1Delta : kIq1Delta;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint64_t g = t.grid_values[x[b].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
        for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(grid_value(g, j)) + delta);
      }
    }
  }
}

void dequantize_row_iq1_m_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ1_M* x = static_cast<const BlockIQ1_M*>(vx);
  const Iq1sTables& t = iq1s_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = iq1m_d(x[b]);
    uint16_t sc[4];
    std::memcpy(sc, x[b].scales, sizeof(sc));
    for (int ih = 0; ih < 16; ++ih) {  // 16-value halves, each with its own scale
      const float dl = d * static_cast<float>(2 * ((sc[ih / 4] >> (3 * (ih % 4))) & 7) + 1);
      const uint8_t qh = x[b].qh[ih];
      for (int k = 0; k < 2; ++k, y += 8) {
        const float delta = (qh >> (4 * k)) & 0x08 ? -kIq1Delta : kIq1Delta;
        const uint64_t g = t.grid_values[x[b].qs[2 * ih + k] | (((qh >> (4 * k)) & 7) << 8)];
        for (int j = 0; j < 8; ++j) y[j] = dl * (static_cast<float>(grid_value(g, j)) + delta);
      }
    }
  }
}

// Both dots keep ggml's split of the integer sums (grid . q8 and the shift term) and fold them into one
// exact integer 8*sum + shift_sum (|.| < 2^23), scaled once per super-block by (d * d8) and then 1/8:
// ggml's (sumi + 0.125f * sumi1) is the same value, exactly.
float vec_dot_iq1_s_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ1_S* w = static_cast<const BlockIQ1_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq1sTables& t = iq1s_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const int8_t* q8 = a[b].qs;
    int sumi = 0, sumi1 = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const uint16_t qh = w[b].qh[ib];
      const int ls = 2 * ((qh >> 12) & 7) + 1;
      int lsum = 0;
      for (int l = 0; l < 4; ++l, q8 += 8) {
        const uint64_t g = t.grid_values[w[b].qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)];
        for (int j = 0; j < 8; ++j) lsum += grid_value(g, j) * q8[j];
      }
      sumi += ls * lsum;
      const int bsum = a[b].bsums[2 * ib] + a[b].bsums[2 * ib + 1];
      sumi1 += (qh & 0x8000 ? -ls : ls) * bsum;
    }
    sum += ((fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(8 * sumi + sumi1)) * 0.125f;
  }
  return sum;
}

float vec_dot_iq1_m_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ1_M* w = static_cast<const BlockIQ1_M*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq1sTables& t = iq1s_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    uint16_t sc[4];
    std::memcpy(sc, w[b].scales, sizeof(sc));
    const int8_t* q8 = a[b].qs;
    int sumi1 = 0, sumi2 = 0;
    for (int ih = 0; ih < 16; ++ih) {
      const int ls = 2 * ((sc[ih / 4] >> (3 * (ih % 4))) & 7) + 1;
      const uint8_t qh = w[b].qh[ih];
      int s1 = 0, s2 = 0;
      for (int k = 0; k < 2; ++k, q8 += 8) {
        const uint64_t g = t.grid_values[w[b].qs[2 * ih + k] | (((qh >> (4 * k)) & 7) << 8)];
        int lsum1 = 0, lsum2 = 0;
        for (int j = 0; j < 8; ++j) {
          lsum1 += grid_value(g, j) * q8[j];
          lsum2 += q8[j];
        }
        s1 += lsum1;
        s2 += (qh >> (4 * k)) & 0x08 ? -lsum2 : lsum2;
      }
      sumi1 += ls * s1;
      sumi2 += ls * s2;
    }
    sum += ((iq1m_d(w[b]) * a[b].d) * static_cast<float>(8 * sumi1 + sumi2)) * 0.125f;
  }
  return sum;
}

}  // namespace dsv4
