// Per-type row kernels (internal to csrc/quant; callers use quant.h).  A "row" is n elements,
// n a multiple of the type's block size.  Quantizers take an optional importance vector `qw`
// (n entries, the imatrix of the row's columns; nullptr = none).  vec_dot returns
// sum_i w[i] * a[i] with the activation row `a` already in the type's vec_dot format (Q8_0, Q8_1 or Q8_K).
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/blocks.h"

namespace dsv4 {

using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n, const float* qw);
using DequantizeRowFn = void (*)(const void* x, float* y, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* w, const void* a);
// out[r] = vec_dot(n, w + r * row_bytes, a) for r < nrows, bit for bit; several rows share the activation.
using VecDotRowsFn = void (*)(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, float* out);
// y[t * ys + r] = vec_dot(n, w + r * row_bytes, a + t * a_row_bytes) for r < nrows, t < ntok, bit for bit.
using GemmFn = void (*)(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, size_t a_row_bytes,
                        int64_t ntok, float* y, int64_t ys);

#define DSV4_DECLARE_QTYPE_KERNELS(T, SUFFIX)                                            \
  void quantize_row_##T##_##SUFFIX(const float* x, void* y, int64_t n, const float* qw); \
  void dequantize_row_##T##_##SUFFIX(const void* x, float* y, int64_t n);

#define DSV4_FOR_EACH_QTYPE(X, SUFFIX) \
  X(f32, SUFFIX)                       \
  X(f16, SUFFIX)                       \
  X(bf16, SUFFIX)                      \
  X(q8_0, SUFFIX)                      \
  X(q4_0, SUFFIX)                      \
  X(q4_1, SUFFIX)                      \
  X(q5_0, SUFFIX)                      \
  X(q5_1, SUFFIX)                      \
  X(q8_1, SUFFIX)                      \
  X(iq4_nl, SUFFIX)                    \
  X(mxfp4, SUFFIX)                     \
  X(q2_k, SUFFIX)                      \
  X(q3_k, SUFFIX)                      \
  X(q4_k, SUFFIX)                      \
  X(q5_k, SUFFIX)                      \
  X(q6_k, SUFFIX)                      \
  X(q8_k, SUFFIX)                      \
  X(iq4_xs, SUFFIX)                    \
  X(iq2_xxs, SUFFIX)                   \
  X(iq3_xxs, SUFFIX)                   \
  X(iq3_s, SUFFIX)                     \
  X(iq2_xs, SUFFIX)                    \
  X(iq2_s, SUFFIX)                     \
  X(iq1_s, SUFFIX)                     \
  X(iq1_m, SUFFIX)

DSV4_FOR_EACH_QTYPE(DSV4_DECLARE_QTYPE_KERNELS, ref)

