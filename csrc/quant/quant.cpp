// QType table, kernel dispatch and the row-parallel drivers.
#include "quant/quant.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/parallel.h"

namespace dsv4 {

namespace {

const QTypeInfo kTable[] = {
    {QType::F32, "F32", 1, 4, QType::F32, false},
    {QType::F16, "F16", 1, 2, QType::F32, false},
    {QType::Q4_0, "Q4_0", 32, 18, QType::Q8_0, false},
    {QType::Q4_1, "Q4_1", 32, 20, QType::Q8_1, false},
    {QType::Q5_0, "Q5_0", 32, 22, QType::Q8_0, false},
    {QType::Q5_1, "Q5_1", 32, 24, QType::Q8_1, false},
    {QType::Q8_0, "Q8_0", 32, 34, QType::Q8_0, false},
    {QType::Q8_1, "Q8_1", 32, 36, QType::Q8_1, false},
    {QType::Q2_K, "Q2_K", 256, 84, QType::Q8_K, false},
    {QType::Q3_K, "Q3_K", 256, 110, QType::Q8_K, false},
    {QType::Q4_K, "Q4_K", 256, 144, QType::Q8_K, false},
    {QType::Q5_K, "Q5_K", 256, 176, QType::Q8_K, false},
    {QType::Q6_K, "Q6_K", 256, 210, QType::Q8_K, false},
    {QType::Q8_K, "Q8_K", 256, 292, QType::Q8_K, false},
    {QType::IQ2_XXS, "IQ2_XXS", 256, 66, QType::Q8_K, true},
    {QType::IQ2_XS, "IQ2_XS", 256, 74, QType::Q8_K, true},
    {QType::IQ3_XXS, "IQ3_XXS", 256, 98, QType::Q8_K, false},
    {QType::IQ1_S, "IQ1_S", 256, 50, QType::Q8_K, true},
    {QType::IQ4_NL, "IQ4_NL", 32, 18, QType::Q8_0, false},
    {QType::IQ3_S, "IQ3_S", 256, 110, QType::Q8_K, false},
    {QType::IQ2_S, "IQ2_S", 256, 82, QType::Q8_K, false},
    {QType::IQ4_XS, "IQ4_XS", 256, 136, QType::Q8_K, false},
    {QType::IQ1_M, "IQ1_M", 256, 56, QType::Q8_K, false},
    {QType::BF16, "BF16", 1, 2, QType::F32, false},
    {QType::MXFP4, "MXFP4", 32, 17, QType::Q8_0, false},
};

QuantKernels ref_kernels(QType t) {
  switch (t) {
    case QType::F32:
      return {quantize_row_f32_ref, dequantize_row_f32_ref, vec_dot_f32_ref, "ref"};
    case QType::F16:
      return {quantize_row_f16_ref, dequantize_row_f16_ref, vec_dot_f16_ref, "ref"};
    case QType::BF16:
      return {quantize_row_bf16_ref, dequantize_row_bf16_ref, vec_dot_bf16_ref, "ref"};
    case QType::Q8_0:
      return {quantize_row_q8_0_ref, dequantize_row_q8_0_ref, vec_dot_q8_0_ref, "ref"};
    case QType::Q4_0:
      return {quantize_row_q4_0_ref, dequantize_row_q4_0_ref, vec_dot_q4_0_ref, "ref"};
    case QType::MXFP4:
      return {quantize_row_mxfp4_ref, dequantize_row_mxfp4_ref, vec_dot_mxfp4_ref, "ref"};
    case QType::Q4_1:
      return {quantize_row_q4_1_ref, dequantize_row_q4_1_ref, vec_dot_q4_1_ref, "ref"};
    case QType::Q5_0:
      return {quantize_row_q5_0_ref, dequantize_row_q5_0_ref, vec_dot_q5_0_ref, "ref"};
    case QType::Q5_1:
      return {quantize_row_q5_1_ref, dequantize_row_q5_1_ref, vec_dot_q5_1_ref, "ref"};
    case QType::Q8_1:
      return {quantize_row_q8_1_ref, dequantize_row_q8_1_ref, nullptr, "ref"};
    case QType::IQ4_NL:
      return {quantize_row_iq4_nl_ref, dequantize_row_iq4_nl_ref, vec_dot_iq4_nl_ref, "ref"};
    case QType::Q2_K:
      return {quantize_row_q2_k_ref, dequantize_row_q2_k_ref, vec_dot_q2_k_ref, "ref"};
    case QType::Q3_K:
      return {quantize_row_q3_k_ref, dequantize_row_q3_k_ref, vec_dot_q3_k_ref, "ref"};
    case QType::Q4_K:
      return {quantize_row_q4_k_ref, dequantize_row_q4_k_ref, vec_dot_q4_k_ref, "ref"};
    case QType::Q5_K:
      return {quantize_row_q5_k_ref, dequantize_row_q5_k_ref, vec_dot_q5_k_ref, "ref"};
    case QType::Q6_K:
      return {quantize_row_q6_k_ref, dequantize_row_q6_k_ref, vec_dot_q6_k_ref, "ref"};
    case QType::Q8_K:
      return {quantize_row_q8_k_ref, dequantize_row_q8_k_ref, nullptr, "ref"};
    case QType::IQ4_XS:
      return {quantize_row_iq4_xs_ref, dequantize_row_iq4_xs_ref, vec_dot_iq4_xs_ref, "ref"};
    case QType::IQ2_XXS:
      return {quantize_row_iq2_xxs_ref, dequantize_row_iq2_xxs_ref, vec_dot_iq2_xxs_ref, "ref"};
    case QType::IQ1_S:
      return {quantize_row_iq1_s_ref, dequantize_row_iq1_s_ref, vec_dot_iq1_s_ref, "ref"};
    case QType::IQ1_M:
      return {quantize_row_iq1_m_ref, dequantize_row_iq1_m_ref, vec_dot_iq1_m_ref, "ref"};
    case QType::IQ3_XXS:
      return {quantize_row_iq3_xxs_ref, dequantize_row_iq3_xxs_ref, vec_dot_iq3_xxs_ref, "ref"};
    case QType::IQ3_S:
      return {quantize_row_iq3_s_ref, dequantize_row_iq3_s_ref, vec_dot_iq3_s_ref, "ref"};
    case QType::IQ2_XS:
      return {quantize_row_iq2_xs_ref, dequantize_row_iq2_xs_ref, vec_dot_iq2_xs_ref, "ref"};
    case QType::IQ2_S:
      return {quantize_row_iq2_s_ref, dequantize_row_iq2_s_ref, vec_dot_iq2_s_ref, "ref"};
  }
  throw std::invalid_argument("unknown quant type id " + std::to_string(static_cast<int>(t)));
}

#if defined(DSV4_X86)
QuantKernels avx2_kernels(QType t) {
  QuantKernels k = ref_kernels(t);
  k.impl = "avx2";
  switch (t) {
    case QType::F16:
      k.quantize = quantize_row_f16_avx2;
      k.dequantize = dequantize_row_f16_avx2;
      break;
    case QType::Q8_0:
      k.quantize = quantize_row_q8_0_avx2;
      k.dequantize = dequantize_row_q8_0_avx2;
      k.dot = vec_dot_q8_0_avx2;
      k.dot_rows = vec_dot_rows_q8_0_avx2;
      break;
    case QType::Q4_0:
      k.quantize = quantize_row_q4_0_avx2;
      k.dequantize = dequantize_row_q4_0_avx2;
      k.dot = vec_dot_q4_0_avx2;
      k.dot_rows = vec_dot_rows_q4_0_avx2;
      break;
    case QType::MXFP4:
      k.quantize = quantize_row_mxfp4_avx2;
      k.dequantize = dequantize_row_mxfp4_avx2;
      k.dot = vec_dot_mxfp4_avx2;
      k.dot_rows = vec_dot_rows_mxfp4_avx2;
      break;
    case QType::Q8_K:
      k.quantize = quantize_row_q8_k_avx2;
      break;
    case QType::Q4_1:
      k.dot = vec_dot_q4_1_avx2;
      break;
    case QType::Q5_0:
      k.dot = vec_dot_q5_0_avx2;
      break;
    case QType::Q5_1:
      k.dot = vec_dot_q5_1_avx2;
      break;
    case QType::IQ4_NL:
      k.dot = vec_dot_iq4_nl_avx2;
      break;
    case QType::Q2_K:
      k.quantize = quantize_row_q2_k_avx2;
      k.dot = vec_dot_q2_k_avx2;
      break;
    case QType::Q3_K:
      k.quantize = quantize_row_q3_k_avx2;
      k.dot = vec_dot_q3_k_avx2;
      break;
    case QType::Q4_K:
      k.quantize = quantize_row_q4_k_avx2;
      k.dequantize = dequantize_row_q4_k_avx2;
      k.dot = vec_dot_q4_k_avx2;
      break;
    case QType::Q5_K:
      k.quantize = quantize_row_q5_k_avx2;
      k.dot = vec_dot_q5_k_avx2;
      break;
    case QType::Q6_K:
      k.quantize = quantize_row_q6_k_avx2;
      k.dequantize = dequantize_row_q6_k_avx2;
      k.dot = vec_dot_q6_k_avx2;
      break;
    case QType::IQ4_XS:
      k.quantize = quantize_row_iq4_xs_avx2;
      k.dot = vec_dot_iq4_xs_avx2;
      break;
    case QType::IQ2_XXS:
      k.quantize = quantize_row_iq2_xxs_avx2;
      k.dot = vec_dot_iq2_xxs_avx2;
      break;
    case QType::IQ1_S:  // quantize: the reference (no SIMD split search)
      k.quantize = quantize_row_iq1_s_avx2;
      k.dot = vec_dot_iq1_s_avx2;
      break;
    case QType::IQ1_M:
      k.dot = vec_dot_iq1_m_avx2;
      break;
    case QType::IQ3_XXS:
      k.quantize = quantize_row_iq3_xxs_avx2;
      k.dot = vec_dot_iq3_xxs_avx2;
      break;
    case QType::IQ3_S:
      k.quantize = quantize_row_iq3_s_avx2;
      k.dot = vec_dot_iq3_s_avx2;
      break;
    case QType::IQ2_XS:
      k.quantize = quantize_row_iq2_xs_avx2;
      k.dot = vec_dot_iq2_xs_avx2;
      break;
    case QType::IQ2_S:
      k.dot = vec_dot_iq2_s_avx2;  // quantize: the reference (the AVX2 search measured 0.96x of it on IQ2_S)
      break;
    case QType::BF16:
      k.quantize = quantize_row_bf16_avx2;
      k.dequantize = dequantize_row_bf16_avx2;
      break;
    default:
      break;
  }
  return k;
}

// The AVX-512 level: the AVX2 kernels with the tiled VNNI products where they exist.
QuantKernels avx512_kernels(QType t) {
  QuantKernels k = avx2_kernels(t);
  k.impl = "avx512";
  switch (t) {
    case QType::Q8_0:
      k.dot = vec_dot_q8_0_avx512;
      k.dot_rows = vec_dot_rows_q8_0_avx512;
      k.gemm = gemm_q8_0_avx512;
      break;
    case QType::Q4_0:
      k.dot = vec_dot_q4_0_avx512;
      k.dot_rows = vec_dot_rows_q4_0_avx512;
      k.gemm = gemm_q4_0_avx512;
      break;
    case QType::MXFP4:
      k.dot = vec_dot_mxfp4_avx512;
      k.dot_rows = vec_dot_rows_mxfp4_avx512;
      k.gemm = gemm_mxfp4_avx512;
      break;
    case QType::Q4_K:
      k.gemm = gemm_q4_k_avx512;
      break;
    case QType::Q5_K:
      k.gemm = gemm_q5_k_avx512;
      break;
    case QType::Q6_K:
      k.gemm = gemm_q6_k_avx512;
      break;
    default:
      break;
  }
  return k;
}
#endif

#if defined(DSV4_AARCH64)
// The NEON level: the hot weight types' dots (SDOT where the CPU has it) and quantizers; every other kernel is
// the reference's.
QuantKernels neon_kernels(QType t) {
  QuantKernels k = ref_kernels(t);
  k.impl = "neon";
  const bool dp = cpu_has_dotprod();
  switch (t) {
    case QType::Q8_0:
      k.quantize = quantize_row_q8_0_neon;
      k.dot = dp ? vec_dot_q8_0_neon_dotprod : vec_dot_q8_0_neon;
      break;
    case QType::Q4_0:
      k.dot = dp ? vec_dot_q4_0_neon_dotprod : vec_dot_q4_0_neon;
      break;
    case QType::MXFP4:
      k.quantize = quantize_row_mxfp4_neon;
      k.dot = dp ? vec_dot_mxfp4_neon_dotprod : vec_dot_mxfp4_neon;
      break;
    case QType::Q4_K:
      k.quantize = quantize_row_q4_k_neon;
      k.dot = dp ? vec_dot_q4_k_neon_dotprod : vec_dot_q4_k_neon;
      break;
    case QType::Q6_K:
      k.dot = dp ? vec_dot_q6_k_neon_dotprod : vec_dot_q6_k_neon;
      break;
    default:
      break;
  }
  return k;
}
#endif

// Branch-free scan (vectorises in any build); the slow path only runs to name the bad column.
bool all_finite(const float* x, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

std::string where(int64_t row, int64_t col) { return "row " + std::to_string(row) + ", column " + std::to_string(col); }

}  // namespace

const QTypeInfo* qtype_table(int* n) {
  *n = static_cast<int>(sizeof(kTable) / sizeof(kTable[0]));
  return kTable;
}

const QTypeInfo* qtype_info(int32_t id) {
  for (const auto& e : kTable)
    if (static_cast<int32_t>(e.type) == id) return &e;
  return nullptr;
}

const QTypeInfo& require_qtype(int32_t id) {
  const QTypeInfo* info = qtype_info(id);
  if (!info) throw std::invalid_argument("unsupported ggml quant type id " + std::to_string(id));
  return *info;
}

QuantKernels quant_kernels(QType t, Impl impl) {
  require_qtype(static_cast<int32_t>(t));
#if defined(DSV4_X86)
  const Impl r = resolve_impl(impl);
  if (r == Impl::Avx512) return avx512_kernels(t);
  if (r == Impl::Simd) return avx2_kernels(t);
#elif defined(DSV4_AARCH64)
  if (resolve_impl(impl) == Impl::Neon) return neon_kernels(t);
#else
  resolve_impl(impl);
#endif
  return ref_kernels(t);
}

QType vec_dot_type(QType t) { return require_qtype(static_cast<int32_t>(t)).vec_dot_type; }

size_t quant_row_size(QType t, int64_t cols) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(t));
  if (cols <= 0 || cols % info.block_size != 0)
    throw std::invalid_argument(std::string(info.name) + ": row length " + std::to_string(cols) +
                                " is not a positive multiple of the block size " + std::to_string(info.block_size));
  return static_cast<size_t>(cols / info.block_size) * static_cast<size_t>(info.type_size);
}

