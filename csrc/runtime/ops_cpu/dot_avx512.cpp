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

// out[t] = dot_bf16_f32_avx512(a, b[t], n) for t < nt (1..4), bit for bit: every token keeps its own two
// accumulators, the same FMAs in the same order, the same tail and tree; the weight row is loaded and
// converted once for all of them (the BF16 head of a multi-token verify step or prefill chunk).
void dot_bf16_f32_avx512_x4(const uint16_t* a, const float* const* b, int nt, int64_t n, float* out) {
  __m512 s01[4], s23[4];
  for (int t = 0; t < 4; ++t) s01[t] = s23[t] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const char* p = reinterpret_cast<const char*>(a + i) + 4096;
    _mm_prefetch(p, _MM_HINT_T2);  // as dot_impl: 4 KB ahead, into L2
    const __m512 w0 = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i))), 16));
    const __m512 w1 = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 16))), 16));
    for (int t = 0; t < nt; ++t) {
      s01[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b[t] + i), s01[t]);
      s23[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b[t] + i + 16), s23[t]);
    }
  }
  for (int t = 0; t < nt; ++t) {
    int64_t j = i;
    __m256 s0 = _mm512_castps512_ps256(s01[t]), s1 = _mm512_extractf32x8_ps(s01[t], 1);
    const __m256 s2 = _mm512_castps512_ps256(s23[t]), s3 = _mm512_extractf32x8_ps(s23[t], 1);
    for (; j + 8 <= n; j += 8) {
      const __m256 w = _mm256_castsi256_ps(
          _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + j))), 16));
      s0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(b[t] + j), s0);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; j < n; ++j) {
      const uint32_t u = static_cast<uint32_t>(a[j]) << 16;
      float f;
      std::memcpy(&f, &u, 4);
      r = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(r), _mm_mul_ss(_mm_set_ss(f), _mm_set_ss(b[t][j]))));
    }
    out[t] = r;
  }
}

void axpy_f32_avx512(float* y, float a, const float* x, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(av, _mm512_loadu_ps(x + i))));
  for (; i < n; ++i) y[i] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(y[i]), _mm_mul_ss(_mm_set_ss(a), _mm_set_ss(x[i]))));
}

}  // namespace dsv4
