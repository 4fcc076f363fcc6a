// AVX-512 f32 dot products (compiled with the AVX-512 flags only; dispatched at run time from linear.cpp):
// f32 . f32 and BF16 weight rows . f32.  Each 512-bit accumulator holds two of dot_avx2.cpp's four
// 8-lane accumulators side by side ([s0|s1] over elements i..i+15, [s2|s3] over i+16..i+31), so every
// lane sees the same FMAs in the same order, and the tails and the final tree are dot_avx2.cpp's: the
// results equal dot_f32_avx2 / dot_bf16_f32_avx2 bit for bit, with half the instructions per element.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dsv4 {

namespace {

// dot_avx2.cpp's tails and final tree after the 32-element steps ([s0|s1] = s01, [s2|s3] = s23, i elements done).
template <class Load8, class Load1>
inline float finish(__m512 s01, __m512 s23, int64_t i, Load8 load8, Load1 one, const float* b, int64_t n) {
  __m256 s0 = _mm512_castps512_ps256(s01), s1 = _mm512_extractf32x8_ps(s01, 1);
  const __m256 s2 = _mm512_castps512_ps256(s23), s3 = _mm512_extractf32x8_ps(s23, 1);
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load8(i), _mm256_loadu_ps(b + i), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float r = _mm_cvtss_f32(h);
  // tail: product then sum, never fused (the ss builtins are not contracted)
  for (; i < n; ++i) r = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(r), _mm_mul_ss(_mm_set_ss(one(i)), _mm_set_ss(b[i]))));
  return r;
}

template <class Load16, class Load8, class Load1>
inline float dot_impl(Load16 load16, Load8 load8, Load1 one, const float* b, int64_t n, const void* prefetch_base,
                      size_t elem) {
  __m512 s01 = _mm512_setzero_ps(), s23 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (prefetch_base) {  // weight rows stream from DRAM: keep 4 KB in flight ahead of the loads, into L2
      // (T2: measured 5-15 % faster on the BF16 output head than T0 here, the same distance)
      const char* p = static_cast<const char*>(prefetch_base) + static_cast<size_t>(i) * elem + 4096;
      for (size_t o = 0; o < 32 * elem; o += 64) _mm_prefetch(p + o, _MM_HINT_T2);
    }
    s01 = _mm512_fmadd_ps(load16(i), _mm512_loadu_ps(b + i), s01);
    s23 = _mm512_fmadd_ps(load16(i + 16), _mm512_loadu_ps(b + i + 16), s23);
  }
  return finish(s01, s23, i, load8, one, b, n);
}

inline __m256 bf16x8(const uint16_t* a) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))), 16));
}
inline float bf16x1(const uint16_t* a) {
  const uint32_t u = static_cast<uint32_t>(*a) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The unpacking BF16 kernels: one 64-byte load of 32 weights, vpunpck{l,h}wd against zero make two f32 vectors
// (two instructions instead of two widening loads and two shifts).  Their lanes hold, per 128-bit quarter q,
// the elements 8q..8q+3 (low) and 8q+4..8q+7 (high), so the activation is read in that order (bf16_act_order,
// once per product) and the two accumulators are put back into the [s0|s1], [s2|s3] layout before the tails:
// every lane sums the same products in the same order as dot_impl's, the same bits.
inline void bf16_unpack(const uint16_t* a, __m512& lo, __m512& hi) {
  const __m512i v = _mm512_loadu_si512(a), z = _mm512_setzero_si512();
  lo = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v));
  hi = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v));
}
inline void bf16_regroup(__m512 lo, __m512 hi, __m512& s01, __m512& s23) {
  const __m512i i01 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i i23 = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  s01 = _mm512_permutex2var_ps(lo, i01, hi);
  s23 = _mm512_permutex2var_ps(lo, i23, hi);
}

}  // namespace

float dot_f32_avx512(const float* a, const float* b, int64_t n) {
  return dot_impl([a](int64_t i) { return _mm512_loadu_ps(a + i); }, [a](int64_t i) { return _mm256_loadu_ps(a + i); },
                  [a](int64_t i) { return a[i]; }, b, n, nullptr, 4);
}

float dot_bf16_f32_avx512(const uint16_t* a, const float* b, int64_t n) {
  return dot_impl(
      [a](int64_t i) {
        const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      },
      [a](int64_t i) {
        const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      },
      [a](int64_t i) {
        const uint32_t u = static_cast<uint32_t>(a[i]) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return f;
      },
      b, n, a, 2);
}

void bf16_act_order(const float* b, int64_t n, float* bp) {
  for (int64_t i = 0; i + 32 <= n; i += 32)
    for (int q = 0; q < 4; ++q)
      for (int k = 0; k < 4; ++k) {
        bp[i + 4 * q + k] = b[i + 8 * q + k];
        bp[i + 16 + 4 * q + k] = b[i + 8 * q + 4 + k];
      }
}

