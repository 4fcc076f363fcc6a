// AVX2 dot products of every quantized weight type with its activation format (Q8_0 for the 32-element
// types, Q8_1 for Q4_1/Q5_1, Q8_K for the super-block types).  Integer sums are exact in any order; the float part follows
// the reference's order (per super-block expression, or dot_lanes32's 8-lane layout for the 32-element
// types), so results equal the _ref dots bit for bit.  Float-type dots (F32/F16/BF16) stay scalar.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

// ================================================================ 32-element block dots
// Two blocks per step in the 8-lane layout of dot_ref.cpp's dot_lanes32: lane 4*(b&1)+k accumulates
// (weight scale * activation scale) * (exact int sum of elements 4k..4k+3 and 16+4k..16+4k+3 of block
// b) with one FMA.  The *_rows kernels run R weight rows against one activation row, sharing its loads,
// its scales and (for the 4-bit types) its offset correction; every row's result equals the one-row dot.
namespace {

inline float f16(uint16_t h) { return _cvtsh_ss(h); }  // F16C, exact like fp16_to_f32

// Fixed-tree sum of 8 float lanes: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), as reduce_lanes8 in dot_ref.cpp.
inline float reduce_lanes8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m256i load2x16(const void* lo, const void* hi) {
  return _mm256_loadu2_m128i(static_cast<const __m128i*>(hi), static_cast<const __m128i*>(lo));
}
// Software prefetch `dist` bytes ahead.  The multi-row kernels walk R rows side by side, R short streams
// that the hardware prefetcher restarts for every group of rows; fetching the same position of the
// next group (R * row bytes ahead) keeps DRAM busy (measured on the build box: ~2x per core, cold weights).
inline void prefetch(const void* p, size_t dist) { _mm_prefetch(static_cast<const char*>(p) + dist, _MM_HINT_T0); }
// The one-row super-block dots read one long stream; 4 KB ahead measured best there (~1.7x per core).
// Prefetches past the end of the data are harmless (a hint never faults).
constexpr size_t kStreamAhead = 4096;

inline __m128i fold_one(__m256i p) { return _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)); }

// Two blocks' int32 sums (lane l = elements 4l..4l+3) folded to the accumulation layout:
// [b: lo+hi half | b+1: hi+lo half], i.e. lane 4*(b&1)+k holds elements 4k..4k+3 and 16+4k..16+4k+3.
inline __m256i fold_pair(__m256i p0, __m256i p1) {
  return _mm256_add_epi32(_mm256_blend_epi32(p0, p1, 0xF0), _mm256_permute2x128_si256(p0, p1, 0x21));
}

// fp16 scales of blocks b, b+1 (`stride` bytes apart) spread as [s0 x4 | s1 x4].
inline __m256 f16_pair(const void* p, size_t stride) {
  uint16_t h0, h1;
  std::memcpy(&h0, p, 2);
  std::memcpy(&h1, static_cast<const uint8_t*>(p) + stride, 2);
  const __m128 s = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

// e8m0_to_f32_half of every byte (a 1 KB table: one load per block instead of a branchy conversion).
struct E8m0Half {
  float v[256];
  E8m0Half() {
    for (int e = 0; e < 256; ++e) v[e] = e8m0_to_f32_half(static_cast<uint8_t>(e));
  }
};
const float* e8m0_half_table() {
  static const E8m0Half t;
  return t.v;
}

// Q8_0 weights: signed bytes, so the usual sign trick feeds maddubs (|w| <= 128, |a| <= 127: no
// int16 saturation).
template <int R>
void q8_0_rows(int64_t nb, const uint8_t* w, size_t rs, const BlockQ8_0* a, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m256i a0 = load32(a[b].qs), a1 = load32(a[b + 1].qs);
    const __m256 ad = f16_pair(&a[b].d, sizeof(BlockQ8_0));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(w + r * rs) + b;
      prefetch(x, R * rs);
      prefetch(x, R * rs + 64);
      const __m256i w0 = load32(x[0].qs), w1 = load32(x[1].qs);
      const __m256i p0 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0), _mm256_sign_epi8(a0, w0)), ones);
      const __m256i p1 =
          _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1), _mm256_sign_epi8(a1, w1)), ones);
      const __m256 sc = _mm256_mul_ps(f16_pair(&x[0].d, sizeof(BlockQ8_0)), ad);
      acc[r] = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(fold_pair(p0, p1)), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (b < nb) {
      const BlockQ8_0* x = reinterpret_cast<const BlockQ8_0*>(w + r * rs) + b;
      const __m128 sc = _mm_set1_ps(f16(x->d) * f16(a[b].d));
      const __m128 lo = _mm_fmadd_ps(sc, _mm_cvtepi32_ps(fold_one(dot_i8(load32(x->qs), load32(a[b].qs)))),
                                     _mm256_castps256_ps128(acc[r]));
      acc[r] = _mm256_insertf128_ps(acc[r], lo, 0);
    }
    out[r] = reduce_lanes8(acc[r]);
  }
}

