// Scalar reference decoders and the run-time dispatch for E4M3 / E8M0 / E2M1 (see fp_decode.h).
#include "core/fp_decode.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/parallel.h"

namespace dsv4 {

const float kE2M1[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float e4m3_to_f32(uint8_t x) {
  const bool neg = (x & 0x80) != 0;
  const int e = (x >> 3) & 0xF;
  const int m = x & 0x7;
  float v;
  if (e == 0xF && m == 0x7) {
    v = std::numeric_limits<float>::quiet_NaN();  // e4m3fn: the only NaN code, no infinities
  } else if (e == 0) {
    v = std::ldexp(static_cast<float>(m), -9);  // subnormal: m/8 * 2^-6
  } else {
    v = std::ldexp(1.0f + static_cast<float>(m) / 8.0f, e - 7);
  }
  return neg ? -v : v;
}

float e8m0_to_f32(uint8_t x) {
  if (x == 0xFF) return std::numeric_limits<float>::quiet_NaN();
  return std::ldexp(1.0f, static_cast<int>(x) - 127);  // 2^-127 is a float32 subnormal, still exact
}

void decode_e4m3_ref(const uint8_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(in[i]);
}

void decode_e8m0_ref(const uint8_t* in, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = e8m0_to_f32(in[i]);
}

void decode_e2m1_ref(const uint8_t* in, float* out, size_t n_bytes) {
  for (size_t i = 0; i < n_bytes; ++i) {
    out[2 * i] = kE2M1[in[i] & 0xF];
    out[2 * i + 1] = kE2M1[in[i] >> 4];
  }
}

void dequant_fp8_rows_ref(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1) {
  const int64_t sc = (cols + 127) / 128;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* srow = scale + (r / 128) * sc;
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = e4m3_to_f32(w[r * cols + c]) * e8m0_to_f32(srow[c / 128]);
  }
}

void dequant_fp4_rows_ref(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1) {
  const int64_t half = cols / 2, ns = cols / 32;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t k = 0; k < half; ++k) {
      const uint8_t b = w[r * half + k];
      const float s = e8m0_to_f32(scale[r * ns + (2 * k) / 32]);
      out[r * cols + 2 * k] = kE2M1[b & 0xF] * s;
      out[r * cols + 2 * k + 1] = kE2M1[b >> 4] * s;
    }
  }
}

#if defined(DSV4_X86)
namespace {
bool use_simd(Impl impl) { return is_simd(resolve_impl(impl)); }
}  // namespace
#endif

void decode_e4m3(const uint8_t* in, float* out, size_t n, Impl impl) {
#if defined(DSV4_X86)
  if (use_simd(impl)) return decode_e4m3_avx2(in, out, n);
#else
  (void)resolve_impl(impl);
#endif
  decode_e4m3_ref(in, out, n);
}

void decode_e8m0(const uint8_t* in, float* out, size_t n, Impl impl) {
#if defined(DSV4_X86)
  if (use_simd(impl)) return decode_e8m0_avx2(in, out, n);
#else
  (void)resolve_impl(impl);
#endif
  decode_e8m0_ref(in, out, n);
}

void decode_e2m1(const uint8_t* in, float* out, size_t n_bytes, Impl impl) {
#if defined(DSV4_X86)
  if (use_simd(impl)) return decode_e2m1_avx2(in, out, n_bytes);
#else
  (void)resolve_impl(impl);
#endif
  decode_e2m1_ref(in, out, n_bytes);
}

void dequant_fp8(const uint8_t* w, const uint8_t* scale, float* out, int64_t rows, int64_t cols, Impl impl,
                 int threads) {
  auto fn = dequant_fp8_rows_ref;
#if defined(DSV4_X86)
  if (use_simd(impl)) fn = dequant_fp8_rows_avx2;
#else
  (void)resolve_impl(impl);
#endif
  parallel_for(rows, threads, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(cols, 1)),
               [&](int64_t b, int64_t e) { fn(w, scale, out, cols, b, e); });
}

void dequant_fp4(const uint8_t* w, const uint8_t* scale, float* out, int64_t rows, int64_t cols, Impl impl,
                 int threads) {
  auto fn = dequant_fp4_rows_ref;
#if defined(DSV4_X86)
  if (use_simd(impl)) fn = dequant_fp4_rows_avx2;
#else
  (void)resolve_impl(impl);
#endif
  parallel_for(rows, threads, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(cols, 1)),
               [&](int64_t b, int64_t e) { fn(w, scale, out, cols, b, e); });
}

}  // namespace dsv4