namespace {
template <int NT>
void bf16p(const uint16_t* a, const float* const* b, const float* const* bp, int64_t n, float* out) {
  __m512 lo[NT], hi[NT];
  for (int t = 0; t < NT; ++t) lo[t] = hi[t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(a + i) + 4096, _MM_HINT_T2);  // as dot_impl: 4 KB ahead, into L2
    __m512 wl, wh;
    bf16_unpack(a + i, wl, wh);
    for (int t = 0; t < NT; ++t) {
      lo[t] = _mm512_fmadd_ps(wl, _mm512_loadu_ps(bp[t] + i), lo[t]);
      hi[t] = _mm512_fmadd_ps(wh, _mm512_loadu_ps(bp[t] + i + 16), hi[t]);
    }
  }
  for (int t = 0; t < NT; ++t) {
    __m512 s01, s23;
    bf16_regroup(lo[t], hi[t], s01, s23);
    out[t] = finish(
        s01, s23, i, [a](int64_t j) { return bf16x8(a + j); }, [a](int64_t j) { return bf16x1(a + j); }, b[t], n);
  }
}
}  // namespace

// out[t] = dot_bf16_f32_avx512(a, b[t], n) for t < nt (1..4), bit for bit; bp[t]: b[t] in bf16_act_order.
void dot_bf16p_f32_avx512(const uint16_t* a, const float* const* b, const float* const* bp, int nt, int64_t n,
                          float* out) {
  switch (nt) {
    case 1:
      return bf16p<1>(a, b, bp, n, out);
    case 2:
      return bf16p<2>(a, b, bp, n, out);
    case 3:
      return bf16p<3>(a, b, bp, n, out);
    default:
      return bf16p<4>(a, b, bp, n, out);
  }
}

namespace {
// Four rows (a + g * rs, g < 4) against NT tokens: per (row, token) the accumulators, unpacking and
// order of bf16p, so the same bits.  The activation vectors are loaded once per 32 columns for all four rows,
// and the next four rows (at a + 4 * rs: a tensor's rows are contiguous) are prefetched as one sequential
// stream, 256 bytes per step, while these are computed.  Why: a row at a time with its own prefetch 4 KB
// ahead made two tokens cost 1.3-1.5x one on the 129280 x 4096 BF16 head (two tokens' activations, 32 KB, are
// L1's size and were reloaded for every row; with both tokens the same vector, 16 KB, two cost what one did).
// Measured there, 2 threads of an AMD EPYC VM: two tokens 40-44 -> 27-34 ms, one token 26-35 -> 19-33 ms;
// in the runtime (flash-slice), a 2-token verify step 1.22-1.38x a decode step -> 1.17x.  Three or four
// tokens were no faster this way (the prefill path keeps bf16p).
template <int NT>
void bf16p4(const uint16_t* a, int64_t rs, const float* const* b, const float* const* bp, int64_t n, float* out) {
  __m512 lo[4][NT], hi[4][NT];
  for (int g = 0; g < 4; ++g)
    for (int t = 0; t < NT; ++t) lo[g][t] = hi[g][t] = _mm512_setzero_ps();
  const char* next = reinterpret_cast<const char*>(a + 4 * rs);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const char* nx = next + i * 8;  // 4 rows x 64 bytes of the next group per 32 columns
    for (int g = 0; g < 4; ++g) _mm_prefetch(nx + 64 * g, _MM_HINT_T2);
    __m512 xl[NT], xh[NT];
    for (int t = 0; t < NT; ++t) xl[t] = _mm512_loadu_ps(bp[t] + i), xh[t] = _mm512_loadu_ps(bp[t] + i + 16);
    for (int g = 0; g < 4; ++g) {
      __m512 wl, wh;
      bf16_unpack(a + g * rs + i, wl, wh);
      for (int t = 0; t < NT; ++t) {
        lo[g][t] = _mm512_fmadd_ps(wl, xl[t], lo[g][t]);
        hi[g][t] = _mm512_fmadd_ps(wh, xh[t], hi[g][t]);
      }
    }
  }
  for (int g = 0; g < 4; ++g) {
    const uint16_t* ag = a + g * rs;
    for (int t = 0; t < NT; ++t) {
      __m512 s01, s23;
      bf16_regroup(lo[g][t], hi[g][t], s01, s23);
      out[t * 4 + g] = finish(
          s01, s23, i, [ag](int64_t j) { return bf16x8(ag + j); }, [ag](int64_t j) { return bf16x1(ag + j); }, b[t], n);
    }
  }
}
}  // namespace

// out[t * 4 + g] = dot_bf16_f32_avx512(a + g * rs, b[t], n) for g < 4 and t < nt (1 or 2), bit for bit; bp[t]:
// b[t] in bf16_act_order.
void dot_bf16p4_f32_avx512(const uint16_t* a, int64_t rs, const float* const* b, const float* const* bp, int nt,
                           int64_t n, float* out) {
  if (nt == 1) return bf16p4<1>(a, rs, b, bp, n, out);
  return bf16p4<2>(a, rs, b, bp, n, out);
}

void axpy_f32_avx512(float* y, float a, const float* x, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(av, _mm512_loadu_ps(x + i))));
  for (; i < n; ++i) y[i] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(y[i]), _mm_mul_ss(_mm_set_ss(a), _mm_set_ss(x[i]))));
}

}  // namespace dsv4