// 4-bit index types (Q4_0, MXFP4): the lookup table holds value + kOff (unsigned, so maddubs needs no
// sign trick) and kOff * sum(a) is subtracted per lane; that correction depends on the activation only,
// so R rows share it.  |value + kOff| <= 24 and |a| <= 128 keep every int16 sum exact.
struct Q4_0Fmt {
  using Block = BlockQ4_0;
  static constexpr int kOff = 8;
  static __m256i table() {
    return _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                            12, 13, 14, 15);
  }
  __m256 scale2(const Block* x) const { return f16_pair(&x[0].d, sizeof(Block)); }
  float scale1(const Block* x) const { return f16(x->d); }
};
struct Mxfp4Fmt {
  using Block = BlockMXFP4;
  static constexpr int kOff = 12;
  static __m256i table() {
    alignas(16) int8_t t[16];
    for (int i = 0; i < 16; ++i) t[i] = static_cast<int8_t>(kValuesMXFP4[i] + kOff);
    return _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
  }
  const float* e8 = e8m0_half_table();
  __m256 scale2(const Block* x) const {
    return _mm256_blend_ps(_mm256_broadcast_ss(e8 + x[0].e), _mm256_broadcast_ss(e8 + x[1].e), 0xF0);
  }
  float scale1(const Block* x) const { return e8[x->e]; }
};

