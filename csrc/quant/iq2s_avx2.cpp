// AVX2 kernels of IQ2_XS and IQ2_S, bit-exact with iq2s_ref.cpp: the IQ2_XS quantizer with the off-grid
// neighbour search 8 candidates per step (each lane sums the reference's precomputed terms, picked by its candidate's
// levels from one contiguous load of grid words, in the reference's order; first minimum wins), and the dots
// with Q8_K activations (exact integer sums, then the reference's float expression per super-block).
// IQ2_S quantizes with the reference (its lists are short, mean 3.9 candidates: the AVX2 search measured 0.96x
// of the scalar one); dequantize has no SIMD version (not on a hot path).
#if defined(DSV4_X86)
#include <immintrin.h>

#include <cstring>

#include "quant/iq2s_impl.h"
#include "quant/iq2s_tables.h"
#include "quant/kernels.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

namespace {

inline float f16(uint16_t h) { return _cvtsh_ss(h); }  // F16C, exact like fp16_to_f32

// iq2s::find_neighbour 8 candidates at a time: the same 24 terms (scalar, the reference's operations), each
// lane adding its candidate's 8 terms in coordinate order; lanes past the list are +inf, and a step's minimum
// replaces the best only when strictly less, its first lane winning (the sequential scan's choice).
struct Iq2sFindAvx2 {
  static int find(const uint16_t* nb, const Iq2GridTables& t, const float* xval, const float* weight, float scale,
                  int8_t* L) {
    float cost[8][3];
    iq2s::neighbour_costs(xval, weight, scale, cost);
    const int count = nb[0];
    const size_t o = static_cast<size_t>(nb - t.neighbours.data()) + 1;
    const uint32_t* lo = t.nb_lo.data() + o;
    const uint32_t* hi = t.nb_hi.data() + o;
    const __m256i byte = _mm256_set1_epi32(0xff), three = _mm256_set1_epi32(3), five = _mm256_set1_epi32(5);
    float best_d2 = FLT_MAX;
    int best = -1;
    for (int j0 = 0; j0 < count; j0 += 8) {
      const __m256i g[2] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(lo + j0)),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hi + j0))};
      __m256 d2 = _mm256_setzero_ps();
      for (int i = 0; i < 8; ++i) {
        const __m256i c = _mm256_and_si256(_mm256_srli_epi32(g[i / 4], 8 * (i % 4)), byte);  // 2l+1
        __m256 term = _mm256_set1_ps(cost[i][0]);
        term = _mm256_blendv_ps(term, _mm256_set1_ps(cost[i][1]), _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, three)));
        term = _mm256_blendv_ps(term, _mm256_set1_ps(cost[i][2]), _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, five)));
        d2 = _mm256_add_ps(d2, term);
      }
      take_first_min(past_list_inf(d2, count - j0), nb, j0, &best_d2, &best);
    }
    if (best < 0) throw std::runtime_error("IQ2_XS/IQ2_S: no grid neighbour found (non-finite input?)");
    kq::grid_levels<8>(t.grid_odd[best], L);
    return best;
  }
};

// IQ2_XS sign masks: xs[i] has 0xff in byte j where bit j of ksigns[i] is set (one 64-bit load per group
// of 8; IQ2_S, whose sign bytes are stored as is, expands them with a shuffle instead).
struct SignMasks {
  uint64_t xs[128];
  SignMasks() {
    const uint8_t* ksigns = iq2xxs_tables().ksigns;
    for (int i = 0; i < 128; ++i) {
      uint64_t m = 0;
      for (int j = 0; j < 8; ++j)
        if ((ksigns[i] >> j) & 1) m |= 0xffull << (8 * j);
      xs[i] = m;
    }
  }
};
// Function-local: built on the first AVX2 call (never at load time on a CPU without AVX2).
const SignMasks& sign_masks() {
  static const SignMasks m;
  return m;
}

// The 16 half scales of a super-block as bytes 2*s+1, in sub-block order [ib0 lo, ib0 hi, ib1 lo, ...].
inline __m128i half_scales(const uint8_t* scales) {
  uint64_t s8;
  std::memcpy(&s8, scales, 8);
  const __m128i v = _mm_set1_epi64x(static_cast<int64_t>(s8));
  const __m128i m4 = _mm_set1_epi8(0xf);
  const __m128i lohi = _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
  return _mm_add_epi8(_mm_add_epi8(lohi, lohi), _mm_set1_epi8(1));
}

