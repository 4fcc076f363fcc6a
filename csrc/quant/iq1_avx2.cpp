// AVX2 dot products of IQ1_S and IQ1_M with Q8_K.  Each group of 8 weights becomes the int8 vector
// 8*grid + shift (shift = +-1, the 0.125 offset scaled by 8), so one maddubs/madd pass gives exactly the
// reference's integer 8*sum + shift_sum; the float part is the reference's one expression per
// super-block, so results equal the _ref dots bit for bit.  No SIMD quantizer (see iq1_ref.cpp).
#if defined(DSV4_X86)
#include <immintrin.h>

#include <cstring>

#include "quant/iq1_tables.h"
#include "quant/kernels.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

namespace {

inline float f16(uint16_t h) { return _cvtsh_ss(h); }  // F16C, exact like fp16_to_f32

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
