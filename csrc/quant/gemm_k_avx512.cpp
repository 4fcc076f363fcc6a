// AVX-512 (F, BW, DQ, VL, VNNI) products of Q4_K / Q5_K / Q6_K weights with Q8_K activations as a tiled GEMM:
// one weight row's super-block decoded into registers (values, sub-block scales, mins) once per tile of up
// to 4 activation rows.  Bit-exact with dot_ref.cpp for every (row, token).  Q4_K / Q5_K (dot_k4_lanes):
// the scaled integer sums are exact in 8 int32 lanes (lane l: elements 32j+4l..32j+4l+3 of every
// sub-block j, times its scale), the mins in 4 lanes, and the float part is the same per-super-block FMA
// into 8 (and 4) float lanes followed by the same trees.  Q6_K (vec_dot_q6_k_ref): one exact int32 sum per
// super-block in any order, then the same scalar (d * da) * sum added in super-block order.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"

namespace dsv4 {

namespace {

// One activation row's super-block laid out like the decoded weights (320 bytes): values of sub-blocks
// (0|2), (1|3), (4|6), (5|7) in 256-bit halves, the 8 bsum pairs (bsums[2j] + bsums[2j+1], one per
// sub-block j) and the scale.
struct alignas(64) K8Act {
  __m512i q[4];
  __m128i pairs;
  float d;
};

inline __m512i join(const void* lo, const void* hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(lo))),
                            _mm256_loadu_si256(static_cast<const __m256i*>(hi)), 1);
}

void repack(const BlockQ8_K* a, int64_t nsb, K8Act* out) {
  for (int64_t b = 0; b < nsb; ++b) {
    const int8_t* q = a[b].qs;
    out[b].q[0] = join(q, q + 64);
    out[b].q[1] = join(q + 32, q + 96);
    out[b].q[2] = join(q + 128, q + 192);
    out[b].q[3] = join(q + 160, q + 224);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums));
    out[b].pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    out[b].d = a[b].d;
  }
}

// A weight super-block in registers: unsigned values in the K8Act layout, the matching int16 scale
// vectors ([sc_a x16 | sc_b x16] for the sub-blocks of each half), the 8 mins, the fp16 scales as f32.
struct K4Row {
  __m512i v[4], s[4];
  __m128i m8;
  float d, dmin;
};

// word index vectors for _mm512_permutexvar_epi16 over [sc0..sc7, m0..m7]
struct ScaleIdx {
  __m512i pair[4];
  ScaleIdx() {
    const int sub[4][2] = {{0, 2}, {1, 3}, {4, 6}, {5, 7}};
    for (int z = 0; z < 4; ++z) {
      alignas(64) int16_t ix[32];
      for (int i = 0; i < 32; ++i) ix[i] = static_cast<int16_t>(sub[z][i / 16]);
      pair[z] = _mm512_load_si512(ix);
    }
  }
};

template <class Block>
inline void decode_scales(const Block& x, K4Row& r, const ScaleIdx& ix) {
  // the 6-bit scales and mins of all 8 sub-blocks at once (kq::get_scale_min_k4's layout, 32-bit ops)
  uint32_t u[3];
  std::memcpy(u, x.scales, 12);
  const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
  const __m128i s8 =
      _mm_setr_epi32(static_cast<int>(u[0] & m6), static_cast<int>((u[2] & m4) | (((u[0] >> 6) & m2) << 4)),
                     static_cast<int>(u[1] & m6), static_cast<int>(((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4)));
  const __m512i sm = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(s8));  // [sc0..sc7, m0..m7] as int16
  for (int z = 0; z < 4; ++z) r.s[z] = _mm512_permutexvar_epi16(ix.pair[z], sm);
  r.m8 = _mm_cvtepu8_epi16(_mm_srli_si128(s8, 8));
  r.d = fp16_to_f32(x.d);
  r.dmin = fp16_to_f32(x.dmin);
}