// pshufb controls picking [scale 2*ib x8 | scale 2*ib+1 x8] out of half_scales.
alignas(16) constexpr uint8_t kScaleSel[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

// One 32-value sub-block ib: 4 grid points g (8 unsigned bytes each), their sign masks, the activation and
// the block's half scales -> int32 lanes of (2*s+1) * (grid * sign . q8).
inline __m256i sub_block(__m256i g, __m256i neg, const int8_t* q8, __m128i scales, int ib) {
  const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q8));
  const __m256i as = _mm256_sub_epi8(_mm256_xor_si256(av, neg), neg);  // a * sign (|a| <= 127)
  const __m256i p = _mm256_maddubs_epi16(g, as);                       // <= 2 * 43 * 127: no saturation
  const __m128i sel = _mm_load_si128(reinterpret_cast<const __m128i*>(kScaleSel[ib]));
  return _mm256_madd_epi16(p, _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scales, sel)));
}

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p) + 4096, _MM_HINT_T0); }

}  // namespace

void quantize_row_iq2_xs_avx2(const float* x, void* y, int64_t n, const float* qw) {
  iq2s::quantize_row<iq2s::Variant::XS, Iq2sFindAvx2>(x, y, n, qw);
}

float vec_dot_iq2_xs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_XS* w = static_cast<const BlockIQ2_XS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const uint64_t* grid = iq2xs_tables().grid_values.data();
  const uint64_t* sm = sign_masks().xs;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    prefetch(w + b);
    prefetch(reinterpret_cast<const uint8_t*>(w + b) + 64);
    __m256i acc = _mm256_setzero_si256();
    const uint16_t* qs = w[b].qs;
    const __m128i scales = half_scales(w[b].scales);
    for (int ib = 0; ib < 8; ++ib, qs += 4) {
      const __m256i g =
          _mm256_setr_epi64x(static_cast<int64_t>(grid[qs[0] & 511]), static_cast<int64_t>(grid[qs[1] & 511]),
                             static_cast<int64_t>(grid[qs[2] & 511]), static_cast<int64_t>(grid[qs[3] & 511]));
      const __m256i neg =
          _mm256_setr_epi64x(static_cast<int64_t>(sm[qs[0] >> 9]), static_cast<int64_t>(sm[qs[1] >> 9]),
                             static_cast<int64_t>(sm[qs[2] >> 9]), static_cast<int64_t>(sm[qs[3] >> 9]));
      acc = _mm256_add_epi32(acc, sub_block(g, neg, a[b].qs + 32 * ib, scales, ib));
    }
    sum += ((f16(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}

float vec_dot_iq2_s_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_S* w = static_cast<const BlockIQ2_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const uint64_t* grid = iq2s_tables().grid_values.data();
  const __m256i bits = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i sel =
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    prefetch(w + b);
    prefetch(reinterpret_cast<const uint8_t*>(w + b) + 64);
    __m256i acc = _mm256_setzero_si256();
    const BlockIQ2_S& x = w[b];
    const __m128i scales = half_scales(x.scales);
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* qs = x.qs + 4 * ib;
      const int qh = x.qh[ib];
      const __m256i g = _mm256_setr_epi64x(static_cast<int64_t>(grid[qs[0] | ((qh << 8) & 0x300)]),
                                           static_cast<int64_t>(grid[qs[1] | ((qh << 6) & 0x300)]),
                                           static_cast<int64_t>(grid[qs[2] | ((qh << 4) & 0x300)]),
                                           static_cast<int64_t>(grid[qs[3] | ((qh << 2) & 0x300)]));
      uint32_t s4;
      std::memcpy(&s4, x.qs + QK_K / 8 + 4 * ib, 4);
      const __m256i sb = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(s4)), sel);
      const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(sb, bits), bits);  // 0xff where the sign bit is set
      acc = _mm256_add_epi32(acc, sub_block(g, neg, a[b].qs + 32 * ib, scales, ib));
    }
    sum += ((f16(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}

}  // namespace dsv4
#endif
