// AVX-512 (F, BW, DQ, VL, VNNI) products of the 32-element block types (Q8_0, Q4_0, MXFP4) with Q8_0
// activations, as a tiled GEMM: 4 weight rows x 4 activation rows per step, each weight 4-block group
// decoded to unsigned bytes once and reused for every activation row of the tile, vpdpbusd for the
// integer sums.  Decode is the same kernel with one activation row.  Bit-exact with dot_ref.cpp's
// dot_lanes32 for every (row, token): the integer sums are exact, and the float part runs the same
// 8-lane FMA sequence (blocks in order, lane 4*(b&1)+k) and the same final tree.  Compiled with the
// AVX-512 flags for this file only; dispatch (quant.cpp) checks the CPU at run time.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"

namespace dsv4 {

namespace {

// One activation row's 4-block group, laid out for the kernel (256 bytes).  The offset correction
// depends on the weight format's kOff, so a repacked row serves one format.
struct alignas(64) ActGroup {
  __m512i lo;     // bytes 0..15 of blocks b..b+3 (elements 0..15 of each block, one 128-bit lane each)
  __m512i hi;     // bytes 16..31 (elements 16..31)
  __m512 scale;   // fp16_to_f32(d) of each block, 4 lanes each
  __m512i ncorr;  // -kOff * (a[4k..4k+3] + a[16+4k..16+4k+3]), lane 4i+k for block b+i
};

inline __m512i load4x16(const void* p0, const void* p1, const void* p2, const void* p3) {
  const __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(static_cast<const __m128i*>(p0)));
  return _mm512_inserti32x4(
      _mm512_inserti32x4(_mm512_inserti32x4(v, _mm_loadu_si128(static_cast<const __m128i*>(p1)), 1),
                         _mm_loadu_si128(static_cast<const __m128i*>(p2)), 2),
      _mm_loadu_si128(static_cast<const __m128i*>(p3)), 3);
}
// [s0 x4 | s1 x4 | s2 x4 | s3 x4]
inline __m512 spread4(float s0, float s1, float s2, float s3) {
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_setr_ps(s0, s1, s2, s3)));
}

// fp16 scales of 4 blocks `stride` bytes apart, spread as above (F16C: exact, like fp16_to_f32).
inline __m512 spread4_f16(const void* p, size_t stride) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  uint16_t h[4];
  for (int i = 0; i < 4; ++i) std::memcpy(&h[i], b + i * stride, 2);
  const __m128 s = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(h[0]), static_cast<short>(h[1]),
                                               static_cast<short>(h[2]), static_cast<short>(h[3]), 0, 0, 0, 0));
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(s));
}

// Weight formats: decode(x) -> unsigned bytes value + kOff of blocks x[0..3] (elements 0..15 in lo,
// 16..31 in hi) and their float scales; val / scale1 are the scalar definitions for tail blocks.
struct Q8_0W {
  using Block = BlockQ8_0;
  static constexpr int kOff = 128;  // signed weights as unsigned bytes: w ^ 0x80 = w + 128
  static void decode(const Block* x, __m512i& lo, __m512i& hi, __m512& sc) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    lo = _mm512_xor_si512(load4x16(x[0].qs, x[1].qs, x[2].qs, x[3].qs), flip);
    hi = _mm512_xor_si512(load4x16(x[0].qs + 16, x[1].qs + 16, x[2].qs + 16, x[3].qs + 16), flip);
    sc = spread4_f16(&x[0].d, sizeof(Block));
  }
  static int val(const Block& x, int i) { return x.qs[i]; }
  static float scale1(const Block& x) { return fp16_to_f32(x.d); }
};

// 4-bit index types: a 16-entry table of value + kOff, looked up with vpshufb.
template <class B, int Off>
struct NibbleW {
  using Block = B;
  static constexpr int kOff = Off;
  static __m512i table();
  static float scale1(const Block& x);
  static __m512 scale4(const Block* x);
  static int value(int code);
  static void decode(const Block* x, __m512i& lo, __m512i& hi, __m512& sc) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), t = table();
    const __m512i q = load4x16(x[0].qs, x[1].qs, x[2].qs, x[3].qs);
    lo = _mm512_shuffle_epi8(t, _mm512_and_si512(q, m4));
    hi = _mm512_shuffle_epi8(t, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
    sc = scale4(x);
  }
  static int val(const Block& x, int i) { return value(i < 16 ? (x.qs[i] & 0xf) : (x.qs[i - 16] >> 4)); }
};
using Q4_0W = NibbleW<BlockQ4_0, 8>;
using Mxfp4W = NibbleW<BlockMXFP4, 12>;