struct Q4KW {
  using Block = BlockQ4_K;
  static float dot1(int64_t n, const void* w, const void* a) { return vec_dot_q4_k_avx2(n, w, a); }
  static void decode(const Block& x, K4Row& r, const ScaleIdx& ix) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i q0 = _mm512_loadu_si512(x.qs), q1 = _mm512_loadu_si512(x.qs + 64);
    r.v[0] = _mm512_and_si512(q0, m4);
    r.v[1] = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
    r.v[2] = _mm512_and_si512(q1, m4);
    r.v[3] = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
    decode_scales(x, r, ix);
  }
};

// Q5_K: as Q4_K plus bit 2c (low nibbles of byte chunk c) / 2c+1 (high nibbles) of qh[l] as bit 4.
struct Q5KW {
  using Block = BlockQ5_K;
  static float dot1(int64_t n, const void* w, const void* a) { return vec_dot_q5_k_avx2(n, w, a); }
  static void decode(const Block& x, K4Row& r, const ScaleIdx& ix) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m1 = _mm512_set1_epi8(0x01);
    const __m512i q0 = _mm512_loadu_si512(x.qs), q1 = _mm512_loadu_si512(x.qs + 64);
    const __m512i qh = join(x.qh, x.qh);  // the same 32 bytes serve chunk c (low half) and c+1 (high half)
    // bit index per (z, half): z0 = chunk 0 lo (bit 0) | chunk 1 lo (bit 2); z1 = hi: bits 1 | 3; z2, z3: +4
    const __m512i sh0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_setzero_si256()), _mm256_set1_epi16(2), 1);
    auto hbit = [&](int base) {
      return _mm512_slli_epi16(
          _mm512_and_si512(_mm512_srlv_epi16(qh, _mm512_add_epi16(sh0, _mm512_set1_epi16(static_cast<short>(base)))),
                           m1),
          4);
    };
    r.v[0] = _mm512_or_si512(_mm512_and_si512(q0, m4), hbit(0));
    r.v[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q0, 4), m4), hbit(1));
    r.v[2] = _mm512_or_si512(_mm512_and_si512(q1, m4), hbit(4));
    r.v[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(q1, 4), m4), hbit(5));
    decode_scales(x, r, ix);
  }
};

inline float reduce_lanes8(const float* l) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

// One weight row x N activation rows over all super-blocks.
template <class Fmt, int N>
void tile(int64_t nsb, const typename Fmt::Block* w, const K8Act* act, int64_t stride, float* y, int64_t ys,
          const ScaleIdx& ix) {
  __m256 acc[N];
  __m128 accm[N];
  for (int t = 0; t < N; ++t) acc[t] = _mm256_setzero_ps(), accm[t] = _mm_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096 + 64, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096 + 128, _MM_HINT_T0);
    K4Row r;
    Fmt::decode(w[b], r, ix);
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const K8Act& a = act[t * stride + b];
      __m512i s = _mm512_madd_epi16(_mm512_maddubs_epi16(r.v[0], a.q[0]), r.s[0]);
      s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(r.v[1], a.q[1]), r.s[1]));
      s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(r.v[2], a.q[2]), r.s[2]));
      s = _mm512_add_epi32(s, _mm512_madd_epi16(_mm512_maddubs_epi16(r.v[3], a.q[3]), r.s[3]));
      const __m256i lanes = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
      const __m128i mins = _mm_madd_epi16(r.m8, a.pairs);  // lane k: sub-blocks 2k and 2k+1
      const float d = r.d * a.d, dm = -(r.dmin * a.d);
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc[t]);
      accm[t] = _mm_fmadd_ps(_mm_set1_ps(dm), _mm_cvtepi32_ps(mins), accm[t]);
    }
  }
  for (int t = 0; t < N; ++t) {
    alignas(32) float l[8], m[4];
    _mm256_store_ps(l, acc[t]);
    _mm_store_ps(m, accm[t]);
    y[t * ys] = reduce_lanes8(l) + ((m[0] + m[2]) + (m[1] + m[3]));
  }
}

constexpr int64_t kTokBlock = 4;  // activation rows per tile: their super-blocks stay in L1

