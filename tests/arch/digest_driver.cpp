// Output digests of every quant kernel and CPU runtime op on seeded data, for comparing builds of the core byte for
// byte across architectures (tests/arch/test_cross_arch.py: this file built natively on x86-64 and cross-built for
// aarch64, run under qemu-aarch64).  Inputs come from an integer generator (exact conversions, power-of-two scalings, no libm), so both
// builds see the same bits; each line is "<name> <FNV-1a 64 of the output bytes> <bytes>" or "<name> refused".
// Modes: `kernels` (every registered quant type, 1 and 4 threads, and the runtime ops), `model PATH` (a GGUF's
// prefill + decode logits, exact and quantized path), `levels` (every SIMD level of this build's architecture:
// the f32 dots and axpy for every length 0..300, on aarch64 also the NEON integer dots with and without SDOT on
// random blocks, against the reference value by value).  `kernels` and `model` first print a line
// "# impl <level> dotprod <0|1>": the level DSV4_KERNELS (or the CPU) chose, so a test can tell a NEON run from
// one that silently used the reference.  Bits only: accuracy is tests/quant's and tests/parity's.
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "core/fp_decode.h"
#include "quant/quant.h"
#include "quant/repack.h"
#include "runtime/ops_cpu/ops.h"
#include "runtime/session.h"

namespace {

using dsv4::Impl;
using dsv4::QType;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // A value in [-1, 1) with 24 significant bits: an integer converted exactly, times a power of two.
  float uniform() { return static_cast<float>(static_cast<int32_t>(next() >> 40) - (1 << 23)) * 0x1p-23f; }
  // Bell-shaped (the sum of four integers, one conversion), with 1 in 64 values scaled by 2^5 (outliers).
  float normal() {
    int32_t v = 0;
    for (int k = 0; k < 4; ++k) v += static_cast<int32_t>(next() >> 41) - (1 << 22);
    const float x = static_cast<float>(v) * 0x1p-23f;
    return (next() & 63) == 0 ? x * 32.f : x;
  }
  std::vector<float> normals(size_t n) {
    std::vector<float> v(n);
    for (float& x : v) x = normal();
    return v;
  }
};

uint64_t fnv1a(const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  return h;
}

void emit(const std::string& name, const void* p, size_t n) {
  std::printf("%s %016" PRIx64 " %zu\n", name.c_str(), fnv1a(p, n), n);
}
template <class T, class A>
void emit(const std::string& name, const std::vector<T, A>& v) {
  emit(name, v.data(), v.size() * sizeof(T));
}
// The reason goes to stderr: it names the input, which may differ in wording between library versions.
void refused(const std::string& name, const std::exception& e) {
  std::printf("%s refused\n", name.c_str(), e);
  std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
}

// ---- quant kernels: every row of the QType table, so types registered later are covered without an edit here ----