template <>
__m512i Q4_0W::table() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
template <>
float Q4_0W::scale1(const BlockQ4_0& x) {
  return fp16_to_f32(x.d);
}
template <>
__m512 Q4_0W::scale4(const BlockQ4_0* x) {
  return spread4_f16(&x[0].d, sizeof(BlockQ4_0));
}
template <>
int Q4_0W::value(int code) {
  return code - 8;
}
template <>
__m512i Mxfp4W::table() {
  alignas(16) int8_t t[16];
  for (int i = 0; i < 16; ++i) t[i] = static_cast<int8_t>(kValuesMXFP4[i] + kOff);
  return _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(t)));
}
template <>
float Mxfp4W::scale1(const BlockMXFP4& x) {
  return e8m0_to_f32_half(x.e);
}
template <>
__m512 Mxfp4W::scale4(const BlockMXFP4* x) {
  return spread4(scale1(x[0]), scale1(x[1]), scale1(x[2]), scale1(x[3]));
}
template <>
int Mxfp4W::value(int code) {
  return kValuesMXFP4[code];
}

template <int Off>
void repack(const BlockQ8_0* a, int64_t ng, ActGroup* out) {
  const __m512i off = _mm512_set1_epi8(static_cast<char>(Off));  // vpdpbusd reads it unsigned: up to 255
  const __m512i z = _mm512_setzero_si512();
  for (int64_t g = 0; g < ng; ++g) {
    const BlockQ8_0* x = a + 4 * g;
    ActGroup& o = out[g];
    o.lo = load4x16(x[0].qs, x[1].qs, x[2].qs, x[3].qs);
    o.hi = load4x16(x[0].qs + 16, x[1].qs + 16, x[2].qs + 16, x[3].qs + 16);
    o.scale = spread4_f16(&x[0].d, sizeof(BlockQ8_0));
    o.ncorr = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, off, o.lo), off, o.hi));
  }
}

inline float reduce_lanes8(const float* l) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

// Block b of one row added to its 4 lanes (4*(b&1)+k) in scalar code, exactly as dot_lanes32: the blocks
// past the last SIMD group.
template <class Fmt>
void add_block(float* l, int64_t b, const typename Fmt::Block& x, const BlockQ8_0& a) {
  const float s = Fmt::scale1(x) * fp16_to_f32(a.d);
  for (int k = 0; k < 4; ++k) {
    int isum = 0;
    for (int i = 4 * k; i < 4 * k + 4; ++i) isum += Fmt::val(x, i) * a.qs[i] + Fmt::val(x, i + 16) * a.qs[i + 16];
    l[4 * (b & 1) + k] = std::fma(s, static_cast<float>(isum), l[4 * (b & 1) + k]);
  }
}

// R weight rows x N activation rows over all 4-block groups, then the tail blocks and the final tree.
template <class Fmt, int R, int N>
void tile(int64_t ng, int64_t nb, const uint8_t* w, size_t rs, const ActGroup* act, int64_t ga, const BlockQ8_0* araw,
          size_t ars, float* y, int64_t ys) {
  using Block = typename Fmt::Block;
  __m256 acc[R][N];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < N; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    __m512i lo[R], hi[R];
    __m512 ws[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const Block* x = reinterpret_cast<const Block*>(w + r * rs) + 4 * g;
      _mm_prefetch(reinterpret_cast<const char*>(x) + R * rs, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(x) + R * rs + 64, _MM_HINT_T0);
      Fmt::decode(x, lo[r], hi[r], ws[r]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const ActGroup& a = act[t * ga + g];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const __m512i iv = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a.ncorr, lo[r], a.lo), hi[r], a.hi);
        const __m512 f = _mm512_cvtepi32_ps(iv), s = _mm512_mul_ps(ws[r], a.scale);
        acc[r][t] = _mm256_fmadd_ps(_mm512_castps512_ps256(s), _mm512_castps512_ps256(f), acc[r][t]);
        acc[r][t] = _mm256_fmadd_ps(_mm512_extractf32x8_ps(s, 1), _mm512_extractf32x8_ps(f, 1), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const Block* x = reinterpret_cast<const Block*>(w + r * rs);
    for (int t = 0; t < N; ++t) {
      alignas(32) float l[8];
      _mm256_store_ps(l, acc[r][t]);
      const BlockQ8_0* a = reinterpret_cast<const BlockQ8_0*>(reinterpret_cast<const uint8_t*>(araw) + t * ars);
      for (int64_t b = 4 * ng; b < nb; ++b) add_block<Fmt>(l, b, x[b], a[b]);  // past the last full group
      y[t * ys + r] = reduce_lanes8(l);
    }
  }
}

