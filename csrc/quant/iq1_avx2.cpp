// AVX2 kernels of IQ1_S and IQ1_M.  The IQ1_S quantizer (iq1_impl.h) with its split search 8 second
// boundaries at a time: every candidate's sums are the reference's operations, lane by lane, and a step
// whose candidates all fail the reference's test against the current best is skipped; otherwise its
// candidates are taken one by one in the reference's order, so the choice is the reference's.  The dot
// products with Q8_K: each group of 8 weights becomes the int8 vector 8*grid + shift (shift = +-1, the
// 0.125 offset scaled by 8), so one maddubs/madd pass gives exactly the reference's integer 8*sum +
// shift_sum; the float part is the reference's one expression per super-block (bit for bit).  IQ1_M
// quantizes with the reference.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <cstring>

#include "quant/iq1_impl.h"
#include "quant/iq1_tables.h"
#include "quant/kernels.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

namespace {

inline float f16(uint16_t h) { return _cvtsh_ss(h); }  // F16C, exact like fp16_to_f32

struct Iq1sSplitAvx2 {
  static void split(const float* sumx, const float* sumw, const float* x_p, const float* x_m, float* scale, int* besti1,
                    int* besti2, int* best_shift) {
    constexpr int kBs = 32;
    float best_score = -FLT_MAX;
    const __m256 p0 = _mm256_set1_ps(x_p[0]), p1 = _mm256_set1_ps(x_p[1]), p2 = _mm256_set1_ps(x_p[2]);
    const __m256 m0 = _mm256_set1_ps(x_m[0]), m1 = _mm256_set1_ps(x_m[1]), m2 = _mm256_set1_ps(x_m[2]);
    const __m256 zero = _mm256_setzero_ps(), sxn = _mm256_set1_ps(sumx[kBs]), swn = _mm256_set1_ps(sumw[kBs]);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    // (a*b + c*d) + e*f and ((a*b)*b + (c*d)*d) + (e*f)*f: the reference's expressions, left to right
    auto qx = [](__m256 s0, __m256 s1, __m256 s2, __m256 a, __m256 b, __m256 c) {
      return _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(s0, a), _mm256_mul_ps(s1, b)), _mm256_mul_ps(s2, c));
    };
    auto q2 = [](__m256 w0, __m256 w1, __m256 w2, __m256 a, __m256 b, __m256 c) {
      return _mm256_add_ps(
          _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(w0, a), a), _mm256_mul_ps(_mm256_mul_ps(w1, b), b)),
          _mm256_mul_ps(_mm256_mul_ps(w2, c), c));
    };
    for (int i1 = 0; i1 <= kBs; ++i1) {
      const __m256 s0 = _mm256_set1_ps(sumx[i1] - sumx[0]), w0 = _mm256_set1_ps(sumw[i1] - sumw[0]);
      const __m256 sx1 = _mm256_set1_ps(sumx[i1]), sw1 = _mm256_set1_ps(sumw[i1]);
      for (int j0 = i1; j0 <= kBs; j0 += 8) {
        const __m256 sx2 = _mm256_loadu_ps(sumx + j0), sw2 = _mm256_loadu_ps(sumw + j0);
        const __m256 s1 = _mm256_sub_ps(sx2, sx1), s2 = _mm256_sub_ps(sxn, sx2);
        const __m256 w1 = _mm256_sub_ps(sw2, sw1), w2 = _mm256_sub_ps(swn, sw2);
        const __m256 qxp = qx(s0, s1, s2, p0, p1, p2), q2p = q2(w0, w1, w2, p0, p1, p2);
        const __m256 qxm = qx(s0, s1, s2, m0, m1, m2), q2m = q2(w0, w1, w2, m0, m1, m2);
        const __m256 bs = _mm256_set1_ps(best_score);
        const __m256 okp = _mm256_and_ps(_mm256_cmp_ps(q2p, zero, _CMP_GT_OQ),
                                         _mm256_cmp_ps(_mm256_mul_ps(qxp, qxp), _mm256_mul_ps(bs, q2p), _CMP_GT_OQ));
        const __m256 okm = _mm256_and_ps(_mm256_cmp_ps(q2m, zero, _CMP_GT_OQ),
                                         _mm256_cmp_ps(_mm256_mul_ps(qxm, qxm), _mm256_mul_ps(bs, q2m), _CMP_GT_OQ));
        const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(kBs + 1 - j0), lane);
        if (!_mm256_movemask_ps(_mm256_and_ps(_mm256_or_ps(okp, okm), _mm256_castsi256_ps(valid)))) continue;
        alignas(32) float a[4][8];
        _mm256_store_ps(a[0], qxp);
        _mm256_store_ps(a[1], q2p);
        _mm256_store_ps(a[2], qxm);
        _mm256_store_ps(a[3], q2m);
        for (int l = 0; l < 8 && j0 + l <= kBs; ++l) {
          for (int sgn = 0; sgn < 2; ++sgn) {
            const float sumqx = a[2 * sgn][l], sumq2 = a[2 * sgn + 1][l];
            if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
              *scale = sumqx / sumq2;
              best_score = *scale * sumqx;
              *besti1 = i1;
              *besti2 = j0 + l;
              *best_shift = sgn ? -1 : 1;
            }
          }
        }
      }
    }
  }
};

constexpr int64_t kPlus = 0x0101010101010101LL;  // 8 bytes of +1
constexpr int64_t kMinus = -1;                   // 8 bytes of -1

// sum over 16 int16 pairs of (w . a) * scale, where w = 8*grid + shift (|w| <= 9: no int16 saturation,
// |a| <= 127 by Q8_K's construction) as 8 int32 lanes.
inline __m256i scaled_dot(__m256i g, __m256i shift, __m256i a, __m256i scale16) {
  const __m256i w = _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), shift);
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p, scale16);
}

}  // namespace

