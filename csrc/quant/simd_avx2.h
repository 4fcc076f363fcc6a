// AVX2 helpers shared by the quant/*_avx2.cpp files (include only from -mavx2 translation units).
// Internal linkage throughout, so no AVX2 code can be merged into the reference translation units.
#pragma once
#if defined(DSV4_X86)
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
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

// kq::best_neighbour (IQ2_XXS, IQ3_XXS/IQ3_S off-grid points) 8 candidates at a time, one per lane, from
// the candidates' grid words stored beside the list (grid_neighbours.h neighbour_words: lo = bytes 0-3, hi =
// bytes 4-7 for kDim 8): one contiguous load per word (gathering each coordinate from the grid measured
// 1.3-1.5x slower), and the lanes' minimum taken in the vector.  Per lane the sums are the
// scalar scan's; lanes past the list are +inf; a chunk's minimum replaces the best only when strictly less,
// and then its first lane wins: the candidate a sequential scan with a strict less would keep.  Split in two
// (neighbour_chunk: the first 8 candidates' distances, no branches; finish_neighbour: the choice, the rest of
// a longer list, the levels) so that callers with several searches can overlap their first halves.
struct NeighbourChunk {
  __m256 d2;
};

// d2 with the lanes from `left` on (candidates past the list) set to +inf.
inline __m256 past_list_inf(__m256 d2, int left) {
  const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_blendv_ps(_mm256_set1_ps(INFINITY), d2, _mm256_castsi256_ps(valid));
}

// One step of the sequential first-minimum scan over 8 candidates (nb[1 + j0 + lane]): when the lanes' minimum
// is strictly below best_d2 it becomes the best, with its first lane's candidate.
inline void take_first_min(__m256 d2, const uint16_t* nb, int j0, float* best_d2, int* best) {
  __m256 m = _mm256_min_ps(d2, _mm256_permute2f128_ps(d2, d2, 1));
  m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0x4e));
  m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, 0xb1));
  const float mv = _mm256_cvtss_f32(m);
  if (mv < *best_d2) {
    const int k = __builtin_ctz(static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(d2, m, _CMP_EQ_OQ))));
    *best_d2 = mv;
    *best = nb[1 + j0 + k];
  }
}

template <int kDim>
inline __m256 neighbour_d2(const uint32_t* lo, const uint32_t* hi, int j0, int count, const float* xval,
                           const float* weight, __m256 vs) {
  static_assert(kDim == 4 || kDim == 8, "grid words hold 4 coordinates");
  const __m256i byte = _mm256_set1_epi32(0xff);
  __m256i g[2];
  g[0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + j0));
  g[1] = kDim == 8 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + j0)) : g[0];
  __m256 d2 = _mm256_setzero_ps();
  for (int i = 0; i < kDim; ++i) {
    const __m256i c = _mm256_and_si256(_mm256_srli_epi32(g[i / 4], 8 * (i % 4)), byte);
    const __m256 diff = _mm256_sub_ps(_mm256_mul_ps(vs, _mm256_cvtepi32_ps(c)), _mm256_set1_ps(xval[i]));
    d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(weight[i]), diff), diff));
  }
  return past_list_inf(d2, count - j0);
}

template <int kDim>
inline NeighbourChunk neighbour_chunk(const uint16_t* nb, const uint32_t* lo, const uint32_t* hi, const float* xval,
                                      const float* weight, float scale) {
  return {neighbour_d2<kDim>(lo, hi, 0, nb[0], xval, weight, _mm256_set1_ps(scale))};
}

template <int kDim, class G>
int finish_neighbour(const NeighbourChunk& c, const uint16_t* nb, const uint32_t* lo, const uint32_t* hi,
                     const G* grid_odd, const float* xval, const float* weight, float scale, int8_t* L,
                     const char* type) {
  const int count = nb[0];
  float best_d2 = FLT_MAX;
  int best = -1;
  __m256 d2 = c.d2;
  for (int j0 = 0; j0 < count; j0 += 8) {
    if (j0) d2 = neighbour_d2<kDim>(lo, hi, j0, count, xval, weight, _mm256_set1_ps(scale));
    take_first_min(d2, nb, j0, &best_d2, &best);
  }
  if (best < 0) throw std::runtime_error(std::string(type) + ": no grid neighbour found (non-finite input?)");
  kq::grid_levels<kDim>(grid_odd[best], L);
  return best;
}

// kq::trial_sums_scalar with 8 trials per vector, one per lane, each lane summing in the scalar order.
inline void trial_sums_avx2(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                            float* sumq2) {
  for (int t0 = 0; t0 < ntrials; t0 += 8) {
    alignas(32) int32_t q[32][8];
    for (int k = 0; k < 8; ++k) {
      const int8_t* l = L[std::min(t0 + k, ntrials - 1)];
      for (int i = 0; i < 32; ++i) q[i][k] = 2 * l[i] + 1;
    }
    __m256 sqx = _mm256_setzero_ps(), sq2 = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) {
      const __m256 w = _mm256_set1_ps(weight[i]);
      const __m256 qf = _mm256_cvtepi32_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(q[i])));
      sqx = _mm256_add_ps(sqx, _mm256_mul_ps(_mm256_mul_ps(w, _mm256_set1_ps(xval[i])), qf));
      sq2 = _mm256_add_ps(sq2, _mm256_mul_ps(_mm256_mul_ps(w, qf), qf));
    }
    alignas(32) float a[8], b[8];
    _mm256_store_ps(a, sqx);
    _mm256_store_ps(b, sq2);
    for (int k = 0; k < 8 && t0 + k < ntrials; ++k) {
      sumqx[t0 + k] = a[k];
      sumq2[t0 + k] = b[k];
    }
  }
}

template <int kDim, class G>
int best_neighbour_words_avx2(const uint16_t* nb, const uint32_t* lo, const uint32_t* hi, const G* grid_odd,
                              const float* xval, const float* weight, float scale, int8_t* L, const char* type) {
  return finish_neighbour<kDim>(neighbour_chunk<kDim>(nb, lo, hi, xval, weight, scale), nb, lo, hi, grid_odd, xval,
                                weight, scale, L, type);
}
}  // namespace

}  // namespace dsv4
#endif  // DSV4_X86