void quantize_rows(QType t, const float* src, void* dst, int64_t rows, int64_t cols, const float* imatrix, Impl impl,
                   int threads) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(t));
  const size_t rs = quant_row_size(t, cols);
  if (info.needs_imatrix && !imatrix)
    throw std::invalid_argument(std::string(info.name) + " quantization requires an importance matrix (imatrix)");
  if (imatrix) {
    for (int64_t c = 0; c < cols; ++c)
      if (!std::isfinite(imatrix[c]) || imatrix[c] < 0.f)
        throw std::invalid_argument("imatrix: entry " + std::to_string(c) + " is " + std::to_string(imatrix[c]) +
                                    "; importance weights must be finite and >= 0");
  }
  const QuantKernels k = quant_kernels(t, impl);
  uint8_t* out = static_cast<uint8_t*>(dst);
  // ~64k elements per chunk keeps thread start-up negligible.
  const int64_t min_rows = std::max<int64_t>(1, 65536 / cols);
  parallel_for(rows, threads, min_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = src + r * cols;
      if (!all_finite(x, cols))
        for (int64_t c = 0; c < cols; ++c)
          if (!std::isfinite(x[c]))
            throw std::invalid_argument(std::string("quantize ") + info.name + ": input is not finite (" +
                                        std::to_string(x[c]) + ") at " + where(r, c) +
                                        "; NaN/Inf cannot be quantized, fix or mask the tensor first");
      k.quantize(x, out + static_cast<size_t>(r) * rs, cols, imatrix);
    }
  });
}