template <class Fmt, int R>
void nibble_rows(int64_t nb, const uint8_t* w, size_t rs, const BlockQ8_0* a, float* out) {
  using Block = typename Fmt::Block;
  const Fmt fmt;
  const __m256i table = Fmt::table(), m4 = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8(Fmt::kOff);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    // [b | b+1] halves: elements 0..15 (al) and 16..31 (ah) of each block
    const __m256i al = load2x16(a[b].qs, a[b + 1].qs), ah = load2x16(a[b].qs + 16, a[b + 1].qs + 16);
    const __m256i corr = _mm256_add_epi16(_mm256_maddubs_epi16(off, al), _mm256_maddubs_epi16(off, ah));
    const __m256 ad = f16_pair(&a[b].d, sizeof(BlockQ8_0));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const Block* x = reinterpret_cast<const Block*>(w + r * rs) + b;
      prefetch(x, R * rs);
      const __m256i q = load2x16(x[0].qs, x[1].qs);
      const __m256i wl = _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4));
      const __m256i wh = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(wl, al), _mm256_maddubs_epi16(wh, ah));
      const __m256i iv = _mm256_madd_epi16(_mm256_sub_epi16(p, corr), ones);
      acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(fmt.scale2(x), ad), _mm256_cvtepi32_ps(iv), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    if (b < nb) {
      const Block* x = reinterpret_cast<const Block*>(w + r * rs) + b;
      const __m256i av = load32(a[b].qs);
      const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(table, load_nibbles(x->qs)), av),
                                         _mm256_maddubs_epi16(off, av));
      const __m128 sc = _mm_set1_ps(fmt.scale1(x) * f16(a[b].d));
      const __m128 lo =
          _mm_fmadd_ps(sc, _mm_cvtepi32_ps(fold_one(_mm256_madd_epi16(p, ones))), _mm256_castps256_ps128(acc[r]));
      acc[r] = _mm256_insertf128_ps(acc[r], lo, 0);
    }
    out[r] = reduce_lanes8(acc[r]);
  }
}

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define DSV4_AVXVNNI 1
// AVX-VNNI variant of nibble_rows' two-block step (vpdpbusd: u8 x s8 sums of 4 into int32, no int16
// stage): the same exact integers in the same lanes, so the float part and the result are identical.
// Compiled for avxvnni by this pragma region only; chosen at run time where the CPU has it.
#pragma GCC push_options
#pragma GCC target("avxvnni")
template <class Fmt, int R>
void nibble_rows_vnni(int64_t nb, const uint8_t* w, size_t rs, const BlockQ8_0* a, float* out) {
  using Block = typename Fmt::Block;
  const Fmt fmt;
  const __m256i table = Fmt::table(), m4 = _mm256_set1_epi8(0x0f), off = _mm256_set1_epi8(Fmt::kOff);
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const __m256i al = load2x16(a[b].qs, a[b + 1].qs), ah = load2x16(a[b].qs + 16, a[b + 1].qs + 16);
    const __m256i zero = _mm256_setzero_si256();
    const __m256i ncorr =
        _mm256_sub_epi32(zero, _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(zero, off, al), off, ah));
    const __m256 ad = f16_pair(&a[b].d, sizeof(BlockQ8_0));
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const Block* x = reinterpret_cast<const Block*>(w + r * rs) + b;
      prefetch(x, R * rs);
      const __m256i q = load2x16(x[0].qs, x[1].qs);
      const __m256i wl = _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4));
      const __m256i wh = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      const __m256i iv = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(ncorr, wl, al), wh, ah);
      acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(fmt.scale2(x), ad), _mm256_cvtepi32_ps(iv), acc[r]);
    }
  }
  if (b < nb) {  // the lone last block as nibble_rows does it
    for (int r = 0; r < R; ++r) {
      const Block* x = reinterpret_cast<const Block*>(w + r * rs) + b;
      const __m256i av = load32(a[b].qs), ones = _mm256_set1_epi16(1);
      const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(table, load_nibbles(x->qs)), av),
                                         _mm256_maddubs_epi16(off, av));
      const __m128 sc = _mm_set1_ps(fmt.scale1(x) * f16(a[b].d));
      const __m128 lo =
          _mm_fmadd_ps(sc, _mm_cvtepi32_ps(fold_one(_mm256_madd_epi16(p, ones))), _mm256_castps256_ps128(acc[r]));
      acc[r] = _mm256_insertf128_ps(acc[r], lo, 0);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = reduce_lanes8(acc[r]);
}
#pragma GCC pop_options

bool cpu_has_avxvnni() {
  static const bool has = __builtin_cpu_supports("avxvnni");
  return has;
}
#endif

// nrows rows, 4 at a time.
template <void (*K4)(int64_t, const uint8_t*, size_t, const BlockQ8_0*, float*),
          void (*K1)(int64_t, const uint8_t*, size_t, const BlockQ8_0*, float*)>
void rows_by4(int64_t nb, const void* vw, size_t rs, int64_t nrows, const void* va, float* out) {
  const uint8_t* w = static_cast<const uint8_t*>(vw);
  const BlockQ8_0* a = static_cast<const BlockQ8_0*>(va);
  int64_t r = 0;
  for (; r + 4 <= nrows; r += 4) K4(nb, w + r * rs, rs, a, out + r);
  for (; r < nrows; ++r) K1(nb, w + r * rs, rs, a, out + r);
}

}  // namespace

float vec_dot_q8_0_avx2(int64_t n, const void* w, const void* a) {
  float y;
  q8_0_rows<1>(n / QK8_0, static_cast<const uint8_t*>(w), 0, static_cast<const BlockQ8_0*>(a), &y);
  return y;
}
void vec_dot_rows_q8_0_avx2(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
  rows_by4<q8_0_rows<4>, q8_0_rows<1>>(n / QK8_0, w, rs, nrows, a, out);
}

