// Weight x activation products over any supported GGUF type (DeepSeek-V4's inference/model.py numerics: fp32 accumulation).
// Two paths: exact (dequantize the weight row, f32 dot: the reference's math) and quantized (ggml-style
// integer dot against activations quantized once per token).  Every (row, token) product is computed
// the same way whatever the number of tokens, so prefill, chunked prefill and decode agree bit for bit.
#include <algorithm>
#include <atomic>
#include <cmath>
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
void bf16_act_order(const float* b, int64_t n, float* bp);
void dot_bf16p_f32_avx512(const uint16_t* a, const float* const* b, const float* const* bp, int nt, int64_t n,
                          float* out);
void dot_bf16p4_f32_avx512(const uint16_t* a, int64_t rs, const float* const* b, const float* const* bp, int nt,
                           int64_t n, float* out);
#endif
#if defined(DSV4_AARCH64)
float dot_f32_neon(const float* a, const float* b, int64_t n);
float dot_bf16_f32_neon(const uint16_t* a, const float* b, int64_t n);
void axpy_f32_neon(float* y, float a, const float* x, int64_t n);
#endif

// The exact path's f32 dot, defined by the SIMD kernels' lane order (dot_avx2.cpp; dot_avx512.cpp holds the same
// lanes), so every kernel level gives the same bits: 32 fused multiply-add accumulators acc[k] over the elements
// i = k mod 32 of the whole 32-element steps, then 8-element steps into acc[0..7], the tree
// s[j] = (acc[j] + acc[8+j]) + (acc[16+j] + acc[24+j]), h[j] = s[j] + s[4+j], r = (h0 + h2) + (h1 + h3), and the
// last n mod 8 elements added one at a time as a rounded product then a sum (never fused).  std::fma is one
// instruction on aarch64 and on x86-64 with FMA (glibc picks its FMA variant at load time).
float dot_f32_ref(const float* a, const float* b, int64_t n) {
  float acc[32] = {};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 32; ++k) acc[k] = std::fma(a[i + k], b[i + k], acc[k]);
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(a[i + k], b[i + k], acc[k]);
  float s[8], h[4];
  for (int j = 0; j < 8; ++j) s[j] = (acc[j] + acc[8 + j]) + (acc[16 + j] + acc[24 + j]);
  for (int j = 0; j < 4; ++j) h[j] = s[j] + s[4 + j];
  float r = (h[0] + h[2]) + (h[1] + h[3]);
  for (; i < n; ++i) {
    const float p = a[i] * b[i];
    r += p;
  }
  return r;
}

