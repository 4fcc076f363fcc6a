// Public entry points of the quant kernels: whole-tensor, row-parallel quantize / dequantize / matvec
// over ggml block formats, with run-time selection of the scalar reference or AVX2 kernels
// (Impl::Auto honours DSV4_FORCE_REF).  Inputs are validated here (finite data, finite non-negative
// importance weights, block-aligned rows); errors are std::invalid_argument naming row and column.
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
};

// out[r] = k.dot(n, w + r * row_bytes, a) for r < nrows, through the multi-row kernel where there is one.
inline void vec_dot_rows(const QuantKernels& k, int64_t n, const void* w, size_t row_bytes, int64_t nrows, const void* a,
                         float* out) {
  if (k.dot_rows) {
    k.dot_rows(n, w, row_bytes, nrows, a, out);
    return;
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  for (int64_t r = 0; r < nrows; ++r) out[r] = k.dot(n, wb + static_cast<size_t>(r) * row_bytes, a);
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
// One dot product of n elements: w in `t`, a already in vec_dot_type(t) (bytes checked by the caller).
float vec_dot(QType t, const void* w, const void* a, int64_t n, Impl impl);
// Quantized activations for `t`'s dot product: returns the activation type.
QType vec_dot_type(QType t);

}  // namespace dsv4
