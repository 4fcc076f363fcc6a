// Scalar reference kernels for ggml's other 32-element weight types, Q4_1, Q5_0, Q5_1 and IQ4_NL, and
// the Q8_1 activation format of the Q4_1/Q5_1 dot products.  The quantizers are ggml_quantize_chunk's
// paths step for step (ggml-quants.c: quantize_row_*_ref without an imatrix, quantize_row_*_impl with
// one; IQ4_NL always through quantize_iq4_nl, ntry 7), so the bytes are identical.  No SIMD quantizers or
// dequantizers: every dispatch level runs these (the dots of these types have AVX2 versions, dot_avx2.cpp).
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/iquant_impl.h"
#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/tables.h"

namespace dsv4 {

namespace {

// The weighted paths: sigma2 over the whole row, weight = qw * sqrt(sigma2 + x^2) per value (ggml).
float row_sigma2(const float* x, int64_t n) {
  float sum_x2 = 0;
  for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / n;
}

void block_weights(const float* xb, const float* qw, float sigma2, float* weight) {
  for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// 5-bit codes L[0..31] -> low nibbles (value j | value j+16 << 4) and the 5th bits in a little-endian u32.
void pack_5bit(const uint8_t* L, uint8_t* qs, uint8_t* qh) {
  uint32_t h = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
    h |= ((L[j] & 0x10u) >> 4) << j;
    h |= ((L[j + 16] & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh, &h, 4);
}

inline int fifth_bit(const uint8_t* qh, int j) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return static_cast<int>((h >> j) & 1u) << 4;
}

// min/max of a block for the asymmetric types (ggml starts from +-FLT_MAX).
void block_min_max(const float* x, float* mn, float* mx) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  *mn = min;
  *mx = max;
}

}  // namespace

// ---- Q4_1: d = (max - min)/15, m = min, codes = min(15, trunc((x - min)/d + 0.5)); imatrix: make_qkx3
void quantize_row_q4_1_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ4_1* y = static_cast<BlockQ4_1*>(vy);
  if (qw) {
    const float sigma2 = row_sigma2(x, n);
    float weight[32];
    uint8_t L[32], Laux[32];
    for (int64_t b = 0; b < n / 32; ++b) {
      const float* xb = x + 32 * b;
      block_weights(xb, qw + 32 * b, sigma2, weight);
      float min;
      const float d = kq::ScalarSearch::qkx(32, 15, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false, true);
      y[b].d = f32_to_fp16(d);
      y[b].m = f32_to_fp16(-min);
      for (int j = 0; j < 16; ++j) y[b].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
    }
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 15;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    y[b].m = f32_to_fp16(min);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - min) * id + 0.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - min) * id + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(static_cast<uint8_t>(q0) | (static_cast<uint8_t>(q1) << 4));
    }
  }
}
void dequantize_row_q4_1_ref(const void* vx, float* y, int64_t n) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(vx);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d), m = fp16_to_f32(x[b].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(x[b].qs[j] & 0x0F) * d + m;
      y[j + 16] = static_cast<float>(x[b].qs[j] >> 4) * d + m;
    }
  }
}

// ---- Q5_0: d = (signed value of largest magnitude) / -16, codes = min(31, trunc(x/d + 16.5)); imatrix: make_qx
void quantize_row_q5_0_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ5_0* y = static_cast<BlockQ5_0*>(vy);
  uint8_t L[32];
  if (qw) {
    const float sigma2 = row_sigma2(x, n);
    float weight[32];
    int8_t Ls[32];
    for (int64_t b = 0; b < n / 32; ++b) {
      const float* xb = x + 32 * b;
      block_weights(xb, qw + 32 * b, sigma2, weight);
      const float d = kq::ScalarSearch::qx(32, 16, xb, Ls, weight);
      y[b].d = f32_to_fp16(d);
      for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>(Ls[j]);
      pack_5bit(L, y[b].qs, y[b].qh);
    }
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -16;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j)
      L[j] = static_cast<uint8_t>(std::min(31, static_cast<int>(static_cast<int8_t>(x[j] * id + 16.5f))));
    pack_5bit(L, y[b].qs, y[b].qh);
  }
}
void dequantize_row_q5_0_ref(const void* vx, float* y, int64_t n) {
  const BlockQ5_0* x = static_cast<const BlockQ5_0*>(vx);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>(((x[b].qs[j] & 0x0F) | fifth_bit(x[b].qh, j)) - 16) * d;
      y[j + 16] = static_cast<float>(((x[b].qs[j] >> 4) | fifth_bit(x[b].qh, j + 16)) - 16) * d;
    }
  }
}