template <class Fmt>
void gemm(int64_t n, const void* vw, size_t rs, int64_t nrows, const void* va, size_t ars, int64_t ntok, float* y,
          int64_t ys) {
  using Block = typename Fmt::Block;
  const int64_t nsb = n / QK_K;
  const uint8_t* w = static_cast<const uint8_t*>(vw);
  const uint8_t* a = static_cast<const uint8_t*>(va);
  if (ntok == 1) {  // one activation row: nothing to amortize the decode over; the AVX2 dot is as fast
    for (int64_t r = 0; r < nrows; ++r) y[r] = Fmt::dot1(n, w + r * rs, va);
    return;
  }
  static const ScaleIdx ix;
  thread_local std::vector<K8Act> buf;
  if (static_cast<int64_t>(buf.size()) < kTokBlock * nsb) buf.resize(static_cast<size_t>(kTokBlock * nsb));
  for (int64_t t0 = 0; t0 < ntok; t0 += kTokBlock) {
    const int nt = static_cast<int>(std::min(kTokBlock, ntok - t0));
    for (int t = 0; t < nt; ++t)
      repack(reinterpret_cast<const BlockQ8_K*>(a + (t0 + t) * ars), nsb, buf.data() + t * nsb);
    for (int64_t r = 0; r < nrows; ++r) {
      const Block* wr = reinterpret_cast<const Block*>(w + r * rs);
      float* yr = y + t0 * ys + r;
      switch (nt) {
        case 4:
          tile<Fmt, 4>(nsb, wr, buf.data(), nsb, yr, ys, ix);
          break;
        case 3:
          tile<Fmt, 3>(nsb, wr, buf.data(), nsb, yr, ys, ix);
          break;
        case 2:
          tile<Fmt, 2>(nsb, wr, buf.data(), nsb, yr, ys, ix);
          break;
        default:
          tile<Fmt, 1>(nsb, wr, buf.data(), nsb, yr, ys, ix);
          break;
      }
    }
  }
}

// ---- Q6_K: the values in element order (register z: elements 64z..64z+63 of the super-block, its 128-bit
// lanes the sub-blocks 4z..4z+3, each with one scale), so the Q8_K activation rows are read as stored.
// Sum of sc * (q - 32) * a as sum of sc * q * a (q unsigned 0..63: vpmaddubsw pairs stay below 2 * 63 * 128,
// no int16 saturation) plus sum of (-32 sc) * bsum (bsums: the activation's sums of 16), both by vpdpwssd;
// every int32 partial is exact, so the order of the additions does not matter.
struct Q6Row {
  __m512i v[4], s[4];
  __m512i nsc;  // -32 * sc as int16 in the low 256 bits, 0 above
  float d;
};

// word index vectors for _mm512_permutexvar_epi16 over sc[0..15]: register z, lane k -> sub-block 4z + k
struct Q6ScaleIdx {
  __m512i z[4];
  Q6ScaleIdx() {
    for (int r = 0; r < 4; ++r) {
      alignas(64) int16_t ix[32];
      for (int i = 0; i < 32; ++i) ix[i] = static_cast<int16_t>(4 * r + i / 8);
      z[r] = _mm512_load_si512(ix);
    }
  }
};

inline void decode_q6(const BlockQ6_K& x, Q6Row& r, const Q6ScaleIdx& ix) {
  const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  // bits 2g..2g+1 of qh[l] are the high bits of group g (elements 32g + l of a half) -> bits 4..5
  const __m512i up = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);      // g = 0 | 1
  const __m512i down = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);  // g = 2 | 3
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(x.ql + 64 * h);  // low nibbles: groups 0|1, high nibbles: 2|3
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * h)));
    r.v[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, up), m30));
    r.v[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                     _mm512_and_si512(_mm512_srlv_epi16(qh, down), m30));
  }
  const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  const __m512i sc512 = _mm512_castsi256_si512(sc);
  for (int z = 0; z < 4; ++z) r.s[z] = _mm512_permutexvar_epi16(ix.z[z], sc512);
  r.nsc = _mm512_zextsi256_si512(_mm256_mullo_epi16(sc, _mm256_set1_epi16(-32)));
  r.d = fp16_to_f32(x.d);
}