template <class Fmt, int R>
void tile_n(int n_tok, int64_t ng, int64_t nb, const uint8_t* w, size_t rs, const ActGroup* act, int64_t ga,
            const BlockQ8_0* araw, size_t ars, float* y, int64_t ys) {
  if (n_tok == 4)
    tile<Fmt, R, 4>(ng, nb, w, rs, act, ga, araw, ars, y, ys);
  else if (n_tok == 3)
    tile<Fmt, R, 3>(ng, nb, w, rs, act, ga, araw, ars, y, ys);
  else if (n_tok == 2)
    tile<Fmt, R, 2>(ng, nb, w, rs, act, ga, araw, ars, y, ys);
  else
    tile<Fmt, R, 1>(ng, nb, w, rs, act, ga, araw, ars, y, ys);
}

// ---- one activation row (decode): 256-bit EVEX vpdpbusd, two blocks per step, the activation's layout,
// scales and offset correction prepared once per call.  Weights stream from DRAM here, so the per-byte
// work matters more than reuse, and on this class of CPU 512-bit integer ops cost two 256-bit slots.
// Lanes as dot_lanes32: block b adds to lanes 4*(b&1)+k.
inline __m256i load2x16(const void* lo, const void* hi) {
  return _mm256_loadu2_m128i(static_cast<const __m128i*>(hi), static_cast<const __m128i*>(lo));
}
inline __m256 f16_pair(const void* p, size_t stride) {
  uint16_t h0, h1;
  std::memcpy(&h0, p, 2);
  std::memcpy(&h1, static_cast<const uint8_t*>(p) + stride, 2);
  const __m128 s = _mm_cvtph_ps(_mm_insert_epi16(_mm_cvtsi32_si128(h0), h1, 1));
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}
struct E8m0Half {  // e8m0_to_f32_half of every byte: one load per block instead of the branchy conversion
  float v[256];
  E8m0Half() {
    for (int e = 0; e < 256; ++e) v[e] = e8m0_to_f32_half(static_cast<uint8_t>(e));
  }
};
// Fetched once per call (a function-local static: no code of this AVX-512 file runs at library load, and
// no guard check runs per block).
const float* e8m0_half_table() {
  static const E8m0Half t;
  return t.v;
}
inline __m256 scale2(const BlockMXFP4* x, const float* e8) {
  return _mm256_blend_ps(_mm256_broadcast_ss(e8 + x[0].e), _mm256_broadcast_ss(e8 + x[1].e), 0xF0);
}
inline __m256 scale2(const BlockQ4_0* x, const float*) { return f16_pair(&x[0].d, sizeof(BlockQ4_0)); }
inline __m256 scale2(const BlockQ8_0* x, const float*) { return f16_pair(&x[0].d, sizeof(BlockQ8_0)); }

// One activation row laid out per pair of blocks, once per call and shared by every weight row: element
// halves of blocks b, b+1 (lo: elements 0..15 of each, one 128-bit lane per block; hi: 16..31), the offset
// correction -kOff * (sum of each lane's 8 activation bytes) and the fp16 scales, 4 lanes each.
struct alignas(32) ActPair {
  __m256i lo, hi, ncorr;
  __m256 ad;
};

template <int Off>
void prep_pairs(const BlockQ8_0* a, int64_t np, ActPair* out) {
  const __m256i off = _mm256_set1_epi8(static_cast<char>(Off)), z = _mm256_setzero_si256();
  for (int64_t p = 0; p < np; ++p) {
    const BlockQ8_0* x = a + 2 * p;
    ActPair& o = out[p];
    o.lo = load2x16(x[0].qs, x[1].qs);
    o.hi = load2x16(x[0].qs + 16, x[1].qs + 16);
    o.ncorr = _mm256_sub_epi32(z, _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(z, off, o.lo), off, o.hi));
    o.ad = f16_pair(&x[0].d, sizeof(BlockQ8_0));
  }
}