float vec_dot_q4_0_avx2(int64_t n, const void* w, const void* a) {
  float y;
  nibble_rows<Q4_0Fmt, 1>(n / QK4_0, static_cast<const uint8_t*>(w), 0, static_cast<const BlockQ8_0*>(a), &y);
  return y;
}
void vec_dot_rows_q4_0_avx2(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
#if defined(DSV4_AVXVNNI)
  if (cpu_has_avxvnni())
    return rows_by4<nibble_rows_vnni<Q4_0Fmt, 4>, nibble_rows_vnni<Q4_0Fmt, 1>>(n / QK4_0, w, rs, nrows, a, out);
#endif
  rows_by4<nibble_rows<Q4_0Fmt, 4>, nibble_rows<Q4_0Fmt, 1>>(n / QK4_0, w, rs, nrows, a, out);
}

float vec_dot_mxfp4_avx2(int64_t n, const void* w, const void* a) {
  float y;
  nibble_rows<Mxfp4Fmt, 1>(n / QK_MXFP4, static_cast<const uint8_t*>(w), 0, static_cast<const BlockQ8_0*>(a), &y);
  return y;
}
void vec_dot_rows_mxfp4_avx2(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
#if defined(DSV4_AVXVNNI)
  if (cpu_has_avxvnni())
    return rows_by4<nibble_rows_vnni<Mxfp4Fmt, 4>, nibble_rows_vnni<Mxfp4Fmt, 1>>(n / QK_MXFP4, w, rs, nrows, a, out);
#endif
  rows_by4<nibble_rows<Mxfp4Fmt, 4>, nibble_rows<Mxfp4Fmt, 1>>(n / QK_MXFP4, w, rs, nrows, a, out);
}

// ================================================================ Q2_K / Q3_K / IQ4_XS / IQ2_XXS dots
namespace {

// Shuffle controls that turn 8 int16 sub-block scales (both 128-bit halves) into [s[2g] x8 | s[2g+1] x8].
struct ScaleCtrl {
  __m256i c[4];
  ScaleCtrl() {
    for (int g = 0; g < 4; ++g) {
      alignas(32) int8_t b[32];
      for (int k = 0; k < 16; ++k) {
        b[k] = static_cast<int8_t>(4 * g + (k & 1));
        b[16 + k] = static_cast<int8_t>(4 * g + 2 + (k & 1));
      }
      c[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    }
  }
};
inline __m256i pair_scales(__m256i scales8x2, const ScaleCtrl& ctl, int g) {
  return _mm256_shuffle_epi8(scales8x2, ctl.c[g]);
}
inline __m256i bcast128(__m128i v) { return _mm256_broadcastsi128_si256(v); }

}  // namespace
float vec_dot_q2_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ2_K* w = static_cast<const BlockQ2_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i m3 = _mm256_set1_epi8(3);
  const ScaleCtrl ctl;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    for (size_t o = 0; o < sizeof(*w); o += 64) prefetch(w + b, kStreamAhead + o);
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums));
    const int summ = hsum_epi32(
        _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xF))), bs));
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0xF)));
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * h));
      const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
      for (int g = 0; g < 4; ++g) {
        const __m256i qv = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(qv, av), pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc);
    sum += (f16(w[b].d) * a[b].d) * static_cast<float>(sumi) - (f16(w[b].dmin) * a[b].d) * static_cast<float>(summ);
  }
  return sum;
}

