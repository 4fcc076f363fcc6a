// Scalar reference kernels for the flat and 32-element block types: F32/F16/BF16 conversion,
// Q8_0, Q4_0, MXFP4, and the Q8_K activation format.  Algorithms follow ggml's *_ref quantizers
// step for step (same rounding primitives, same operation order), so the bytes are identical.
// The imatrix is ignored by Q8_0 and MXFP4, as in ggml; Q4_0 uses it (ggml's weighted search).
#include <cmath>
#include <cstring>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/tables.h"

namespace dsv4 {

void quantize_row_f32_ref(const float* x, void* y, int64_t n, const float*) {
  std::memcpy(y, x, static_cast<size_t>(n) * 4);
}
void dequantize_row_f32_ref(const void* x, float* y, int64_t n) { std::memcpy(y, x, static_cast<size_t>(n) * 4); }

void quantize_row_f16_ref(const float* x, void* y, int64_t n, const float*) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_fp16(x[i]);
}
void dequantize_row_f16_ref(const void* x, float* y, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(x);
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(h[i]);
}

void quantize_row_bf16_ref(const float* x, void* y, int64_t n, const float*) {
  uint16_t* o = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) o[i] = f32_to_bf16(x[i]);
}
void dequantize_row_bf16_ref(const void* x, float* y, int64_t n) {
  const uint16_t* h = static_cast<const uint16_t*>(x);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(h[i]);
}

// ---- Q8_0: d = amax/127 (the fp32 d, not the stored fp16, sets the codes), codes = roundf(x/d)
void quantize_row_q8_0_ref(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float amax = 0.f;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));
  }
}
void dequantize_row_q8_0_ref(const void* vx, float* y, int64_t n) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(vx);
  for (int64_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < QK8_0; ++j) y[j] = x[b].qs[j] * d;
  }
}

// ---- Q4_0: d = (signed value of largest magnitude) / -8, codes = min(15, trunc(x/d + 8.5))
void quantize_row_q4_0_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ4_0* y = static_cast<BlockQ4_0*>(vy);
  if (qw) return kq::quantize_row_q4_0_weighted<kq::ScalarSearch>(x, y, n, qw);
  for (int64_t b = 0; b < n / QK4_0; ++b, x += QK4_0) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < QK4_0; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < 16; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}
void dequantize_row_q4_0_ref(const void* vx, float* y, int64_t n) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(vx);
  for (int64_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>((x[b].qs[j] & 0xf) - 8);
      y[j + 16] = d * static_cast<float>((x[b].qs[j] >> 4) - 8);
    }
  }
}

// ---- MXFP4: e = floor(log2 amax) - 2 + 127, nearest doubled-E2M1 code (first index wins ties).
// Searching |x| over the 8 non-negative codes and adding the sign bit afterwards is the same
// argmin as ggml's scan over all 16 (the negative codes only win strictly for x < 0, and
// |-k*d - x| == |k*d - |x|| exactly).
static inline uint8_t mxfp4_code(float x, float d) {
  const float ax = std::fabs(x);
  int best = 0;
  float best_err = ax;
  for (int k = 1; k < 8; ++k) {
    const float err = std::fabs(static_cast<float>(kValuesMXFP4[k]) * d - ax);
    if (err < best_err) {
      best_err = err;
      best = k;
    }
  }
  return static_cast<uint8_t>((x < 0.f && best > 0) ? best + 8 : best);
}

// For amax < 2^-125 the exponent is negative; ggml converts that float to uint8_t directly (undefined
// behaviour, wraps on x86).  Going through int wraps the same way without UB, so bytes still match;
// such blocks decode to zeros either way.
uint8_t mxfp4_exponent(float amax) {
  if (!(amax > 0.f)) return 0;
  const int e = static_cast<int>(std::floor(std::log2(amax))) - 2 + 127;
  return static_cast<uint8_t>(e & 0xff);
}

void quantize_row_mxfp4_ref(const float* x, void* vy, int64_t n, const float*) {
  BlockMXFP4* y = static_cast<BlockMXFP4*>(vy);
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, x += QK_MXFP4) {
    float amax = 0.f;
    for (int j = 0; j < QK_MXFP4; ++j) amax = std::max(amax, std::fabs(x[j]));
    const uint8_t e = mxfp4_exponent(amax);
    const float d = e8m0_to_f32_half(e);
    y[b].e = e;
    for (int j = 0; j < 16; ++j)
      y[b].qs[j] = static_cast<uint8_t>(mxfp4_code(x[j], d) | (mxfp4_code(x[j + 16], d) << 4));
  }
}
void dequantize_row_mxfp4_ref(const void* vx, float* y, int64_t n) {
  const BlockMXFP4* x = static_cast<const BlockMXFP4*>(vx);
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, y += QK_MXFP4) {
    const float d = e8m0_to_f32_half(x[b].e);
    for (int j = 0; j < 16; ++j) {
      y[j] = d * static_cast<float>(kValuesMXFP4[x[b].qs[j] & 0xf]);
      y[j + 16] = d * static_cast<float>(kValuesMXFP4[x[b].qs[j] >> 4]);
    }
  }
}

// ---- Q8_K (activations): iscale = -127/max (signed max), codes = min(127, nearest_int), bsums.
void quantize_row_q8_k_ref(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_K* y = static_cast<BlockQ8_K*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) y[b].qs[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < QK_K / 16; ++g) {
      int s = 0;
      for (int j = 0; j < 16; ++j) s += y[b].qs[16 * g + j];
      y[b].bsums[g] = static_cast<int16_t>(s);
    }
    y[b].d = 1.f / iscale;
  }
}
void dequantize_row_q8_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ8_K* x = static_cast<const BlockQ8_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K)
    for (int j = 0; j < QK_K; ++j) y[j] = x[b].d * x[b].qs[j];
}

}  // namespace dsv4