void quant_kernels_all() {
  int n_types = 0;
  const dsv4::QTypeInfo* table = dsv4::qtype_table(&n_types);
  const int64_t rows = 8, cols = 1024, ntok = 3;  // cols: whole blocks of every type (32 and 256)
  Rng rng(1);
  const std::vector<float> src = rng.normals(static_cast<size_t>(rows * cols));
  std::vector<float> imat(static_cast<size_t>(cols));
  for (float& w : imat) {  // positive importance weights
    const float u = rng.uniform();
    w = u * u + 0x1p-10f;
  }
  const std::vector<float> x = rng.normals(static_cast<size_t>(ntok * cols));
  for (int ti = 0; ti < n_types; ++ti) {
    const dsv4::QTypeInfo& info = table[ti];
    const QType t = info.type;
    const std::string tn = info.name;
    size_t rs = 0;
    try {
      rs = dsv4::quant_row_size(t, cols);
    } catch (const std::exception& e) {
      refused(tn + ".row_size", e);
      continue;
    }
    for (int threads : {1, 4}) {
      const std::string th = ".t" + std::to_string(threads);
      for (const float* im : {static_cast<const float*>(nullptr), static_cast<const float*>(imat.data())}) {
        const std::string q = tn + (im ? ".imatrix" : ".plain") + th;
        std::vector<uint8_t> w(static_cast<size_t>(rows) * rs);
        try {
          dsv4::quantize_rows(t, src.data(), w.data(), rows, cols, im, Impl::Auto, threads);
        } catch (const std::exception& e) {
          refused(q + ".quantize", e);
          continue;
        }
        emit(q + ".quantize", w);
        std::vector<float> deq(static_cast<size_t>(rows * cols));
        try {
          dsv4::dequantize_rows(t, w.data(), deq.data(), rows, cols, Impl::Auto, threads);
          emit(q + ".dequantize", deq);
        } catch (const std::exception& e) {
          refused(q + ".dequantize", e);
        }
        std::vector<float> y(static_cast<size_t>(ntok * rows));
        try {
          dsv4::matvec(t, w.data(), x.data(), y.data(), rows, cols, Impl::Auto, threads);
          emit(q + ".matvec", y.data(), static_cast<size_t>(rows) * 4);
        } catch (const std::exception& e) {
          refused(q + ".matvec", e);
        }
        try {
          dsv4::matmul(t, w.data(), x.data(), y.data(), rows, cols, ntok, Impl::Auto, threads);
          emit(q + ".matmul", y);
        } catch (const std::exception& e) {
          refused(q + ".matmul", e);
        }
        // the runtime's products over the same weights: exact (dequantized row . f32) and quantized activations
        // (weight types only: the activation formats have no dot product and the loader refuses them)
        if (!dsv4::quant_kernels(t, Impl::Auto).dot) continue;
        dsv4::ThreadPool pool(threads);
        const dsv4::WeightView wv{t, cols, rows, rs, w.data(), tn};
        for (bool exact : {true, false}) {
          dsv4::OpCtx ctx;
          ctx.pool = &pool;
          ctx.exact = exact;
          try {
            dsv4::linear(wv, x.data(), ntok, y.data(), ctx);
            emit(q + (exact ? ".linear_exact" : ".linear_quant"), y);
          } catch (const std::exception& e) {
            refused(q + (exact ? ".linear_exact" : ".linear_quant"), e);
          }
        }
      }
    }
  }
}

// ---- runtime ops and the release-format decoders ----

dsv4::ModelConfig tiny_config() {  // the rope fields of the tiny preset (dsv4_gguf/config.py)
  dsv4::ModelConfig c;
  c.rope_dim = 64;
  c.rope_theta = 10000.f;
  c.compress_rope_theta = 160000.f;
  c.rope_factor = 16.f;
  c.original_ctx = 65536;
  c.beta_fast = 32.f;
  c.beta_slow = 1.f;
  return c;
}

