// AVX2 kernels of IQ3_XXS and IQ3_S, bit-exact with iq3_ref.cpp: the quantizers with the off-grid
// neighbour search evaluating 8 candidates at once (one per lane, each lane summing its 4 weighted
// squared differences in the scalar order; the first minimum wins, as in the scalar scan), a sub-block's
// searches of all trials issued together, the trials' fit sums 8 trials per vector, and the dots
// against Q8_K (the same exact integer sums per super-block, then the reference's float expression).
// Dequantize stays scalar (iq3_ref.cpp): it is not on a hot path.
#if defined(DSV4_X86)
#include <immintrin.h>

#include "quant/iq3_impl.h"
#include "quant/kernels.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

namespace {

struct Iq3NeighbourAvx2 {
  static const uint32_t* words(const uint16_t* nb, const Iq3Tables& t) {
    return t.nb_words.data() + (nb - t.neighbours.data()) + 1;
  }
  static int find(const uint16_t* nb, const Iq3Tables& t, const float* xval, const float* weight, float scale,
                  int8_t* L) {
    return best_neighbour_words_avx2<4>(nb, words(nb, t), nullptr, t.grid_odd.data(), xval, weight, scale, L, "IQ3");
  }
  // 8 searches at a time: their first 8 candidates' distances are independent, so they overlap in the core
  static void find_all(const kq::GridSearch* s, int n, const Iq3Tables& t) {
    for (int b = 0; b < n; b += 8) {
      const int m = std::min(8, n - b);
      NeighbourChunk c[8];
      for (int j = 0; j < m; ++j) {
        const kq::GridSearch& q = s[b + j];
        c[j] = neighbour_chunk<4>(q.nb, words(q.nb, t), nullptr, q.xval, q.weight, q.scale);
      }
      for (int j = 0; j < m; ++j) {
        const kq::GridSearch& q = s[b + j];
        finish_neighbour<4>(c[j], q.nb, words(q.nb, t), nullptr, t.grid_odd.data(), q.xval, q.weight, q.scale, q.L,
                            "IQ3");
      }
    }
  }
  static void trial_sums(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                         float* sumq2) {
    trial_sums_avx2(ntrials, L, weight, xval, sumqx, sumq2);
  }
};

// a * sign for 32 int8 activations; sign bit j of byte k (of s4) negates value 8k+j.
inline __m256i apply_signs(__m256i av, uint32_t s4) {
  const __m256i bits = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i sel =
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i sb = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(s4)), sel);
  const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(sb, bits), bits);  // 0xff where the sign bit is set
  return _mm256_sub_epi8(_mm256_xor_si256(av, neg), neg);
}

inline int32_t g32(const uint32_t* grid, int idx) { return static_cast<int32_t>(grid[idx]); }

// One 32-value sub-block of IQ3_XXS: 8 grid indices, the scale-and-signs word, 32 activations.
inline __m256i iq3_xxs_sub(const Iq3Tables& t, const uint32_t* grid, const uint8_t* qs, uint32_t aux, const int8_t* a) {
  const __m256i g = _mm256_setr_epi32(g32(grid, qs[0]), g32(grid, qs[1]), g32(grid, qs[2]), g32(grid, qs[3]),
                                      g32(grid, qs[4]), g32(grid, qs[5]), g32(grid, qs[6]), g32(grid, qs[7]));
  const uint32_t s4 = static_cast<uint32_t>(t.ksigns[aux & 127]) |
                      (static_cast<uint32_t>(t.ksigns[(aux >> 7) & 127]) << 8) |
                      (static_cast<uint32_t>(t.ksigns[(aux >> 14) & 127]) << 16) |
                      (static_cast<uint32_t>(t.ksigns[(aux >> 21) & 127]) << 24);
  const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i p = _mm256_maddubs_epi16(g, apply_signs(av, s4));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(2 * (aux >> 28) + 1)));
}

// One 32-value sub-block of IQ3_S (ib): 9-bit grid indices from qs and bit k of qh, explicit sign bits.
// The indices are built in a vector and gathered (on this AMD EPYC the dot ran ~0.9x ggml's with 8 scalar
// inserts, ~1.0x gathered; IQ3_XXS's byte indices measured the other way round, so it keeps the inserts).
inline __m256i iq3_s_sub(const uint32_t* grid, const BlockIQ3_S& w, int ib, const int8_t* a) {
  long long q8;
  std::memcpy(&q8, w.qs + 8 * ib, 8);
  const __m256i hi =
      _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(w.qh[ib]), _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1)),
                       _mm256_set1_epi32(256));
  const __m256i idx = _mm256_or_si256(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(q8)), hi);
  const __m256i g = _mm256_i32gather_epi32(reinterpret_cast<const int*>(grid), idx, 4);
  uint32_t s4;
  std::memcpy(&s4, w.signs + 4 * ib, 4);
  const int ls = 1 + 2 * ((w.scales[ib / 2] >> (4 * (ib & 1))) & 0xf);
  const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i p = _mm256_maddubs_epi16(g, apply_signs(av, s4));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(ls)));
}

}  // namespace

void quantize_row_iq3_xxs_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_iq3_xxs<Iq3NeighbourAvx2>(x, y, n, qw);
}
void quantize_row_iq3_s_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_iq3_s<Iq3NeighbourAvx2>(x, y, n, qw);
}

// Two sub-blocks per step into two accumulators (exact int32 sums: any order gives the reference's sumi).
float vec_dot_iq3_xxs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ3_XXS* w = static_cast<const BlockIQ3_XXS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq3Tables& t = iq3xxs_tables();
  const uint32_t* grid = t.grid_values.data();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    uint32_t aux[QK_K / 32];
    std::memcpy(aux, w[b].qs + QK_K / 4, sizeof(aux));
    __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      acc1 = _mm256_add_epi32(acc1, iq3_xxs_sub(t, grid, w[b].qs + 8 * ib, aux[ib], a[b].qs + 32 * ib));
      acc2 = _mm256_add_epi32(acc2, iq3_xxs_sub(t, grid, w[b].qs + 8 * ib + 8, aux[ib + 1], a[b].qs + 32 * ib + 32));
    }
    sum += (_cvtsh_ss(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(_mm256_add_epi32(acc1, acc2)));
  }
  return 0.25f * sum;
}

float vec_dot_iq3_s_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ3_S* w = static_cast<const BlockIQ3_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const uint32_t* grid = iq3s_tables().grid_values.data();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
    for (int ib = 0; ib < QK_K / 32; ib += 2) {
      acc1 = _mm256_add_epi32(acc1, iq3_s_sub(grid, w[b], ib, a[b].qs + 32 * ib));
      acc2 = _mm256_add_epi32(acc2, iq3_s_sub(grid, w[b], ib + 1, a[b].qs + 32 * ib + 32));
    }
    sum += (_cvtsh_ss(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(_mm256_add_epi32(acc1, acc2)));
  }
  return sum;
}

}  // namespace dsv4
#endif  // DSV4_X86