float vec_dot_q3_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ3_K* w = static_cast<const BlockQ3_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
  const ScaleCtrl ctl;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    for (size_t o = 0; o < sizeof(*w); o += 64) prefetch(w + b, kStreamAhead + o);
    // unpack the 16 6-bit scales (low nibbles in bytes 0-7, high 2 bits in bytes 8-11), minus 32
    uint32_t aux[3];
    std::memcpy(aux, w[b].scales, 12);
    const uint32_t k2 = 0x0f0f0f0f, k1 = 0x03030303, tmp = aux[2];
    const __m128i s8 = _mm_setr_epi32(static_cast<int>((aux[0] & k2) | (((tmp >> 0) & k1) << 4)),
                                      static_cast<int>((aux[1] & k2) | (((tmp >> 2) & k1) << 4)),
                                      static_cast<int>(((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4)),
                                      static_cast<int>(((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4)));
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(s8, _mm_set1_epi8(32)));
    // codes are stored +4: subtract 4 * sum(a) per sub-block
    const int off =
        hsum_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums))));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].hmask));
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * h));
      for (int g = 0; g < 4; ++g) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), m1), 2);
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
        acc = _mm256_add_epi32(
            acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_or_si256(lo, hi), av), pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc) - 4 * off;
    sum += (f16(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float vec_dot_iq4_xs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ4_XS* w = static_cast<const BlockIQ4_XS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIQ4NL)));
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    for (size_t o = 0; o < sizeof(*w); o += 64) prefetch(w + b, kStreamAhead + o);
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((w[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((w[b].scales_h >> 2 * ib) & 3) << 4);
      const __m256i wv = _mm256_shuffle_epi8(table, load_nibbles(w[b].qs + 16 * ib));
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(ls - 32))));
    }
    sum += (f16(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc));
  }
  return sum;
}

float vec_dot_iq2_xxs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_XXS* w = static_cast<const BlockIQ2_XXS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq2xxsTables& t = iq2xxs_tables();
  const __m256i bits = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i sel =
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    for (size_t o = 0; o < sizeof(*w); o += 64) prefetch(w + b, kStreamAhead + o);
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, w[b].qs + 4 * ib, 8);
      const __m256i g = _mm256_setr_epi64x(static_cast<int64_t>(t.grid_values[aux[0] & 0xff]),
                                           static_cast<int64_t>(t.grid_values[(aux[0] >> 8) & 0xff]),
                                           static_cast<int64_t>(t.grid_values[(aux[0] >> 16) & 0xff]),
                                           static_cast<int64_t>(t.grid_values[aux[0] >> 24]));
      const uint32_t s4 = static_cast<uint32_t>(t.ksigns[aux[1] & 127]) |
                          (static_cast<uint32_t>(t.ksigns[(aux[1] >> 7) & 127]) << 8) |
                          (static_cast<uint32_t>(t.ksigns[(aux[1] >> 14) & 127]) << 16) |
                          (static_cast<uint32_t>(t.ksigns[(aux[1] >> 21) & 127]) << 24);
      const __m256i sb = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(s4)), sel);
      const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(sb, bits), bits);  // 0xff where the sign bit is set
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const __m256i as = _mm256_sub_epi8(_mm256_xor_si256(av, neg), neg);  // a * sign
      const __m256i p = _mm256_maddubs_epi16(g, as);
      acc =
          _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(2 * (aux[1] >> 28) + 1))));
    }
    sum += ((f16(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}

// ================================================================ Q4_K / Q5_K / Q6_K dots
namespace {

// The 8 scales and 8 mins of a Q4_K/Q5_K super-block as int16 [sc0..sc7 | m0..m7]: get_scale_min_k4 for
// all j at once (j < 4: low 6 bits of bytes j / j+4; j >= 4: nibbles of byte j+4 plus the top 2 bits
// of bytes j-4 / j).
inline __m256i scales_mins_k4(const uint8_t* q) {
  uint32_t u[3];
  std::memcpy(u, q, 12);
  const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
  const __m128i s8 =
      _mm_setr_epi32(static_cast<int>(u[0] & m6), static_cast<int>((u[2] & m4) | (((u[0] >> 6) & m2) << 4)),
                     static_cast<int>(u[1] & m6), static_cast<int>(((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4)));
  return _mm256_cvtepu8_epi16(s8);
}
// 4 int32 lanes of sum_j m_j * (bsums[2j] + bsums[2j+1]): lane k holds sub-blocks 2k and 2k+1.
inline __m128i mins_bsums_k4(__m256i scmin, const int16_t* bsums) {
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bsums));
  const __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
  return _mm_madd_epi16(_mm256_extracti128_si256(scmin, 1), pairs);
}
// int16 broadcast of scale j of a [sc0..sc7] vector held in both 128-bit halves.
inline __m256i scale_j(__m256i sc2, int j) {
  return _mm256_shuffle_epi8(sc2, _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * j)));
}