void runtime_ops() {
  Rng rng(2);
  for (int64_t n : {1, 7, 8, 31, 32, 33, 100, 512, 1000, 4101}) {
    const std::vector<float> a = rng.normals(static_cast<size_t>(n)), b = rng.normals(static_cast<size_t>(n));
    const float d = dsv4::dot_f32(a.data(), b.data(), n);
    emit("dot_f32.n" + std::to_string(n), &d, 4);
    std::vector<float> y = rng.normals(static_cast<size_t>(n));
    dsv4::axpy_f32(y.data(), rng.normal(), a.data(), n);
    emit("axpy_f32.n" + std::to_string(n), y);
  }
  {
    const int64_t n = 4096;
    const std::vector<float> x = rng.normals(n), w = rng.normals(n);
    std::vector<float> y(n);
    dsv4::rms_norm(x.data(), w.data(), y.data(), n, 1e-6f);
    emit("rms_norm.w", y);
    dsv4::rms_norm(x.data(), nullptr, y.data(), n, 1e-6f);
    emit("rms_norm.nullw", y);
  }
  const dsv4::ModelConfig cfg = tiny_config();
  for (int ratio : {0, 4, 128}) {
    const std::vector<float> f = dsv4::rope_freqs(cfg, ratio);
    emit("rope_freqs.r" + std::to_string(ratio), f);
    const std::vector<float> x0 = rng.normals(128);
    for (int64_t pos : {0, 1, 77, 4095, 65537}) {
      for (bool inv : {false, true}) {
        std::vector<float> x = x0;
        dsv4::rope_tail(x.data(), 128, 64, pos, f.data(), inv);
        emit("rope_tail.r" + std::to_string(ratio) + ".p" + std::to_string(pos) + (inv ? ".inv" : ""), x);
      }
    }
  }
  {
    std::vector<float> x = rng.normals(512);
    dsv4::fp8_fake_quant(x.data(), 512, 128);
    emit("fp8_fake_quant", x);
    x = rng.normals(512);
    dsv4::fp4_fake_quant(x.data(), 512, 32);
    emit("fp4_fake_quant", x);
    x = rng.normals(512);
    dsv4::hadamard(x.data(), 512);
    emit("hadamard", x);
  }
  {  // mHC: coefficients (sigmoid, softmax, Sinkhorn), mixes (a linear + RMS factor), collapse, expand
    const int hc = 4;
    const int64_t D = 256, T = 3, nm = (2 + hc) * hc;
    const std::vector<float> mixes_in = rng.normals(nm), base = rng.normals(nm);
    const float scale[3] = {rng.normal(), rng.normal(), rng.normal()};
    std::vector<float> pre(hc), post(hc), comb(hc * hc);
    dsv4::hc_coeffs(mixes_in.data(), scale, base.data(), hc, 20, 1e-6f, pre.data(), post.data(), comb.data());
    emit("hc_coeffs.pre", pre);
    emit("hc_coeffs.post", post);
    emit("hc_coeffs.comb", comb);
    const std::vector<float> fn = rng.normals(static_cast<size_t>(nm * hc * D)),
                             x = rng.normals(static_cast<size_t>(T * hc * D));
    const dsv4::WeightView fv{
        QType::F32, hc * D, nm, static_cast<size_t>(hc * D * 4), reinterpret_cast<const uint8_t*>(fn.data()), "hc_fn"};
    for (int threads : {1, 4}) {
      dsv4::ThreadPool pool(threads);
      dsv4::OpCtx ctx;
      ctx.pool = &pool;
      std::vector<float> m(static_cast<size_t>(T * nm));
      dsv4::hc_mixes(fv, x.data(), T, 1e-6f, m.data(), ctx);
      emit("hc_mixes.t" + std::to_string(threads), m);
    }
    std::vector<float> y(D), out(static_cast<size_t>(hc * D));
    dsv4::hc_collapse(x.data(), pre.data(), hc, D, y.data());
    emit("hc_collapse", y);
    dsv4::hc_expand(y.data(), x.data(), post.data(), comb.data(), hc, D, out.data());
    emit("hc_expand", out);
  }
  {  // attention over window + compressed rows, with sinks
    const int64_t H = 12, hd = 128;
    const std::vector<float> q = rng.normals(static_cast<size_t>(H * hd)), sinks = rng.normals(H);
    std::vector<std::vector<float>> rows;
    for (int e = 0; e < 37; ++e) rows.push_back(rng.normals(hd));
    std::vector<const float*> keys;
    for (const auto& r : rows) keys.push_back(r.data());
    std::vector<float> out(static_cast<size_t>(H * hd));
    dsv4::sparse_attention(q.data(), H, hd, keys, sinks.data(), 0.0883883476f, out.data());
    emit("sparse_attention", out);
  }
  for (int ratio : {4, 128}) {  // compressor pooling: overlapping (m = 4) and not (m = 128)
    const int d = 64;
    dsv4::CompressorState st;
    st.init(ratio, d);
    const int w = st.coff * d;
    std::vector<float> out(d), all;
    for (int64_t pos = 0; pos < 2 * ratio + 3; ++pos) {
      const std::vector<float> a = rng.normals(w), g = rng.normals(w);
      if (dsv4::compressor_step(st, a.data(), g.data(), pos, out.data())) all.insert(all.end(), out.begin(), out.end());
    }
    emit("compressor_step.r" + std::to_string(ratio), all);
  }
  {  // router: biased top-k with margin, and a hash row
    const int64_t E = 64;
    const int K = 6;
    const std::vector<float> logits = rng.normals(E), bias = rng.normals(E);
    const int32_t hash_row[K] = {3, 17, 42, 0, 63, 9};
    for (bool hash : {false, true}) {
      const dsv4::Routing r =
          dsv4::route(logits.data(), E, K, hash ? nullptr : bias.data(), hash ? hash_row : nullptr, 1.5f, true);
      std::vector<float> v(r.w);
      v.push_back(r.margin);
      emit(std::string("route") + (hash ? ".hash" : ".topk") + ".w", v);
      emit(std::string("route") + (hash ? ".hash" : ".topk") + ".idx", r.idx);
    }
  }
  {  // one clamped SwiGLU expert (Q8_0 weights, quantized and exact products)
    const int64_t D = 256, I = 128, T = 2;
    const std::vector<float> w1 = rng.normals(I * D), w3 = rng.normals(I * D), w2 = rng.normals(D * I);
    const std::vector<float> x = rng.normals(T * D), wt = {0.75f, 0.25f};
    const size_t rs1 = dsv4::quant_row_size(QType::Q8_0, D), rs2 = dsv4::quant_row_size(QType::Q8_0, I);
    std::vector<uint8_t> q1(I * rs1), q3(I * rs1), q2(D * rs2);
    dsv4::quantize_rows(QType::Q8_0, w1.data(), q1.data(), I, D, nullptr, Impl::Auto, 1);
    dsv4::quantize_rows(QType::Q8_0, w3.data(), q3.data(), I, D, nullptr, Impl::Auto, 1);
    dsv4::quantize_rows(QType::Q8_0, w2.data(), q2.data(), D, I, nullptr, Impl::Auto, 1);
    const dsv4::WeightView v1{QType::Q8_0, D, I, rs1, q1.data(), "w1"}, v3{QType::Q8_0, D, I, rs1, q3.data(), "w3"},
        v2{QType::Q8_0, I, D, rs2, q2.data(), "w2"};
    dsv4::ThreadPool pool(4);
    for (bool exact : {true, false}) {
      dsv4::OpCtx ctx;
      ctx.pool = &pool;
      ctx.exact = exact;
      std::vector<float> y(T * D);
      dsv4::expert_ffn(v1, v3, v2, x.data(), T, wt.data(), 10.f, y.data(), ctx);
      emit(std::string("expert_ffn.") + (exact ? "exact" : "quant"), y);
    }
  }
  {  // release formats: every E4M3 / E8M0 / E2M1 code, block-scaled FP8 and FP4 rows, the FP4 -> MXFP4 repack
    std::vector<uint8_t> codes(256);
    for (int i = 0; i < 256; ++i) codes[i] = static_cast<uint8_t>(i);
    std::vector<float> f(512);
    dsv4::decode_e4m3(codes.data(), f.data(), 256, Impl::Auto);
    emit("decode_e4m3", f.data(), 256 * 4);
    dsv4::decode_e8m0(codes.data(), f.data(), 256, Impl::Auto);
    emit("decode_e8m0", f.data(), 256 * 4);
    dsv4::decode_e2m1(codes.data(), f.data(), 256, Impl::Auto);
    emit("decode_e2m1", f);
    const int64_t rows = 256, cols = 384;
    std::vector<uint8_t> w8(rows * cols), s8(2 * 3), w4(rows * cols / 2), s4(rows * cols / 32);
    for (auto& b : w8) b = static_cast<uint8_t>(rng.next() % 0x7F) | static_cast<uint8_t>(rng.next() & 0x80);
    for (auto& b : s8) b = static_cast<uint8_t>(110 + rng.next() % 30);
    for (auto& b : w4) b = static_cast<uint8_t>(rng.next());
    for (auto& b : s4) b = static_cast<uint8_t>(110 + rng.next() % 30);
    std::vector<float> out(rows * cols);
    for (int threads : {1, 4}) {
      dsv4::dequant_fp8(w8.data(), s8.data(), out.data(), rows, cols, Impl::Auto, threads);
      emit("dequant_fp8.t" + std::to_string(threads), out);
      dsv4::dequant_fp4(w4.data(), s4.data(), out.data(), rows, cols, Impl::Auto, threads);
      emit("dequant_fp4.t" + std::to_string(threads), out);
    }
    std::vector<uint8_t> mx(rows * dsv4::quant_row_size(QType::MXFP4, cols));
    dsv4::repack_fp4_to_mxfp4(w4.data(), s4.data(), mx.data(), rows, cols, 1);
    emit("repack_fp4_to_mxfp4", mx);
  }
}