float vec_dot(QType t, const void* w, const void* a, int64_t n, Impl impl) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(t));
  quant_row_size(t, n);
  const QuantKernels k = quant_kernels(t, impl);
  if (!k.dot) throw std::invalid_argument(std::string(info.name) + " has no dot product (activation-only format)");
  return k.dot(n, w, a);
}

void dequantize_rows(QType t, const void* src, float* dst, int64_t rows, int64_t cols, Impl impl, int threads) {
  const size_t rs = quant_row_size(t, cols);
  const QuantKernels k = quant_kernels(t, impl);
  const uint8_t* in = static_cast<const uint8_t*>(src);
  const int64_t min_rows = std::max<int64_t>(1, 262144 / cols);
  parallel_for(rows, threads, min_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) k.dequantize(in + static_cast<size_t>(r) * rs, dst + r * cols, cols);
  });
}

void matvec(QType t, const void* w, const float* x, float* y, int64_t rows, int64_t cols, Impl impl, int threads) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(t));
  const size_t rs = quant_row_size(t, cols);
  const QuantKernels k = quant_kernels(t, impl);
  if (!k.dot) throw std::invalid_argument(std::string(info.name) + " has no dot product (activation-only format)");
  for (int64_t c = 0; c < cols; ++c)
    if (!std::isfinite(x[c]))
      throw std::invalid_argument("matvec: activation is not finite at column " + std::to_string(c));
  const QType at = info.vec_dot_type;
  std::vector<uint8_t> act;
  const void* a = x;
  if (at != QType::F32) {
    act.resize(quant_row_size(at, cols));
    quant_kernels(at, impl).quantize(x, act.data(), cols, nullptr);
    a = act.data();
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  // Rows are claimed in small chunks from a shared counter rather than split once: on a shared machine
  // a descheduled thread would otherwise leave its whole half for last.
  if (threads <= 0) threads = default_threads();
  const int64_t chunk = std::max<int64_t>(4, (262144 / cols + 3) / 4 * 4);  // ~256K elements
  const int64_t workers = std::min<int64_t>(threads, (rows + chunk - 1) / chunk);
  std::atomic<int64_t> next{0};
  parallel_for(workers, static_cast<int>(workers), 1, [&](int64_t, int64_t) {
    for (int64_t r0; (r0 = next.fetch_add(chunk)) < rows;)
      vec_dot_rows(k, cols, wb + static_cast<size_t>(r0) * rs, rs, std::min(chunk, rows - r0), a, y + r0);
  });
}

