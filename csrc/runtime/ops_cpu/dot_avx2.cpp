// AVX2/FMA f32 dot products (compiled with -mavx2 -mfma only; dispatched at run time from linear.cpp):
// f32 . f32, and BF16 weight rows . f32 with the (exact) conversion fused into the loads.  Both run the
// same accumulation code, so the fused dot equals dot_f32_avx2 of the dequantized row bit for bit.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace dsv4 {

namespace {

// load(i): 8 values of the weight row from element i as f32; one(i): element i as f32.
template <class Load8, class Load1>
inline float dot_impl(Load8 load, Load1 one, const float* b, int64_t n, const void* prefetch_base, size_t elem) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (prefetch_base) {  // weight rows stream from DRAM: keep 4 KB in flight ahead of the loads
      const char* p = static_cast<const char*>(prefetch_base) + static_cast<size_t>(i) * elem + 4096;
      for (size_t o = 0; o < 32 * elem; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
    }
    s0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(load(i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(load(i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(load(i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(load(i), _mm256_loadu_ps(b + i), s0);
  __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  float r = _mm_cvtss_f32(h);
  // tail: product then sum, never fused (the ss builtins are not contracted), whatever the caller's row type
  for (; i < n; ++i) r = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(r), _mm_mul_ss(_mm_set_ss(one(i)), _mm_set_ss(b[i]))));
  return r;
}

}  // namespace

float dot_f32_avx2(const float* a, const float* b, int64_t n) {
  return dot_impl([a](int64_t i) { return _mm256_loadu_ps(a + i); }, [a](int64_t i) { return a[i]; }, b, n, nullptr, 4);
}

float dot_bf16_f32_avx2(const uint16_t* a, const float* b, int64_t n) {
  return dot_impl(
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

void axpy_f32_avx2(float* y, float a, const float* x, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, _mm256_loadu_ps(x + i))));
  for (; i < n; ++i) y[i] = _mm_cvtss_f32(_mm_add_ss(_mm_set_ss(y[i]), _mm_mul_ss(_mm_set_ss(a), _mm_set_ss(x[i]))));
}

}  // namespace dsv4
