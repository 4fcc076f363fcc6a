// AVX2 helpers shared by the quant/*_avx2.cpp files (include only from -mavx2 translation units).
// Internal linkage throughout, so no AVX2 code can be merged into the reference translation units.
#pragma once
#if defined(DSV4_X86)
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "quant/iquant_common.h"
#include "quant/tables.h"

namespace dsv4 {
namespace {

inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}
// (no namespace-scope __m256 constants: their dynamic initialisers would run AVX code at load time)
inline __m256 abs_mask_ps() { return _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)); }
inline __m256 abs_ps(__m256 v) { return _mm256_and_ps(v, abs_mask_ps()); }

// Max |x| over 8k floats, and the index of the first element reaching it.
inline float block_amax(const float* x, int n) {
  __m256 m = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(x + j)));
  return hmax_ps(m);
}
inline int first_abs_equal(const float* x, int n, float amax) {
  const __m256 a = _mm256_set1_ps(amax);
  for (int j = 0; j < n; j += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + j)), a, _CMP_EQ_OQ));
    if (mask) return j + __builtin_ctz(static_cast<unsigned>(mask));
  }
  return 0;
}

// roundf (half away from zero), exact: trunc, then step by sign when |frac| >= 0.5.
inline __m256 roundf_ps(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = abs_ps(_mm256_sub_ps(v, t));
  const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.f), _mm256_andnot_ps(abs_mask_ps(), v));
  return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
}
// ggml's nearest_int on 8 lanes.
inline __m256i nearest_int_ps(__m256 v) {
  const __m256i b = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12582912.f)));
  return _mm256_sub_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}
// 4 x 8 int32 (values in int8 range) -> 32 int8 in order.
inline __m256i pack_i32x32_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
// signed int8 dot: 32 products summed pairwise into 16 int16 then into 8 int32.
inline __m256i dot_i8(__m256i w, __m256i a) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
inline __m256i load_nibbles(const uint8_t* q16) {  // 16 bytes -> 32 bytes: low nibbles then high
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q16));
  const __m256i both = _mm256_set_m128i(_mm_srli_epi16(v, 4), v);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

inline __m256i mxfp4_values(const uint8_t* qs) {
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesMXFP4)));
  return _mm256_shuffle_epi8(table, load_nibbles(qs));
}

// kq::best_neighbour (IQ2_XXS, IQ3_XXS/IQ3_S off-grid points) 8 candidates at a time, one per lane: each
// lane sums its kDim weighted squared differences in the scalar order and the lanes are taken in candidate
// order with a strict less, so the first minimum wins as in the scalar scan.  coord: the grid's odd values
// as floats, coordinate-major (coordinate i of point k at coord[i * stride + k]), for the gathers.
template <int kDim, class G>
int best_neighbour_avx2(const uint16_t* nb, const float* coord, int stride, const G* grid_odd, const float* xval,
                        const float* weight, float scale, int8_t* L, const char* type) {
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  const __m256 vs = _mm256_set1_ps(scale);
  for (int j0 = 0; j0 < count; j0 += 8) {
    alignas(32) int32_t ix[8];
    for (int k = 0; k < 8; ++k) ix[k] = nb[1 + std::min(j0 + k, count - 1)];
    const __m256i vix = _mm256_load_si256(reinterpret_cast<const __m256i*>(ix));
    __m256 d2 = _mm256_setzero_ps();
    for (int i = 0; i < kDim; ++i) {
      const __m256 q = _mm256_i32gather_ps(coord + static_cast<size_t>(i) * stride, vix, 4);
      const __m256 diff = _mm256_sub_ps(_mm256_mul_ps(vs, q), _mm256_set1_ps(xval[i]));
      d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(weight[i]), diff), diff));
    }
    alignas(32) float dv[8];
    _mm256_store_ps(dv, d2);
    for (int k = 0; k < 8 && j0 + k < count; ++k) {
      if (dv[k] < best_d2) {
        best_d2 = dv[k];
        best = ix[k];
      }
    }
  }
  if (best < 0) throw std::runtime_error(std::string(type) + ": no grid neighbour found (non-finite input?)");
  kq::grid_levels<kDim>(grid_odd[best], L);
  return best;
}
}  // namespace

}  // namespace dsv4
#endif  // DSV4_X86
