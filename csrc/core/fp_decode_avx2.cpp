// AVX2 decoders for E4M3 / E8M0 / E2M1 (see fp_decode.h).  Compiled with -mavx2 only in this file and
// reached only through the run-time dispatch.  Bit-identical to the *_ref kernels (tested on all codes).
#include <immintrin.h>

#include <algorithm>

#include "core/fp_decode.h"

namespace dsv4 {
namespace {

// 8 E4M3 codes (zero-extended to 32 bits) -> 8 floats, by assembling the IEEE bits directly.
inline __m256 e4m3x8(__m256i x) {
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x80)), 24);
  const __m256i e = _mm256_and_si256(_mm256_srli_epi32(x, 3), _mm256_set1_epi32(0xF));
  const __m256i m = _mm256_and_si256(x, _mm256_set1_epi32(0x7));
  // normal: exponent e-7 rebased to 127, 3 mantissa bits at the top of the 23-bit field
  const __m256i normal =
      _mm256_or_si256(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(120)), 23), _mm256_slli_epi32(m, 20));
  // subnormal: m * 2^-9, exact in float32
  const __m256i sub = _mm256_castps_si256(_mm256_mul_ps(_mm256_cvtepi32_ps(m), _mm256_set1_ps(1.0f / 512.0f)));
  const __m256i is_sub = _mm256_cmpeq_epi32(e, _mm256_setzero_si256());
  __m256i mag = _mm256_blendv_epi8(normal, sub, is_sub);
  const __m256i is_nan = _mm256_cmpeq_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7F)), _mm256_set1_epi32(0x7F));
  mag = _mm256_blendv_epi8(mag, _mm256_set1_epi32(0x7FC00000), is_nan);
  return _mm256_castsi256_ps(_mm256_or_si256(mag, sign));
}

inline __m256 e8m0x8(__m256i x) {
  __m256i bits = _mm256_slli_epi32(x, 23);
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x00400000), _mm256_cmpeq_epi32(x, _mm256_setzero_si256()));
  bits = _mm256_blendv_epi8(bits, _mm256_set1_epi32(0x7FC00000), _mm256_cmpeq_epi32(x, _mm256_set1_epi32(0xFF)));
  return _mm256_castsi256_ps(bits);
}

inline __m256i load8_u8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// 8 E2M1 codes (one per 32-bit lane, 0..15) -> floats: magnitude by permute, sign from bit 3.
inline __m256 e2m1x8(__m256i idx) {
  const __m256 mag_table = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256 mag = _mm256_permutevar8x32_ps(mag_table, idx);  // uses idx & 7
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(idx, _mm256_set1_epi32(8)), 28);
  return _mm256_or_ps(mag, _mm256_castsi256_ps(sign));
}

// 16 packed bytes -> 32 nibble codes in element order (low nibble first), as two 16-byte vectors.
inline void unpack_nibbles(const uint8_t* p, __m128i* first, __m128i* second) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(b, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
  *first = _mm_unpacklo_epi8(lo, hi);
  *second = _mm_unpackhi_epi8(lo, hi);
}

inline void store32_e2m1(const uint8_t* p, float* out, __m256 scale) {
  __m128i a, b;
  unpack_nibbles(p, &a, &b);
  _mm256_storeu_ps(out + 0, _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(a)), scale));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8))), scale));
  _mm256_storeu_ps(out + 16, _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(b)), scale));
  _mm256_storeu_ps(out + 24, _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8))), scale));
}

}  // namespace

void decode_e4m3_avx2(const uint8_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e4m3x8(load8_u8(in + i)));
  for (; i < n; ++i) out[i] = e4m3_to_f32(in[i]);
}

void decode_e8m0_avx2(const uint8_t* in, float* out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, e8m0x8(load8_u8(in + i)));
  for (; i < n; ++i) out[i] = e8m0_to_f32(in[i]);
}

void decode_e2m1_avx2(const uint8_t* in, float* out, size_t n_bytes) {
  size_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 16 <= n_bytes; i += 16) store32_e2m1(in + i, out + 2 * i, one);
  for (; i < n_bytes; ++i) {
    out[2 * i] = kE2M1[in[i] & 0xF];
    out[2 * i + 1] = kE2M1[in[i] >> 4];
  }
}

void dequant_fp8_rows_avx2(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1) {
  const int64_t sc = (cols + 127) / 128;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* srow = scale + (r / 128) * sc;
    const uint8_t* wr = w + r * cols;
    float* orow = out + r * cols;
    for (int64_t cb = 0; cb < sc; ++cb) {
      const float s = e8m0_to_f32(srow[cb]);
      const __m256 vs = _mm256_set1_ps(s);
      const int64_t c1 = std::min<int64_t>(cols, (cb + 1) * 128);
      int64_t c = cb * 128;
      for (; c + 8 <= c1; c += 8) _mm256_storeu_ps(orow + c, _mm256_mul_ps(e4m3x8(load8_u8(wr + c)), vs));
      for (; c < c1; ++c) orow[c] = e4m3_to_f32(wr[c]) * s;
    }
  }
}

void dequant_fp4_rows_avx2(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1) {
  const int64_t half = cols / 2, ns = cols / 32;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t g = 0; g < ns; ++g)
      store32_e2m1(w + r * half + g * 16, out + r * cols + g * 32, _mm256_set1_ps(e8m0_to_f32(scale[r * ns + g])));
  }
}

}  // namespace dsv4