// ---- Q5_1: d = (max - min)/31, m = min, codes = trunc((x - min)/d + 0.5) (no clamp, as ggml); imatrix: make_qkx3
void quantize_row_q5_1_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ5_1* y = static_cast<BlockQ5_1*>(vy);
  uint8_t L[32];
  if (qw) {
    const float sigma2 = row_sigma2(x, n);
    float weight[32];
    uint8_t Laux[32];
    for (int64_t b = 0; b < n / 32; ++b) {
      const float* xb = x + 32 * b;
      block_weights(xb, qw + 32 * b, sigma2, weight);
      float min;
      const float d = kq::ScalarSearch::qkx(32, 31, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false, true);
      y[b].d = f32_to_fp16(d);
      y[b].m = f32_to_fp16(-min);
      pack_5bit(L, y[b].qs, y[b].qh);
    }
    return;
  }
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float min, max;
    block_min_max(x, &min, &max);
    const float d = (max - min) / 31;
    const float id = d != 0.f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    y[b].m = f32_to_fp16(min);
    for (int j = 0; j < 32; ++j) L[j] = static_cast<uint8_t>((x[j] - min) * id + 0.5f);
    pack_5bit(L, y[b].qs, y[b].qh);
  }
}
void dequantize_row_q5_1_ref(const void* vx, float* y, int64_t n) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(vx);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d), m = fp16_to_f32(x[b].m);
    for (int j = 0; j < 16; ++j) {
      y[j] = static_cast<float>((x[b].qs[j] & 0x0F) | fifth_bit(x[b].qh, j)) * d + m;
      y[j + 16] = static_cast<float>((x[b].qs[j] >> 4) | fifth_bit(x[b].qh, j + 16)) * d + m;
    }
  }
}

// ---- Q8_1 (activations): as Q8_0 (d = amax/127, codes = roundf(x/d)) plus s = fp16(d * sum of codes)
void quantize_row_q8_1_ref(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_1* y = static_cast<BlockQ8_1*>(vy);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
      sum += y[b].qs[j];
    }
    y[b].s = f32_to_fp16(static_cast<float>(sum) * d);
  }
}
void dequantize_row_q8_1_ref(const void* vx, float* y, int64_t n) {
  const BlockQ8_1* x = static_cast<const BlockQ8_1*>(vx);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 32; ++j) y[j] = x[b].qs[j] * d;
  }
}

// ---- IQ4_NL: ggml's quantize_iq4_nl (see kq::quantize_iq4_nl_block), with or without imatrix
void quantize_row_iq4_nl_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockIQ4_NL* y = static_cast<BlockIQ4_NL*>(vy);
  for (int64_t b = 0; b < n / 32; ++b)
    kq::quantize_iq4_nl_block<kq::ScalarSearch>(x + 32 * b, qw ? qw + 32 * b : nullptr, &y[b]);
}
void dequantize_row_iq4_nl_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ4_NL* x = static_cast<const BlockIQ4_NL*>(vx);
  for (int64_t b = 0; b < n / 32; ++b, y += 32) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kValuesIQ4NL[x[b].qs[j] & 0xf]);
      y[j + 16] = d * static_cast<float>(kValuesIQ4NL[x[b].qs[j] >> 4]);
    }
  }
}

}  // namespace dsv4