void quantize_row_iq1_s_avx2(const float* x, void* vy, int64_t n, const float* qw) {
  if (!qw) throw std::invalid_argument("IQ1_S quantization requires importance weights (imatrix)");
  const Iq1sTables& t = iq1s_tables();
  BlockIQ1_S* y = static_cast<BlockIQ1_S*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b)
    iq1::quantize_block_iq1_s<Iq1sSplitAvx2>(x + QK_K * b, qw + QK_K * b, y + b, t);
}

float vec_dot_iq1_s_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ1_S* w = static_cast<const BlockIQ1_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const uint64_t* grid = iq1s_tables().grid_values;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    const uint8_t* qs = w[b].qs;
    for (int ib = 0; ib < 8; ++ib, qs += 4) {
      const uint32_t qh = w[b].qh[ib];
      const __m256i g = _mm256_setr_epi64x(static_cast<int64_t>(grid[qs[0] | ((qh << 8) & 0x700)]),
                                           static_cast<int64_t>(grid[qs[1] | ((qh << 5) & 0x700)]),
                                           static_cast<int64_t>(grid[qs[2] | ((qh << 2) & 0x700)]),
                                           static_cast<int64_t>(grid[qs[3] | ((qh >> 1) & 0x700)]));
      const __m256i shift = _mm256_set1_epi64x(qh & 0x8000 ? kMinus : kPlus);
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const __m256i ls = _mm256_set1_epi16(static_cast<int16_t>(2 * ((qh >> 12) & 7) + 1));
      acc = _mm256_add_epi32(acc, scaled_dot(g, shift, av, ls));
    }
    sum += ((f16(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}

float vec_dot_iq1_m_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ1_M* w = static_cast<const BlockIQ1_M*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const uint64_t* grid = iq1s_tables().grid_values;
  // 64-bit lane j of set1(sc) >> (0, 6, 3, 9)[j], & 7, as int16: the low 128 bits hold the scales of halves
  // 0,4,8,12 | 2,6,10,14, the high ones 1,5,9,13 | 3,7,11,15, so sub-block ib's two halves sit at the same
  // int16 position (ib & 1) * 4 + ib / 2 of the two 128-bit lanes (as ggml's AVX2 kernel lays them out).
  const __m256i scale_shift = _mm256_setr_epi64x(0, 6, 3, 9);
  // bit of the shift sign of group l (of 4) in the u16 of a sub-block's two qh bytes, one per 64-bit lane
  const __m256i shift_bit = _mm256_setr_epi64x(0x0008000800080008LL, 0x0080008000800080LL, 0x0800080008000800LL,
                                               static_cast<int64_t>(0x8000800080008000ULL));
  const __m256i one8 = _mm256_set1_epi8(1), ones = _mm256_set1_epi32(-1);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    uint16_t sc[4];
    std::memcpy(sc, w[b].scales, sizeof(sc));
    const uint16_t dh =
        static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    int64_t sc64;  // bits 12-15 of each word hold d: masked off by the & 7
    std::memcpy(&sc64, sc, 8);
    __m256i scales = _mm256_srlv_epi64(_mm256_set1_epi64x(sc64), scale_shift);
    scales =
        _mm256_add_epi16(_mm256_slli_epi16(_mm256_and_si256(scales, _mm256_set1_epi16(7)), 1), _mm256_set1_epi16(1));
    // the 32 11-bit grid indices at once: qs byte k | (nibble k of qh, low 3 bits) << 8
    uint16_t idx[32];
    {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qh));
      const __m128i m7 = _mm_set1_epi8(7);
      const __m128i hl = _mm_and_si128(h, m7), hh = _mm_and_si128(_mm_srli_epi16(h, 4), m7);
      const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs));
      const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs + 16));
      const __m128i n0 = _mm_unpacklo_epi8(hl, hh), n1 = _mm_unpackhi_epi8(hl, hh);  // nibble of group k, k order
      _mm_storeu_si128(reinterpret_cast<__m128i*>(idx), _mm_unpacklo_epi8(q0, n0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + 8), _mm_unpackhi_epi8(q0, n0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + 16), _mm_unpacklo_epi8(q1, n1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(idx + 24), _mm_unpackhi_epi8(q1, n1));
    }
    __m256i acc = _mm256_setzero_si256();
    const uint8_t* qh = w[b].qh;
    for (int ib = 0; ib < 8; ++ib, qh += 2) {
      const uint16_t* ix = idx + 4 * ib;
      const __m256i g = _mm256_setr_epi64x(static_cast<int64_t>(grid[ix[0]]), static_cast<int64_t>(grid[ix[1]]),
                                           static_cast<int64_t>(grid[ix[2]]), static_cast<int64_t>(grid[ix[3]]));
      const uint32_t h0 = qh[0], h1 = qh[1];
      // +1 bytes where the group's sign bit is clear, -1 where it is set
      const __m256i clear = _mm256_cmpeq_epi16(
          _mm256_and_si256(_mm256_set1_epi16(static_cast<int16_t>(h0 | (h1 << 8))), shift_bit), _mm256_setzero_si256());
      const __m256i shift = _mm256_or_si256(_mm256_xor_si256(clear, ones), one8);
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const int pos = (ib & 1) * 4 + ib / 2;
      const __m256i ls = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<int16_t>(0x0100 + 0x0202 * pos)));
      acc = _mm256_add_epi32(acc, scaled_dot(g, shift, av, ls));
    }
    sum += ((f16(dh) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}

}  // namespace dsv4
#endif  // DSV4_X86