// Two weight blocks as unsigned bytes (value + kOff), element halves in the activation's pair layout.
template <class Fmt>
struct PairW;
template <class B, int Off>
struct PairW<NibbleW<B, Off>> {
  static void load(const B* x, __m256i t, __m256i& wl, __m256i& wh) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i q = load2x16(x[0].qs, x[1].qs);
    wl = _mm256_shuffle_epi8(t, _mm256_and_si256(q, m4));
    wh = _mm256_shuffle_epi8(t, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
  }
};
template <>
struct PairW<Q8_0W> {
  static void load(const BlockQ8_0* x, __m256i, __m256i& wl, __m256i& wh) {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    wl = _mm256_xor_si256(load2x16(x[0].qs, x[1].qs), flip);
    wh = _mm256_xor_si256(load2x16(x[0].qs + 16, x[1].qs + 16), flip);
  }
};
template <class Fmt>
__m256i table256() {
  if constexpr (Fmt::kOff == 128)
    return _mm256_setzero_si256();
  else
    return _mm512_castsi512_si256(Fmt::table());
}

// The lone last block of an odd block count, as dot_lanes32, then the final tree.
template <class Fmt>
float finish_row(__m256 acc, int64_t nb, const typename Fmt::Block* x, const BlockQ8_0* a) {
  alignas(32) float l[8];
  _mm256_store_ps(l, acc);
  if (nb & 1) add_block<Fmt>(l, nb - 1, x[nb - 1], a[nb - 1]);
  return reduce_lanes8(l);
}

// One weight row against the prepared activation.  Rows go one at a time: a single sequential stream
// per thread is what the hardware prefetcher keeps ahead of, while R rows side by side (R short streams
// per thread) measured 20-40 % slower from DRAM here even though they share the activation's loads.
template <class Fmt>
float row1(int64_t nb, const typename Fmt::Block* x, const BlockQ8_0* a, const ActPair* ap, const __m256i tab,
           const float* e8) {
  __m256 acc = _mm256_setzero_ps();
  const int64_t np = nb / 2;
  for (int64_t p = 0; p < np; ++p, x += 2) {
    const ActPair& A = ap[p];
    __m256i wl, wh;
    PairW<Fmt>::load(x, tab, wl, wh);
    const __m256i iv = _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(A.ncorr, wl, A.lo), wh, A.hi);
    acc = _mm256_fmadd_ps(_mm256_mul_ps(scale2(x, e8), A.ad), _mm256_cvtepi32_ps(iv), acc);
  }
  return finish_row<Fmt>(acc, nb, x - 2 * np, a);
}

template <class Fmt>
void decode_rows(int64_t nb, const uint8_t* w, size_t rs, int64_t nrows, const BlockQ8_0* a, float* y) {
  thread_local std::vector<ActPair> ap;
  const int64_t np = nb / 2;
  if (static_cast<int64_t>(ap.size()) < np) ap.resize(static_cast<size_t>(np));
  prep_pairs<Fmt::kOff>(a, np, ap.data());
  const __m256i tab = table256<Fmt>();
  const float* e8 = e8m0_half_table();
  for (int64_t r = 0; r < nrows; ++r)
    y[r] = row1<Fmt>(nb, reinterpret_cast<const typename Fmt::Block*>(w + r * rs), a, ap.data(), tab, e8);
}

// Cache blocking: 64 weight rows (a few hundred KB for 4K columns) against a block of 4 activation rows
// (256 B per 4 blocks each), both resident in L2 while the 4 x 4 tiles sweep them (4 x 4 measured ~25 % faster
// than 4 x 2 here: each decoded weight group serves twice the tokens; 8 tokens x 2 rows gains no more).
constexpr int64_t kRowBlock = 64, kTokBlock = 4;

// A verify step's 2-4 tokens against Q8_0 rows of up to 8192 / ntok columns (the query up-projection is 1024
// wide): 1 x ntok tiles read the rows one at a time, which measured 1.2-1.7x faster here than 4-row tiles
// (4 short streams per thread); wider rows, more tokens and the 4-bit formats keep the 4-row tiles, which
// measured faster or equal for them.  Each (row, token) runs the same sequence either way: same bits.
template <class Fmt>
constexpr bool one_row_tiles(int64_t n, int64_t ntok) {
  return std::is_same_v<Fmt, Q8_0W> && ntok <= kTokBlock && ntok * n <= 8192;
}

