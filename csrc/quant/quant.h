// Public entry points of the quant kernels: whole-tensor, row-parallel quantize / dequantize / matvec
// over ggml block formats, with run-time selection of the scalar reference, AVX2, AVX-512 or NEON kernels
// (Impl::Auto honours DSV4_KERNELS and its aliases DSV4_FORCE_REF, DSV4_FORCE_AVX2: core/cpu_features.h).
// Inputs are validated here (finite data, finite non-negative importance weights, block-aligned rows); errors
// are std::invalid_argument naming row and column.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"
#include "quant/kernels.h"
#include "quant/qtypes.h"

namespace dsv4 {

struct QuantKernels {
  QuantizeRowFn quantize;
  DequantizeRowFn dequantize;
  VecDotFn dot;  // nullptr when the type has no dot product (Q8_K)
  const char* impl;
  VecDotRowsFn dot_rows = nullptr;  // several rows at once (same bits as `dot`); nullptr: loop over dot
  GemmFn gemm = nullptr;            // several rows x several activation rows (same bits); nullptr: loop
};

// out[r] = k.dot(n, w + r * row_bytes, a) for r < nrows, through the multi-row kernel where there is one.
inline void vec_dot_rows(const QuantKernels& k, int64_t n, const void* w, size_t row_bytes, int64_t nrows,
                         const void* a, float* out) {
  if (k.dot_rows) {
    k.dot_rows(n, w, row_bytes, nrows, a, out);
    return;
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  for (int64_t r = 0; r < nrows; ++r) out[r] = k.dot(n, wb + static_cast<size_t>(r) * row_bytes, a);
}

// y[t * ys + r] = k.dot(n, w + r * row_bytes, a + t * a_row_bytes) for r < nrows, t < ntok: the tiled
// kernel where there is one (each weight block decoded once per tile of activation rows).
inline void vec_dot_gemm(const QuantKernels& k, int64_t n, const void* w, size_t row_bytes, int64_t nrows,
                         const void* a, size_t a_row_bytes, int64_t ntok, float* y, int64_t ys) {
  if (k.gemm) {
    k.gemm(n, w, row_bytes, nrows, a, a_row_bytes, ntok, y, ys);
    return;
  }
  const uint8_t* ab = static_cast<const uint8_t*>(a);
  for (int64_t t = 0; t < ntok; ++t)
    vec_dot_rows(k, n, w, row_bytes, nrows, ab + static_cast<size_t>(t) * a_row_bytes, y + t * ys);
}

// Kernels for `t` under `impl` (Auto/Ref/Simd resolved); throws std::invalid_argument for unknown t.
QuantKernels quant_kernels(QType t, Impl impl);
const QTypeInfo& require_qtype(int32_t id);

// Bytes of one quantized row of `cols` elements; throws when cols is not a multiple of the block.
size_t quant_row_size(QType t, int64_t cols);

// src f32 [rows, cols] -> dst [rows, row_size].  imatrix: nullptr or `cols` weights.
void quantize_rows(QType t, const float* src, void* dst, int64_t rows, int64_t cols, const float* imatrix, Impl impl,
                   int threads);
void dequantize_rows(QType t, const void* src, float* dst, int64_t rows, int64_t cols, Impl impl, int threads);
// y[r] = W[r, :] . x for every row of the quantized W (x quantized once to the type's vec_dot format).
void matvec(QType t, const void* w, const float* x, float* y, int64_t rows, int64_t cols, Impl impl, int threads);
// Y[t, r] = W[r, :] . X[t, :] for ntok activation rows (each quantized once), through the tiled kernel
// where there is one; every value equals matvec's for that row of X, bit for bit.
void matmul(QType t, const void* w, const float* x, float* y, int64_t rows, int64_t cols, int64_t ntok, Impl impl,
            int threads);
// One dot product of n elements: w in `t`, a already in vec_dot_type(t) (bytes checked by the caller).
float vec_dot(QType t, const void* w, const void* a, int64_t n, Impl impl);
// Quantized activations for `t`'s dot product: returns the activation type.
QType vec_dot_type(QType t);

}  // namespace dsv4