// ---- a whole model: prefill (all logits) then greedy decode steps, per numerics path ----

int model_logits(const std::string& path) {
  for (bool exact : {true, false}) {
    for (int threads : {1, 4}) {
      dsv4::RuntimeOptions o;
      o.threads = threads;
      o.exact = exact;
      const dsv4::Runtime rt(path, o);
      dsv4::Session s(rt, 64, dsv4::KvDtype::F32);
      const int64_t vocab = rt.model().cfg().vocab;
      std::vector<int32_t> toks(12);
      Rng rng(3);
      for (auto& t : toks) t = static_cast<int32_t>(rng.next() % static_cast<uint64_t>(vocab));
      const std::string tag = std::string(exact ? "model.exact" : "model.quant") + ".t" + std::to_string(threads);
      dsv4::Logits l = s.forward(toks.data(), static_cast<int64_t>(toks.size()), true);
      emit(tag + ".prefill", l);
      for (int step = 0; step < 3; ++step) {
        int32_t next = 0;
        for (int64_t v = 1; v < vocab; ++v)
          if (l[l.size() - vocab + v] > l[l.size() - vocab + next]) next = static_cast<int32_t>(v);
        l = s.forward(&next, 1, false);
        emit(tag + ".decode" + std::to_string(step), l);
      }
    }
  }
  return 0;
}