template <class Fmt>
void gemm(int64_t n, const void* vw, size_t rs, int64_t nrows, const void* va, size_t ars, int64_t ntok, float* y,
          int64_t ys) {
  const int64_t nb = n / 32, ng = nb / 4;
  const uint8_t* w = static_cast<const uint8_t*>(vw);
  const uint8_t* a = static_cast<const uint8_t*>(va);
  if (ntok == 1) {
    decode_rows<Fmt>(nb, w, rs, nrows, static_cast<const BlockQ8_0*>(va), y);
    return;
  }
  thread_local std::vector<ActGroup> buf;
  const int64_t tb = std::min(ntok, kTokBlock);
  if (static_cast<int64_t>(buf.size()) < tb * ng) buf.resize(static_cast<size_t>(tb * ng));
  for (int64_t t0 = 0; t0 < ntok; t0 += kTokBlock) {
    const int64_t nt = std::min(kTokBlock, ntok - t0);
    for (int64_t t = 0; t < nt; ++t)
      repack<Fmt::kOff>(reinterpret_cast<const BlockQ8_0*>(a + (t0 + t) * ars), ng, buf.data() + t * ng);
    if (one_row_tiles<Fmt>(n, ntok)) {  // one weight row at a time: a single stream per thread
      const ActGroup* at = buf.data();
      const BlockQ8_0* araw = reinterpret_cast<const BlockQ8_0*>(a + t0 * ars);
      for (int64_t r = 0; r < nrows; ++r)
        tile_n<Fmt, 1>(static_cast<int>(nt), ng, nb, w + r * rs, rs, at, ng, araw, ars, y + t0 * ys + r, ys);
      continue;
    }
    for (int64_t r0 = 0; r0 < nrows; r0 += kRowBlock) {
      const int64_t r1 = std::min(nrows, r0 + kRowBlock);
      for (int64_t r = r0; r < r1; r += 4) {
        const int nr = static_cast<int>(std::min<int64_t>(4, r1 - r));
        const uint8_t* wr = w + r * rs;
        {  // the whole token block as one tile: 4 rows x up to 4 tokens (16 accumulators)
          const int ntt = static_cast<int>(nt);
          const ActGroup* at = buf.data();
          const BlockQ8_0* araw = reinterpret_cast<const BlockQ8_0*>(a + t0 * ars);
          float* yt = y + t0 * ys + r;
          switch (nr) {
            case 4:
              tile_n<Fmt, 4>(ntt, ng, nb, wr, rs, at, ng, araw, ars, yt, ys);
              break;
            case 3:
              tile_n<Fmt, 3>(ntt, ng, nb, wr, rs, at, ng, araw, ars, yt, ys);
              break;
            case 2:
              tile_n<Fmt, 2>(ntt, ng, nb, wr, rs, at, ng, araw, ars, yt, ys);
              break;
            default:
              tile_n<Fmt, 1>(ntt, ng, nb, wr, rs, at, ng, araw, ars, yt, ys);
              break;
          }
        }
      }
    }
  }
}

}  // namespace

void gemm_q8_0_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                      float* y, int64_t ys) {
  gemm<Q8_0W>(n, w, rs, nrows, a, ars, ntok, y, ys);
}
void gemm_q4_0_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                      float* y, int64_t ys) {
  gemm<Q4_0W>(n, w, rs, nrows, a, ars, ntok, y, ys);
}
void gemm_mxfp4_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                       float* y, int64_t ys) {
  gemm<Mxfp4W>(n, w, rs, nrows, a, ars, ntok, y, ys);
}
void vec_dot_rows_q8_0_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
  gemm<Q8_0W>(n, w, rs, nrows, a, 0, 1, out, 0);
}
void vec_dot_rows_q4_0_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
  gemm<Q4_0W>(n, w, rs, nrows, a, 0, 1, out, 0);
}
void vec_dot_rows_mxfp4_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, float* out) {
  gemm<Mxfp4W>(n, w, rs, nrows, a, 0, 1, out, 0);
}
float vec_dot_q8_0_avx512(int64_t n, const void* w, const void* a) {
  float y;
  gemm<Q8_0W>(n, w, 0, 1, a, 0, 1, &y, 0);
  return y;
}
float vec_dot_q4_0_avx512(int64_t n, const void* w, const void* a) {
  float y;
  gemm<Q4_0W>(n, w, 0, 1, a, 0, 1, &y, 0);
  return y;
}
float vec_dot_mxfp4_avx512(int64_t n, const void* w, const void* a) {
  float y;
  gemm<Mxfp4W>(n, w, 0, 1, a, 0, 1, &y, 0);
  return y;
}

}  // namespace dsv4
#endif  // DSV4_X86