namespace {
// The f32-activation dots of the process's kernel level (Auto: CPU and environment), resolved once.
struct FloatDots {
  float (*f32)(const float*, const float*, int64_t) = dot_f32_ref;
  float (*bf16)(const uint16_t*, const float*, int64_t) = nullptr;  // nullptr: dequantize + f32
  // up to 4 tokens against one BF16 row, each result bf16's bit for bit, the activations also laid out by
  // bf16_order once per product (nullptr: one token at a time with bf16)
  void (*bf16_order)(const float*, int64_t, float*) = nullptr;
  void (*bf16_rows)(const uint16_t*, const float* const*, const float* const*, int, int64_t, float*) = nullptr;
  // four rows (row stride in elements) against 1 or 2 tokens, out[t * 4 + g], each result bf16's bit for bit
  // (nullptr: bf16_rows a row at a time)
  void (*bf16_rows4)(const uint16_t*, int64_t, const float* const*, const float* const*, int, int64_t,
                     float*) = nullptr;
  void (*axpy)(float*, float, const float*, int64_t) = nullptr;  // nullptr: scalar loop
  FloatDots() {
#if defined(DSV4_X86)
    const Impl i = resolve_impl(Impl::Auto);
    if (i == Impl::Avx512)
      f32 = dot_f32_avx512, bf16 = dot_bf16_f32_avx512, bf16_order = bf16_act_order, bf16_rows = dot_bf16p_f32_avx512,
      bf16_rows4 = dot_bf16p4_f32_avx512, axpy = axpy_f32_avx512;
    else if (i == Impl::Simd)
      f32 = dot_f32_avx2, bf16 = dot_bf16_f32_avx2, axpy = axpy_f32_avx2;
#elif defined(DSV4_AARCH64)
    if (resolve_impl(Impl::Auto) == Impl::Neon) f32 = dot_f32_neon, bf16 = dot_bf16_f32_neon, axpy = axpy_f32_neon;
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

namespace {

// One product ready to run over any row range: kernels resolved, activations quantized once.
struct Prepared {
  const WeightView* w;
  const float* x;
  int64_t T;
  float* y;
  int64_t ys;
  QuantKernels k;
  enum Mode { kQuant, kBf16, kFloat } mode;
  const uint8_t* act = nullptr;  // kQuant: T rows of the type's vec_dot format, ars bytes each
  size_t ars = 0;
  const float* xo = nullptr;  // kBf16 with bf16_rows: x in bf16_order
  float (*bf16_dot)(const uint16_t*, const float*, int64_t) = nullptr;
};

// Quantized activations of one input; a later product with the same input, width and activation type
// reuses them (the gate and up projections of an expert read the same x).
struct ActBuf {
  const float* x;
  QType at;
  int64_t T, cols;
  std::vector<uint8_t> data;
};

Prepared prepare(const WeightView& w, const float* x, int64_t T, float* y, int64_t ys, const OpCtx& ctx,
                 std::vector<ActBuf>& acts) {
  const QTypeInfo& info = require_qtype(static_cast<int32_t>(w.type));
  Prepared p{&w, x, T, y, ys, quant_kernels(w.type, ctx.impl), Prepared::kFloat};
  if (!ctx.exact && info.vec_dot_type != QType::F32) {
    const QType at = info.vec_dot_type;
    p.mode = Prepared::kQuant;
    p.ars = quant_row_size(at, w.cols);
    for (const ActBuf& a : acts)
      if (a.x == x && a.at == at && a.T == T && a.cols == w.cols) p.act = a.data.data();
    if (!p.act) {
      acts.push_back({x, at, T, w.cols, std::vector<uint8_t>(static_cast<size_t>(T) * p.ars)});
      uint8_t* dst = acts.back().data.data();
      const QuantizeRowFn qa = quant_kernels(at, ctx.impl).quantize;
      for (int64_t t = 0; t < T; ++t) qa(x + t * w.cols, dst + t * p.ars, w.cols, nullptr);
      p.act = dst;
    }
    return p;
  }
  if (w.type == QType::BF16 && (p.bf16_dot = float_dots().bf16)) {
    p.mode = Prepared::kBf16;
    if (const auto order = float_dots().bf16_order) {
      for (const ActBuf& a : acts)
        if (a.x == x && a.at == QType::BF16 && a.T == T && a.cols == w.cols)
          p.xo = reinterpret_cast<const float*>(a.data.data());
      if (!p.xo) {
        acts.push_back({x, QType::BF16, T, w.cols, std::vector<uint8_t>(static_cast<size_t>(T * w.cols) * 4)});
        float* dst = reinterpret_cast<float*>(acts.back().data.data());
        for (int64_t t = 0; t < T; ++t) order(x + t * w.cols, w.cols, dst + t * w.cols);
        p.xo = dst;
      }
    }
  }
  return p;
}

// Rows [b, e) of a prepared product, for all its tokens.  Every (row, token) value is computed the same
// way whatever the range, so any split gives the same bits.
void run_rows(const Prepared& p, int64_t b, int64_t e) {
  const WeightView& w = *p.w;
  const int64_t cols = w.cols, T = p.T, ys = p.ys;
  float* y = p.y;
  if (p.mode == Prepared::kQuant) {
    if (p.k.gemm) {  // tiled rows x tokens (each weight block decoded once per tile of tokens)
      p.k.gemm(cols, w.row(b), w.row_bytes, e - b, p.act, p.ars, T, y + b, ys);
      return;
    }
    // 4 rows at a time against each token (the multi-row kernels share the activation loads; the rows
    // stay in L1 across tokens); each result is bit-identical to the one-row dot.
    for (int64_t r = b; r < e; r += 4) {
      const int64_t nr = std::min<int64_t>(4, e - r);
      for (int64_t t = 0; t < T; ++t)
        vec_dot_rows(p.k, cols, w.row(r), w.row_bytes, nr, p.act + t * p.ars, y + t * ys + r);
    }
    return;
  }
  if (p.mode == Prepared::kBf16) {
    // BF16 weights (embedding-sized heads): conversion fused into the SIMD dot, the same bits as
    // dequantize + dot_f32 (the same kernel level), without the row buffer round trip.
    // Several tokens (prefill): blocks of 16 rows x 16 tokens, both in L2 while every pair is formed;
    // row-major over all T tokens re-read the whole activation (T x cols x 4 bytes) for every row.
    constexpr int64_t kRows = 16, kToks = 16;
    for (int64_t r0 = b; r0 < e; r0 += kRows) {
      const int64_t r1 = std::min(e, r0 + kRows);
      for (int64_t t0 = 0; t0 < T; t0 += kToks) {
        const int64_t t1 = std::min(T, t0 + kToks);
        const auto rows = float_dots().bf16_rows;
        int64_t r = r0;
        if (p.xo && float_dots().bf16_rows4 && t1 - t0 <= 2) {  // decode and 2-token verify: 4 rows at a time
          const int nt = static_cast<int>(t1 - t0);
          const float *xs[2], *xo[2];
          for (int j = 0; j < nt; ++j) xs[j] = p.x + (t0 + j) * cols, xo[j] = p.xo + (t0 + j) * cols;
          const int64_t rs = static_cast<int64_t>(w.row_bytes / 2);
          for (; r + 4 <= r1; r += 4) {
            float out[8];
            float_dots().bf16_rows4(reinterpret_cast<const uint16_t*>(w.row(r)), rs, xs, xo, nt, cols, out);
            for (int j = 0; j < nt; ++j)
              for (int g = 0; g < 4; ++g) y[(t0 + j) * ys + r + g] = out[j * 4 + g];
          }
        }
        for (; r < r1; ++r) {
          const uint16_t* wr = reinterpret_cast<const uint16_t*>(w.row(r));
          int64_t t = t0;
          if (p.xo)  // the row loaded and converted once for up to 4 tokens, same bits
            for (; t < t1; t += 4) {
              const int nt = static_cast<int>(std::min<int64_t>(4, t1 - t));
              const float *xs[4], *xo[4];
              float out[4];
              for (int j = 0; j < nt; ++j) xs[j] = p.x + (t + j) * cols, xo[j] = p.xo + (t + j) * cols;
              rows(wr, xs, xo, nt, cols, out);
              for (int j = 0; j < nt; ++j) y[(t + j) * ys + r] = out[j];
            }
          for (; t < t1; ++t) y[t * ys + r] = p.bf16_dot(wr, p.x + t * cols, cols);
        }
      }
    }
    return;
  }
  std::vector<float> buf(w.type == QType::F32 ? 0 : static_cast<size_t>(cols));
  for (int64_t r = b; r < e; ++r) {
    const float* wr;
    if (w.type == QType::F32) {
      wr = reinterpret_cast<const float*>(w.row(r));
    } else {
      p.k.dequantize(w.row(r), buf.data(), cols);
      wr = buf.data();
    }
    for (int64_t t = 0; t < T; ++t) y[t * ys + r] = dot_f32(wr, p.x + t * cols, cols);
  }
}

}  // namespace

void linear(const WeightView& w, const float* x, int64_t T, float* y, int64_t ys, const OpCtx& ctx) {
  if (T <= 0) return;
  std::vector<ActBuf> acts;
  const Prepared p = prepare(w, x, T, y, ys, ctx, acts);
  const int64_t min_chunk = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, w.cols * T));
  ctx.pool->parallel_for(w.rows, min_chunk, [&](int64_t b, int64_t e) { run_rows(p, b, e); });
}

void linear_batch(const std::vector<LinearTask>& tasks, const OpCtx& ctx) {
  std::vector<ActBuf> acts;
  std::vector<Prepared> prep;
  prep.reserve(tasks.size());
  // pieces of whole 4-row tiles, at least 64 rows and at most a quarter of a thread's share of the task:
  // enough of them to balance the threads, each long enough to stream its rows and to amortise the
  // activation repacking a tiled kernel does per call
  struct Piece {
    size_t task;
    int64_t b, e;
  };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const LinearTask& t = tasks[i];
    if (t.T <= 0 || t.w.rows <= 0) continue;
    prep.push_back(prepare(t.w, t.x, t.T, t.y, t.ys, ctx, acts));
    const int64_t share = (t.w.rows + 4 * ctx.pool->size() - 1) / (4 * ctx.pool->size());
    const int64_t step = (std::max<int64_t>(64, share) + 3) / 4 * 4;
    for (int64_t b = 0; b < t.w.rows; b += step) pieces.push_back({prep.size() - 1, b, std::min(t.w.rows, b + step)});
  }
  // pieces differ in cost (an expert with 1 routed token next to one with 10): each thread claims the
  // next piece from a counter, so no thread is left holding a large share at the end
  const int64_t n = static_cast<int64_t>(pieces.size());
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(ctx.pool->size(), n);
  ctx.pool->parallel_for(workers, 1, [&](int64_t, int64_t) {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      const Piece& pc = pieces[static_cast<size_t>(i)];
      run_rows(prep[pc.task], pc.b, pc.e);
    }
  });
}

}  // namespace dsv4