// Integer part as ggml: scales/mins unpacked with 32-bit ops, mins . bsums by madd, 64 values per step;
// float part as ggml too: one FMA of the 8 scaled int32 lanes per super-block, and one of the 4 min
// lanes (dot_k4_lanes in dot_ref.cpp is the same order in scalar code).
template <class Block, class Quants>
float dot_k4_avx2(int64_t nb, const Block* w, const BlockQ8_K* a, Quants quants) {
  __m256 acc = _mm256_setzero_ps();
  __m128 accm = _mm_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    for (size_t o = 0; o < sizeof(Block); o += 64) prefetch(w + b, kStreamAhead + o);
    const __m256i scmin = scales_mins_k4(w[b].scales);
    const __m128i mprod = mins_bsums_k4(scmin, a[b].bsums);
    const __m256i sc2 = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(scmin));
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      __m256i q0, q1;  // values of sub-blocks 2c and 2c+1 (bytes in element order)
      quants(w[b], c, &q0, &q1);
      const __m256i p0 =
          _mm256_maddubs_epi16(q0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c)));
      const __m256i p1 =
          _mm256_maddubs_epi16(q1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c + 32)));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_madd_epi16(p0, scale_j(sc2, 2 * c)),
                                                     _mm256_madd_epi16(p1, scale_j(sc2, 2 * c + 1))));
    }
    const float d = f16(w[b].d) * a[b].d, dm = -(f16(w[b].dmin) * a[b].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    accm = _mm_fmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(mprod), accm);
  }
  const __m128 h = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
  return reduce_lanes8(acc) + _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

}  // namespace

float vec_dot_q4_k_avx2(int64_t n, const void* vw, const void* va) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  return dot_k4_avx2(n / QK_K, static_cast<const BlockQ4_K*>(vw), static_cast<const BlockQ8_K*>(va),
                     [m4](const BlockQ4_K& x, int c, __m256i* q0, __m256i* q1) {
                       const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
                       *q0 = _mm256_and_si256(q, m4);
                       *q1 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                     });
}

float vec_dot_q5_k_avx2(int64_t n, const void* vw, const void* va) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m1b = _mm256_set1_epi8(0x01);
  return dot_k4_avx2(n / QK_K, static_cast<const BlockQ5_K*>(vw), static_cast<const BlockQ8_K*>(va),
                     [m4, m1b](const BlockQ5_K& x, int c, __m256i* q0, __m256i* q1) {
                       const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + 32 * c));
                       const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh));
                       const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m1b), 4);
                       const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), m1b), 4);
                       *q0 = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
                       *q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
                     });
}

float vec_dot_q6_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ6_K* w = static_cast<const BlockQ6_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
  const ScaleCtrl ctl;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    for (size_t o = 0; o < sizeof(BlockQ6_K); o += 64) prefetch(w + b, kStreamAhead + o);
    __m256i acc = _mm256_setzero_si256();
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales)));
    // sum of sc * bsum, times 32 below (the -32 code offset)
    const int sum_off =
        hsum_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums))));
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh + 32 * h));
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      for (int g = 0; g < 4; ++g) {
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
        const __m256i q = _mm256_or_si256(lows[g], _mm256_slli_epi16(hb, 4));  // 0..63
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        const __m256i p = _mm256_maddubs_epi16(q, av);
        const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc) - 32 * sum_off;
    sum += (f16(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

// ================================================================ Q4_1 / Q5_0 / Q5_1 / IQ4_NL dots
// One row at a time in dot_lanes32's layout (see the top of this file): each block's 32 weights are
// decoded to int8 in element order, then the Q8_0 path's sign-trick products (|w| <= 127, |a| <= 127: no
// int16 saturation).  Q4_1/Q5_1 add the min terms m*s (Q8_1's s) afterwards, one scalar FMA per block in
// block order, as vec_dot_q4_1_ref/q5_1_ref do.
namespace {

// Byte j = 0x10 where bit j of the little-endian u32 at qh is set (the 5th bit of value j), else 0.
inline __m256i fifth_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(h)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000));
  const __m256i set =
      _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
  return _mm256_and_si256(set, _mm256_set1_epi8(0x10));
}

