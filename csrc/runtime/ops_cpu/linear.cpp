// Weight x activation products over any supported GGUF type (spec §9.1 numerics: fp32 accumulation).
// Two paths: exact (dequantize the weight row, f32 dot: the reference's math) and quantized (ggml-style
// integer dot against activations quantized once per token).  Every (row, token) product is computed
// the same way whatever the number of tokens, so prefill, chunked prefill and decode agree bit for bit.
#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "quant/quant.h"
#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

#if defined(DSV4_X86)
float dot_f32_avx2(const float* a, const float* b, int64_t n);
float dot_bf16_f32_avx2(const uint16_t* a, const float* b, int64_t n);
float dot_f32_avx512(const float* a, const float* b, int64_t n);
void axpy_f32_avx2(float* y, float a, const float* x, int64_t n);
void axpy_f32_avx512(float* y, float a, const float* x, int64_t n);
float dot_bf16_f32_avx512(const uint16_t* a, const float* b, int64_t n);
#endif

float dot_f32_ref(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0.f;
  for (; i < n; ++i) s += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + s;
}

namespace {
// The f32-activation dots of the process's kernel level (Auto: CPU and environment), resolved once.
struct FloatDots {
  float (*f32)(const float*, const float*, int64_t) = dot_f32_ref;
  float (*bf16)(const uint16_t*, const float*, int64_t) = nullptr;  // nullptr: dequantize + f32
  void (*axpy)(float*, float, const float*, int64_t) = nullptr;     // nullptr: scalar loop
  FloatDots() {
#if defined(DSV4_X86)
    const Impl i = resolve_impl(Impl::Auto);
    if (i == Impl::Avx512) f32 = dot_f32_avx512, bf16 = dot_bf16_f32_avx512, axpy = axpy_f32_avx512;
    else if (i == Impl::Simd) f32 = dot_f32_avx2, bf16 = dot_bf16_f32_avx2, axpy = axpy_f32_avx2;
#endif
  }
};
const FloatDots& float_dots() {
  static const FloatDots d;
  return d;
}
}  // namespace

float dot_f32(const float* a, const float* b, int64_t n) { return float_dots().f32(a, b, n); }

void axpy_f32(float* y, float a, const float* x, int64_t n) {
  if (const auto f = float_dots().axpy) return f(y, a, x, n);
  for (int64_t i = 0; i < n; ++i) {
    const float p = a * x[i];
    y[i] += p;
  }
}

void dequant_row(const WeightView& w, int64_t r, float* out) {
  if (w.type == QType::F32) {
    std::memcpy(out, w.row(r), static_cast<size_t>(w.cols) * 4);
    return;
  }
  quant_kernels(w.type, Impl::Auto).dequantize(w.row(r), out, w.cols);
}

void linear(const WeightView& w, const float* x, int64_t T, float* y, int64_t ys, const OpCtx& ctx) {
  if (T <= 0) return;
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(w.type));
  const QuantKernels k = quant_kernels(w.type, ctx.impl);
  const int64_t cols = w.cols;
  const int64_t min_chunk = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, cols * T));
  if (!ctx.exact && info.vec_dot_type != QType::F32) {
    const QType at = info.vec_dot_type;
    const size_t ars = quant_row_size(at, cols);
    std::vector<uint8_t> act(static_cast<size_t>(T) * ars);
    const QuantizeRowFn qa = quant_kernels(at, ctx.impl).quantize;
    for (int64_t t = 0; t < T; ++t) qa(x + t * cols, act.data() + t * ars, cols, nullptr);
    if (k.gemm) {  // tiled rows x tokens (each weight block decoded once per tile of tokens)
      ctx.pool->parallel_for(w.rows, min_chunk, [&](int64_t b, int64_t e) {
        k.gemm(cols, w.row(b), w.row_bytes, e - b, act.data(), ars, T, y + b, ys);
      });
      return;
    }
    // 4 rows at a time against each token (the multi-row kernels share the activation loads; the rows
    // stay in L1 across tokens); each result is bit-identical to the one-row dot.
    ctx.pool->parallel_for(w.rows, min_chunk, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; r += 4) {
        const int64_t nr = std::min<int64_t>(4, e - r);
        for (int64_t t = 0; t < T; ++t) vec_dot_rows(k, cols, w.row(r), w.row_bytes, nr, act.data() + t * ars, y + t * ys + r);
      }
    });
    return;
  }
#if defined(DSV4_X86)
  // BF16 weights (embedding-sized heads): conversion fused into the SIMD dot, the same bits as
  // dequantize + dot_f32 (the same kernel level), without the row buffer round trip.
  const auto bf16_dot = float_dots().bf16;
  if (bf16_dot && w.type == QType::BF16) {
    ctx.pool->parallel_for(w.rows, min_chunk, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const uint16_t* wr = reinterpret_cast<const uint16_t*>(w.row(r));
        for (int64_t t = 0; t < T; ++t) y[t * ys + r] = bf16_dot(wr, x + t * cols, cols);
      }
    });
    return;
  }
#endif
  ctx.pool->parallel_for(w.rows, min_chunk, [&](int64_t b, int64_t e) {
    std::vector<float> buf(w.type == QType::F32 ? 0 : static_cast<size_t>(cols));
    for (int64_t r = b; r < e; ++r) {
      const float* wr;
      if (w.type == QType::F32) {
        wr = reinterpret_cast<const float*>(w.row(r));
      } else {
        k.dequantize(w.row(r), buf.data(), cols);
        wr = buf.data();
      }
      for (int64_t t = 0; t < T; ++t) y[t * ys + r] = dot_f32(wr, x + t * cols, cols);
    }
  });
}

}  // namespace dsv4