// Dot products (weight row . activation row): exact integer block sums, then float scaling and
// accumulation in one fixed lane order (see dot_ref.cpp) that the AVX2 versions reproduce bit for bit.
float vec_dot_q8_0_ref(int64_t n, const void* w, const void* a);
float vec_dot_q4_0_ref(int64_t n, const void* w, const void* a);
float vec_dot_mxfp4_ref(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_ref(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_ref(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq4_nl_ref(int64_t n, const void* w, const void* a);
float vec_dot_q2_k_ref(int64_t n, const void* w, const void* a);
float vec_dot_q3_k_ref(int64_t n, const void* w, const void* a);
float vec_dot_q4_k_ref(int64_t n, const void* w, const void* a);
float vec_dot_q5_k_ref(int64_t n, const void* w, const void* a);
float vec_dot_q6_k_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq4_xs_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq2_xxs_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq3_xxs_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq3_s_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq2_xs_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq2_s_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq1_s_ref(int64_t n, const void* w, const void* a);
float vec_dot_iq1_m_ref(int64_t n, const void* w, const void* a);
float vec_dot_f32_ref(int64_t n, const void* w, const void* a);
float vec_dot_f16_ref(int64_t n, const void* w, const void* a);
float vec_dot_bf16_ref(int64_t n, const void* w, const void* a);

#if defined(DSV4_X86)
// AVX2 paths (bit-exact with the _ref ones).  Types without a dedicated AVX2 kernel dispatch to ref.
void quantize_row_q8_0_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q4_0_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_mxfp4_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q8_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_f16_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_bf16_avx2(const float* x, void* y, int64_t n, const float* qw);
void dequantize_row_bf16_avx2(const void* x, float* y, int64_t n);
void quantize_row_iq2_xxs_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_iq3_xxs_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_iq3_s_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q4_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q5_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q2_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q6_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q3_k_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_iq4_xs_avx2(const float* x, void* y, int64_t n, const float* qw);
void dequantize_row_q8_0_avx2(const void* x, float* y, int64_t n);
void dequantize_row_q4_0_avx2(const void* x, float* y, int64_t n);
void dequantize_row_mxfp4_avx2(const void* x, float* y, int64_t n);
void dequantize_row_q4_k_avx2(const void* x, float* y, int64_t n);
void dequantize_row_q6_k_avx2(const void* x, float* y, int64_t n);
void dequantize_row_f16_avx2(const void* x, float* y, int64_t n);
float vec_dot_q8_0_avx2(int64_t n, const void* w, const void* a);
void vec_dot_rows_q8_0_avx2(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, float* out);
void vec_dot_rows_q4_0_avx2(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, float* out);
void vec_dot_rows_mxfp4_avx2(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, float* out);
float vec_dot_q4_0_avx2(int64_t n, const void* w, const void* a);
float vec_dot_mxfp4_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q4_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q6_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q5_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q2_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q3_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq4_xs_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq2_xxs_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq3_xxs_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq3_s_avx2(int64_t n, const void* w, const void* a);
void quantize_row_iq2_xs_avx2(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_iq1_s_avx2(const float* x, void* y, int64_t n, const float* qw);
float vec_dot_iq2_xs_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq2_s_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq1_s_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq1_m_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_avx2(int64_t n, const void* w, const void* a);
float vec_dot_iq4_nl_avx2(int64_t n, const void* w, const void* a);

// AVX-512 paths (gemm_avx512.cpp; bit-exact with the _ref ones).  Every other kernel of the AVX-512
// level is the AVX2 one.
#define DSV4_DECLARE_AVX512_GEMM(T)                                                                                    \
  void gemm_##T##_avx512(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, size_t a_row_bytes, \
                         int64_t ntok, float* y, int64_t ys);                                                          \
  void vec_dot_rows_##T##_avx512(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a,             \
                                 float* out);                                                                          \
  float vec_dot_##T##_avx512(int64_t n, const void* w, const void* a);
DSV4_DECLARE_AVX512_GEMM(q8_0)
DSV4_DECLARE_AVX512_GEMM(q4_0)
DSV4_DECLARE_AVX512_GEMM(mxfp4)
#undef DSV4_DECLARE_AVX512_GEMM
void gemm_q4_k_avx512(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, size_t a_row_bytes,
                      int64_t ntok, float* y, int64_t ys);
void gemm_q5_k_avx512(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, size_t a_row_bytes,
                      int64_t ntok, float* y, int64_t ys);
void gemm_q6_k_avx512(int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a, size_t a_row_bytes,
                      int64_t ntok, float* y, int64_t ys);
#endif

#if defined(DSV4_AARCH64)
// NEON paths (quant_neon.cpp, dot_neon.cpp; bit-exact with the _ref ones).  The _dotprod dots use SDOT and may
// only run where cpu_has_dotprod(); every type without a NEON kernel dispatches to ref.
void quantize_row_q8_0_neon(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_mxfp4_neon(const float* x, void* y, int64_t n, const float* qw);
void quantize_row_q4_k_neon(const float* x, void* y, int64_t n, const float* qw);
#define DSV4_DECLARE_NEON_DOT(T)                                     \
  float vec_dot_##T##_neon(int64_t n, const void* w, const void* a); \
  float vec_dot_##T##_neon_dotprod(int64_t n, const void* w, const void* a);
DSV4_DECLARE_NEON_DOT(q8_0)
DSV4_DECLARE_NEON_DOT(q4_0)
DSV4_DECLARE_NEON_DOT(mxfp4)
DSV4_DECLARE_NEON_DOT(q4_k)
DSV4_DECLARE_NEON_DOT(q6_k)
#undef DSV4_DECLARE_NEON_DOT
#endif

}  // namespace dsv4