struct Q4_1Vals {
  using Block = BlockQ4_1;
  using Act = BlockQ8_1;
  static __m256i values(const Block& x) { return load_nibbles(x.qs); }
};
struct Q5_0Vals {
  using Block = BlockQ5_0;
  using Act = BlockQ8_0;
  static __m256i values(const Block& x) {
    return _mm256_sub_epi8(_mm256_or_si256(load_nibbles(x.qs), fifth_bits(x.qh)), _mm256_set1_epi8(16));
  }
};
struct Q5_1Vals {
  using Block = BlockQ5_1;
  using Act = BlockQ8_1;
  static __m256i values(const Block& x) { return _mm256_or_si256(load_nibbles(x.qs), fifth_bits(x.qh)); }
};
struct IQ4_NLVals {
  using Block = BlockIQ4_NL;
  using Act = BlockQ8_0;
  static __m256i values(const Block& x) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIQ4NL)));
    return _mm256_shuffle_epi8(table, load_nibbles(x.qs));
  }
};

template <class V>
float lanes32_dot(int64_t nb, const typename V::Block* x, const typename V::Act* a) {
  using Block = typename V::Block;
  using Act = typename V::Act;
  __m256 acc = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    prefetch(x + b, kStreamAhead);
    const __m256i p0 = dot_i8(V::values(x[b]), load32(a[b].qs));
    const __m256i p1 = dot_i8(V::values(x[b + 1]), load32(a[b + 1].qs));
    const __m256 sc = _mm256_mul_ps(f16_pair(&x[b].d, sizeof(Block)), f16_pair(&a[b].d, sizeof(Act)));
    acc = _mm256_fmadd_ps(sc, _mm256_cvtepi32_ps(fold_pair(p0, p1)), acc);
  }
  if (b < nb) {
    const __m128 sc = _mm_set1_ps(f16(x[b].d) * f16(a[b].d));
    const __m128 lo = _mm_fmadd_ps(sc, _mm_cvtepi32_ps(fold_one(dot_i8(V::values(x[b]), load32(a[b].qs)))),
                                   _mm256_castps256_ps128(acc));
    acc = _mm256_insertf128_ps(acc, lo, 0);
  }
  return reduce_lanes8(acc);
}

template <class Block>
float min_terms(int64_t nb, const Block* x, const BlockQ8_1* a) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) s = std::fma(f16(x[b].m), f16(a[b].s), s);
  return s;
}

}  // namespace

float vec_dot_q4_1_avx2(int64_t n, const void* w, const void* a) {
  const BlockQ4_1* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  return lanes32_dot<Q4_1Vals>(n / 32, x, y) + min_terms(n / 32, x, y);
}
float vec_dot_q5_0_avx2(int64_t n, const void* w, const void* a) {
  return lanes32_dot<Q5_0Vals>(n / 32, static_cast<const BlockQ5_0*>(w), static_cast<const BlockQ8_0*>(a));
}
float vec_dot_q5_1_avx2(int64_t n, const void* w, const void* a) {
  const BlockQ5_1* x = static_cast<const BlockQ5_1*>(w);
  const BlockQ8_1* y = static_cast<const BlockQ8_1*>(a);
  return lanes32_dot<Q5_1Vals>(n / 32, x, y) + min_terms(n / 32, x, y);
}
float vec_dot_iq4_nl_avx2(int64_t n, const void* w, const void* a) {
  return lanes32_dot<IQ4_NLVals>(n / 32, static_cast<const BlockIQ4_NL*>(w), static_cast<const BlockQ8_0*>(a));
}

}  // namespace dsv4

#endif  // DSV4_X86