// The 4 int32 lane sums of acc[0..3] as one vector [sum acc0, sum acc1, sum acc2, sum acc3].
inline __m128i hsum4_epi32(const __m512i* acc) {
  __m256i h[4];
  for (int t = 0; t < 4; ++t)
    h[t] = _mm256_add_epi32(_mm512_castsi512_si256(acc[t]), _mm512_extracti64x4_epi64(acc[t], 1));
  const __m256i q = _mm256_hadd_epi32(_mm256_hadd_epi32(h[0], h[1]), _mm256_hadd_epi32(h[2], h[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
}

// One weight row x N activation rows (N <= 4) over all super-blocks: y[t * ys] for each token t.
template <int N>
void tile_q6(int64_t nsb, const BlockQ6_K* w, const BlockQ8_K* const* act, float* y, int64_t ys, const Q6ScaleIdx& ix) {
  __m128 sum = _mm_setzero_ps();  // lane t: token t's running float sum (vec_dot_q6_k_ref's `sum`)
  for (int64_t b = 0; b < nsb; ++b) {
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096 + 64, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096 + 128, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(w + b) + 4096 + 192, _MM_HINT_T0);
    Q6Row r;
    decode_q6(w[b], r, ix);
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    alignas(16) float da[4] = {0, 0, 0, 0};
#pragma GCC unroll 4
    for (int t = 0; t < N; ++t) {
      const BlockQ8_K& a = act[t][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums));
      __m512i s = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(bs), r.nsc);
      for (int z = 0; z < 4; ++z)
        s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(r.v[z], _mm512_loadu_si512(a.qs + 64 * z)), r.s[z]);
      acc[t] = s;
      da[t] = a.d;
    }
    const __m128 isum = _mm_cvtepi32_ps(hsum4_epi32(acc));
    // (d * da) * sum, then added: the reference's rounding steps, token by token in the 4 lanes
    sum = _mm_add_ps(sum, _mm_mul_ps(_mm_mul_ps(_mm_set1_ps(r.d), _mm_load_ps(da)), isum));
  }
  alignas(16) float out[4];
  _mm_store_ps(out, sum);
  for (int t = 0; t < N; ++t) y[t * ys] = out[t];
}

void gemm_q6(int64_t n, const void* vw, size_t rs, int64_t nrows, const void* va, size_t ars, int64_t ntok, float* y,
             int64_t ys) {
  const int64_t nsb = n / QK_K;
  const uint8_t* w = static_cast<const uint8_t*>(vw);
  const uint8_t* a = static_cast<const uint8_t*>(va);
  if (ntok == 1) {  // one activation row: nothing to amortize the decode over
    for (int64_t r = 0; r < nrows; ++r) y[r] = vec_dot_q6_k_avx2(n, w + r * rs, va);
    return;
  }
  static const Q6ScaleIdx ix;
  for (int64_t t0 = 0; t0 < ntok; t0 += 4) {
    const int nt = static_cast<int>(std::min<int64_t>(4, ntok - t0));
    const BlockQ8_K* act[4];
    for (int t = 0; t < nt; ++t) act[t] = reinterpret_cast<const BlockQ8_K*>(a + (t0 + t) * ars);
    for (int64_t r = 0; r < nrows; ++r) {
      const BlockQ6_K* wr = reinterpret_cast<const BlockQ6_K*>(w + r * rs);
      float* yr = y + t0 * ys + r;
      switch (nt) {
        case 4:
          tile_q6<4>(nsb, wr, act, yr, ys, ix);
          break;
        case 3:
          tile_q6<3>(nsb, wr, act, yr, ys, ix);
          break;
        case 2:
          tile_q6<2>(nsb, wr, act, yr, ys, ix);
          break;
        default:
          tile_q6<1>(nsb, wr, act, yr, ys, ix);
          break;
      }
    }
  }
}

}  // namespace

void gemm_q4_k_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                      float* y, int64_t ys) {
  gemm<Q4KW>(n, w, rs, nrows, a, ars, ntok, y, ys);
}
void gemm_q5_k_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                      float* y, int64_t ys) {
  gemm<Q5KW>(n, w, rs, nrows, a, ars, ntok, y, ys);
}
void gemm_q6_k_avx512(int64_t n, const void* w, size_t rs, int64_t nrows, const void* a, size_t ars, int64_t ntok,
                      float* y, int64_t ys) {
  gemm_q6(n, w, rs, nrows, a, ars, ntok, y, ys);
}

}  // namespace dsv4
#endif  // DSV4_X86