void matmul(QType t, const void* w, const float* x, float* y, int64_t rows, int64_t cols, int64_t ntok, Impl impl,
            int threads) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(t));
  const size_t rs = quant_row_size(t, cols);
  const QuantKernels k = quant_kernels(t, impl);
  if (!k.dot) throw std::invalid_argument(std::string(info.name) + " has no dot product (activation-only format)");
  for (int64_t i = 0; i < ntok * cols; ++i)
    if (!std::isfinite(x[i]))
      throw std::invalid_argument("matmul: activation is not finite at " + where(i / cols, i % cols));
  const QType at = info.vec_dot_type;
  const size_t ars = at == QType::F32 ? static_cast<size_t>(cols) * 4 : quant_row_size(at, cols);
  std::vector<uint8_t> act(static_cast<size_t>(ntok) * ars);
  for (int64_t r = 0; r < ntok; ++r) {
    if (at == QType::F32)
      std::memcpy(act.data() + r * ars, x + r * cols, ars);
    else
      quant_kernels(at, impl).quantize(x + r * cols, act.data() + r * ars, cols, nullptr);
  }
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  if (threads <= 0) threads = default_threads();
  // odd chunk sizes on purpose: tests see row tiles cut at every remainder
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(67, rows));
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(threads, (rows + chunk - 1) / chunk);
  parallel_for(workers, static_cast<int>(workers), 1, [&](int64_t, int64_t) {
    for (int64_t r0; (r0 = next.fetch_add(chunk)) < rows;)
      vec_dot_gemm(k, cols, wb + static_cast<size_t>(r0) * rs, rs, std::min(chunk, rows - r0), act.data(), ars, ntok,
                   y + r0, rows);
  });
}

}  // namespace dsv4