// ---- every SIMD level's f32 dots and axpy (and on aarch64 the integer dots) against the reference ----

}  // namespace
namespace dsv4 {
#if defined(DSV4_X86)
float dot_f32_avx2(const float* a, const float* b, int64_t n);
float dot_f32_avx512(const float* a, const float* b, int64_t n);
float dot_bf16_f32_avx2(const uint16_t* a, const float* b, int64_t n);
float dot_bf16_f32_avx512(const uint16_t* a, const float* b, int64_t n);
void axpy_f32_avx2(float* y, float a, const float* x, int64_t n);
void axpy_f32_avx512(float* y, float a, const float* x, int64_t n);
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
}  // namespace dsv4
namespace {

#if defined(DSV4_AARCH64)
// The NEON integer dots (baseline and, where the CPU has it, SDOT) against the reference on random blocks of
// 1..9 (super-)blocks: every byte random except the float scales (kept finite), activations from the reference
// quantizer.  Returns the number of mismatches; `checked` counts comparisons.
int neon_int_dots(Rng& rng, int& checked) {
  struct Case {
    QType t;
    dsv4::VecDotFn base, dp;
  };
  const Case cases[] = {
      {QType::Q8_0, dsv4::vec_dot_q8_0_neon, dsv4::vec_dot_q8_0_neon_dotprod},
      {QType::Q4_0, dsv4::vec_dot_q4_0_neon, dsv4::vec_dot_q4_0_neon_dotprod},
      {QType::MXFP4, dsv4::vec_dot_mxfp4_neon, dsv4::vec_dot_mxfp4_neon_dotprod},
      {QType::Q4_K, dsv4::vec_dot_q4_k_neon, dsv4::vec_dot_q4_k_neon_dotprod},
      {QType::Q6_K, dsv4::vec_dot_q6_k_neon, dsv4::vec_dot_q6_k_neon_dotprod},
  };
  const bool dp = dsv4::cpu_has_dotprod();
  int bad = 0;
  for (const Case& c : cases) {
    const dsv4::QTypeInfo& info = dsv4::require_qtype(static_cast<int32_t>(c.t));
    const QType at = info.vec_dot_type;
    for (int64_t nb = 1; nb <= 9; ++nb) {
      const int64_t n = nb * info.block_size;
      for (int rep = 0; rep < 8; ++rep) {
        std::vector<uint8_t> w(dsv4::quant_row_size(c.t, n));
        for (auto& b : w) b = static_cast<uint8_t>(rng.next());
        for (int64_t b = 0; b < nb; ++b) {  // finite scales: fp16 exponents 10..19, E8M0 110..139
          uint8_t* blk = w.data() + b * info.type_size;
          auto fp16 = [&rng](uint8_t* p) {
            const uint16_t h = static_cast<uint16_t>((rng.next() & 0x83FF) | ((10 + rng.next() % 10) << 10));
            std::memcpy(p, &h, 2);
          };
          if (c.t == QType::MXFP4) blk[0] = static_cast<uint8_t>(110 + rng.next() % 30);
          if (c.t == QType::Q8_0 || c.t == QType::Q4_0) fp16(blk);
          if (c.t == QType::Q4_K) fp16(blk), fp16(blk + 2);
          if (c.t == QType::Q6_K) fp16(blk + 208);
        }
        const std::vector<float> x = rng.normals(static_cast<size_t>(n));
        std::vector<uint8_t> a(dsv4::quant_row_size(at, n));
        dsv4::quant_kernels(at, Impl::Ref).quantize(x.data(), a.data(), n, nullptr);
        const float ref = dsv4::quant_kernels(c.t, Impl::Ref).dot(n, w.data(), a.data());
        for (int k = 0; k < (dp ? 2 : 1); ++k) {
          const float got = (k ? c.dp : c.base)(n, w.data(), a.data());
          ++checked;
          if (std::memcmp(&ref, &got, 4) != 0) {
            ++bad;
            std::printf("MISMATCH vec_dot_%s_neon%s nb=%" PRId64 " ref=%a got=%a\n", info.name, k ? "_dotprod" : "", nb,
                        ref, got);
          }
        }
      }
    }
  }
  return bad;
}
#endif

int levels() {
  const bool avx2 = dsv4::cpu_has_avx2(), avx512 = dsv4::cpu_has_avx512(), neon = dsv4::cpu_has_neon();
  Rng rng(4);
  int checked = 0, bad = 0;
  auto same = [&](const char* what, int64_t n, const void* ref, const void* got, size_t bytes) {
    ++checked;
    if (std::memcmp(ref, got, bytes) != 0) {
      ++bad;
      std::printf("MISMATCH %s n=%" PRId64 "\n", what, n);
    }
  };
  for (int64_t n = 0; n <= 300; ++n) {
    for (int rep = 0; rep < 4; ++rep) {
      const std::vector<float> a = rng.normals(n), b = rng.normals(n);
      std::vector<uint16_t> h(n);
      std::vector<float> hf(n);
      for (int64_t i = 0; i < n; ++i) {
        h[i] = static_cast<uint16_t>(rng.next());
        if ((h[i] & 0x7F80) == 0x7F80) h[i] &= 0xBFFF;  // no inf / NaN weights
        const uint32_t u = static_cast<uint32_t>(h[i]) << 16;
        std::memcpy(&hf[i], &u, 4);
      }
      const float ref = dsv4::dot_f32_ref(a.data(), b.data(), n);
      const float ref16 = dsv4::dot_f32_ref(hf.data(), b.data(), n);  // BF16 rows: dequantize (exact) + dot
      const float s = rng.normal();
      std::vector<float> yref = rng.normals(n), y = yref;
      for (int64_t i = 0; i < n; ++i) {
        const float p = s * a[i];
        yref[i] += p;
      }
      float got;
      (void)got;
#if defined(DSV4_X86)
      if (avx2) {
        got = dsv4::dot_f32_avx2(a.data(), b.data(), n);
        same("dot_f32_avx2", n, &ref, &got, 4);
        got = dsv4::dot_bf16_f32_avx2(h.data(), b.data(), n);
        same("dot_bf16_f32_avx2", n, &ref16, &got, 4);
        std::vector<float> y2 = y;
        dsv4::axpy_f32_avx2(y2.data(), s, a.data(), n);
        same("axpy_f32_avx2", n, yref.data(), y2.data(), n * 4);
      }
      if (avx512) {
        got = dsv4::dot_f32_avx512(a.data(), b.data(), n);
        same("dot_f32_avx512", n, &ref, &got, 4);
        got = dsv4::dot_bf16_f32_avx512(h.data(), b.data(), n);
        same("dot_bf16_f32_avx512", n, &ref16, &got, 4);
        std::vector<float> y2 = y;
        dsv4::axpy_f32_avx512(y2.data(), s, a.data(), n);
        same("axpy_f32_avx512", n, yref.data(), y2.data(), n * 4);
        // the multi-token (1-4 tokens, one row) and four-row (1-2 tokens) BF16 kernels: each (row, token) the
        // one-row dot's bits; four rows at a stride of n + 3 elements, tokens b, a, b + a, -b
        const int64_t rs = n + 3;
        std::vector<uint16_t> h4(static_cast<size_t>(4 * rs + 1));
        for (auto& v : h4) {
          v = static_cast<uint16_t>(rng.next());
          if ((v & 0x7F80) == 0x7F80) v &= 0xBFFF;
        }
        std::vector<float> x4(static_cast<size_t>(4 * n)), xo4(static_cast<size_t>(4 * n) + 1);
        for (int64_t i = 0; i < n; ++i)
          x4[i] = b[i], x4[n + i] = a[i], x4[2 * n + i] = b[i] + a[i], x4[3 * n + i] = -b[i];
        const float *xs[4], *xo[4];
        for (int t = 0; t < 4; ++t) {
          dsv4::bf16_act_order(&x4[t * n], n, &xo4[t * n]);
          xs[t] = &x4[t * n], xo[t] = &xo4[t * n];
        }
        float want[4][4];
        for (int g = 0; g < 4; ++g)
          for (int t = 0; t < 4; ++t) want[g][t] = dsv4::dot_bf16_f32_avx512(&h4[g * rs], xs[t], n);
        for (int nt = 1; nt <= 4; ++nt) {
          float o[4];
          dsv4::dot_bf16p_f32_avx512(&h4[0], xs, xo, nt, n, o);
          same("dot_bf16p_f32_avx512", n, want[0], o, static_cast<size_t>(nt) * 4);
        }
        for (int nt = 1; nt <= 2; ++nt) {
          float o[8], w8[8];
          dsv4::dot_bf16p4_f32_avx512(h4.data(), rs, xs, xo, nt, n, o);
          for (int t = 0; t < nt; ++t)
            for (int g = 0; g < 4; ++g) w8[t * 4 + g] = want[g][t];
          same("dot_bf16p4_f32_avx512", n, w8, o, static_cast<size_t>(nt) * 16);
        }
      }
#endif
#if defined(DSV4_AARCH64)
      got = dsv4::dot_f32_neon(a.data(), b.data(), n);
      same("dot_f32_neon", n, &ref, &got, 4);
      got = dsv4::dot_bf16_f32_neon(h.data(), b.data(), n);
      same("dot_bf16_f32_neon", n, &ref16, &got, 4);
      std::vector<float> y2 = y;
      dsv4::axpy_f32_neon(y2.data(), s, a.data(), n);
      same("axpy_f32_neon", n, yref.data(), y2.data(), n * 4);
#endif
    }
  }
#if defined(DSV4_AARCH64)
  bad += neon_int_dots(rng, checked);
#endif
  std::printf("levels avx2=%d avx512=%d neon=%d dotprod=%d checked=%d mismatches=%d\n", avx2, avx512, neon,
              dsv4::cpu_has_dotprod(), checked, bad);
  return bad == 0 && checked > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a crash keeps the lines before it
  try {
    if (mode == "kernels" || mode == "model")  // throws (exit 2) where DSV4_KERNELS names a level this CPU lacks
      std::printf("# impl %s dotprod %d\n", dsv4::impl_name(dsv4::resolve_impl(Impl::Auto)), dsv4::cpu_has_dotprod());
    if (mode == "kernels") {
      quant_kernels_all();
      runtime_ops();
      return 0;
    }
    if (mode == "model" && argc > 2) return model_logits(argv[2]);
    if (mode == "levels") return levels();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "digest_driver %s: %s\n", mode.c_str(), e.what());
    return 2;
  }
  std::fprintf(stderr, "usage: digest_driver kernels | model FILE.gguf | levels\n");
  return 64;
}
