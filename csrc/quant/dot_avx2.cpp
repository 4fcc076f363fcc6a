// AVX2 dot products of every quantized weight type with its activation format (Q8_0 for the 32-element
// types, Q8_K for the super-block types).  Only the integer sums are vectorised (exact in any order);
// the float scaling per block follows the reference expression and order, so results equal the _ref
// dots bit for bit.  Float-type dots (F32/F16/BF16) stay scalar.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <cstring>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

// ================================================================ 32-element block dots
namespace {

// Per-block integer sums of 8 blocks, one per lane (v[k] holds block k's 8 partial sums).
inline __m256i reduce8(const __m256i* v) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
  // a = [b0 b1 b2 b3 | b0 b1 b2 b3] halves, b likewise for blocks 4-7
  return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

// sum over blocks of (wd[b] * ad[b]) * isum[b], accumulated in block order like the reference.
// scale8(b, out) writes the weight scales of blocks b..b+7 as floats.
template <class LoadW, class Scale8, class ScaleW>
float dot_blocks32(int64_t nb, const BlockQ8_0* a, LoadW load_w, Scale8 scale8, ScaleW scale_w) {
  float sum = 0;
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    __m256i parts[8];
    alignas(16) uint16_t ah[8];
    for (int k = 0; k < 8; ++k) {
      parts[k] = dot_i8(load_w(b + k), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b + k].qs)));
      ah[k] = a[b + k].d;
    }
    const __m256 ad = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(ah)));
    const __m256 prod = _mm256_mul_ps(_mm256_mul_ps(scale8(b), ad), _mm256_cvtepi32_ps(reduce8(parts)));
    alignas(32) float p[8];
    _mm256_store_ps(p, prod);
    for (int k = 0; k < 8; ++k) sum += p[k];
  }
  for (; b < nb; ++b) {
    const int isum = hsum_epi32(dot_i8(load_w(b), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs))));
    sum += (scale_w(b) * fp16_to_f32(a[b].d)) * static_cast<float>(isum);
  }
  return sum;
}

template <class Block>
inline __m256 fp16_scales8(const Block* w, int64_t b) {
  alignas(16) uint16_t h[8];
  for (int k = 0; k < 8; ++k) h[k] = w[b + k].d;
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

}  // namespace

float vec_dot_q8_0_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ8_0* w = static_cast<const BlockQ8_0*>(vw);
  return dot_blocks32(
      n / QK8_0, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs)); },
      [w](int64_t b) { return fp16_scales8(w, b); }, [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

float vec_dot_q4_0_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ4_0* w = static_cast<const BlockQ4_0*>(vw);
  return dot_blocks32(
      n / QK4_0, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b) { return _mm256_sub_epi8(load_nibbles(w[b].qs), _mm256_set1_epi8(8)); },
      [w](int64_t b) { return fp16_scales8(w, b); }, [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

float vec_dot_mxfp4_avx2(int64_t n, const void* vw, const void* va) {
  const BlockMXFP4* w = static_cast<const BlockMXFP4*>(vw);
  return dot_blocks32(
      n / QK_MXFP4, static_cast<const BlockQ8_0*>(va), [w](int64_t b) { return mxfp4_values(w[b].qs); },
      [w](int64_t b) {
        alignas(32) float f[8];
        for (int k = 0; k < 8; ++k) f[k] = e8m0_to_f32_half(w[b + k].e);
        return _mm256_load_ps(f);
      },
      [w](int64_t b) { return e8m0_to_f32_half(w[b].e); });
}

// ================================================================ Q2_K / Q3_K / IQ4_XS / IQ2_XXS dots
namespace {

// Shuffle controls that turn 8 int16 sub-block scales (both 128-bit halves) into [s[2g] x8 | s[2g+1] x8].
struct ScaleCtrl {
  __m256i c[4];
  ScaleCtrl() {
    for (int g = 0; g < 4; ++g) {
      alignas(32) int8_t b[32];
      for (int k = 0; k < 16; ++k) {
        b[k] = static_cast<int8_t>(4 * g + (k & 1));
        b[16 + k] = static_cast<int8_t>(4 * g + 2 + (k & 1));
      }
      c[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(b));
    }
  }
};
inline __m256i pair_scales(__m256i scales8x2, const ScaleCtrl& ctl, int g) { return _mm256_shuffle_epi8(scales8x2, ctl.c[g]); }
inline __m256i bcast128(__m128i v) { return _mm256_broadcastsi128_si256(v); }

}  // namespace
float vec_dot_q2_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ2_K* w = static_cast<const BlockQ2_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i m3 = _mm256_set1_epi8(3);
  const ScaleCtrl ctl;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums));
    const int summ = hsum_epi32(_mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0xF))), bs));
    const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0xF)));
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * h));
      const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
      for (int g = 0; g < 4; ++g) {
        const __m256i qv = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(qv, av), pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc);
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi) - (fp16_to_f32(w[b].dmin) * a[b].d) * static_cast<float>(summ);
  }
  return sum;
}

float vec_dot_q3_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ3_K* w = static_cast<const BlockQ3_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i m3 = _mm256_set1_epi8(3), m1 = _mm256_set1_epi8(1);
  const ScaleCtrl ctl;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    // unpack the 16 6-bit scales (low nibbles in bytes 0-7, high 2 bits in bytes 8-11), minus 32
    uint32_t aux[3];
    std::memcpy(aux, w[b].scales, 12);
    const uint32_t k2 = 0x0f0f0f0f, k1 = 0x03030303, tmp = aux[2];
    const __m128i s8 = _mm_setr_epi32(static_cast<int>((aux[0] & k2) | (((tmp >> 0) & k1) << 4)),
                                      static_cast<int>((aux[1] & k2) | (((tmp >> 2) & k1) << 4)),
                                      static_cast<int>(((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4)),
                                      static_cast<int>(((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4)));
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_sub_epi8(s8, _mm_set1_epi8(32)));
    // codes are stored +4: subtract 4 * sum(a) per sub-block
    const int off = hsum_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums))));
    const __m256i hm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].hmask));
    __m256i acc = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * h));
      for (int g = 0; g < 4; ++g) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * g), m3);
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + g), m1), 2);
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_or_si256(lo, hi), av), pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc) - 4 * off;
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float vec_dot_iq4_xs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ4_XS* w = static_cast<const BlockIQ4_XS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kValuesIQ4NL)));
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((w[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((w[b].scales_h >> 2 * ib) & 3) << 4);
      const __m256i wv = _mm256_shuffle_epi8(table, load_nibbles(w[b].qs + 16 * ib));
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(ls - 32))));
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc));
  }
  return sum;
}

float vec_dot_iq2_xxs_avx2(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_XXS* w = static_cast<const BlockIQ2_XXS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq2xxsTables& t = iq2xxs_tables();
  const __m256i bits = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i sel = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3,
                                       3, 3, 3, 3);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, w[b].qs + 4 * ib, 8);
      const __m256i g = _mm256_setr_epi64x(static_cast<int64_t>(t.grid_values[aux[0] & 0xff]),
                                           static_cast<int64_t>(t.grid_values[(aux[0] >> 8) & 0xff]),
                                           static_cast<int64_t>(t.grid_values[(aux[0] >> 16) & 0xff]),
                                           static_cast<int64_t>(t.grid_values[aux[0] >> 24]));
      const uint32_t s4 = static_cast<uint32_t>(t.ksigns[aux[1] & 127]) | (static_cast<uint32_t>(t.ksigns[(aux[1] >> 7) & 127]) << 8) |
                          (static_cast<uint32_t>(t.ksigns[(aux[1] >> 14) & 127]) << 16) |
                          (static_cast<uint32_t>(t.ksigns[(aux[1] >> 21) & 127]) << 24);
      const __m256i sb = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(s4)), sel);
      const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(sb, bits), bits);  // 0xff where the sign bit is set
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 32 * ib));
      const __m256i as = _mm256_sub_epi8(_mm256_xor_si256(av, neg), neg);  // a * sign
      const __m256i p = _mm256_maddubs_epi16(g, as);
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<int16_t>(2 * (aux[1] >> 28) + 1))));
    }
    sum += ((fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(hsum_epi32(acc))) * 0.125f;
  }
  return sum;
}


// ================================================================ Q4_K / Q5_K / Q6_K dots
float vec_dot_q4_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ4_K* w = static_cast<const BlockQ4_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    int summ = 0;
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      kq::get_scale_min_k4(2 * c, w[b].scales, &sc0, &m0);
      kq::get_scale_min_k4(2 * c + 1, w[b].scales, &sc1, &m1);
      summ += m0 * (a[b].bsums[4 * c] + a[b].bsums[4 * c + 1]) + m1 * (a[b].bsums[4 * c + 2] + a[b].bsums[4 * c + 3]);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c + 32));
      const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), a0);
      const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), a1);
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc0)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc1)));
    }
    const int sumi = hsum_epi32(acc);
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi) - (fp16_to_f32(w[b].dmin) * a[b].d) * static_cast<float>(summ);
  }
  return sum;
}

float vec_dot_q5_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ5_K* w = static_cast<const BlockQ5_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  const __m256i m4 = _mm256_set1_epi8(0x0f), m1b = _mm256_set1_epi8(0x01);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    int summ = 0;
    const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh));
    for (int c = 0; c < 4; ++c) {
      uint8_t sc0, m0, sc1, m1;
      kq::get_scale_min_k4(2 * c, w[b].scales, &sc0, &m0);
      kq::get_scale_min_k4(2 * c + 1, w[b].scales, &sc1, &m1);
      summ += m0 * (a[b].bsums[4 * c] + a[b].bsums[4 * c + 1]) + m1 * (a[b].bsums[4 * c + 2] + a[b].bsums[4 * c + 3]);
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m1b), 4);
      const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), m1b), 4);
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 64 * c + 32));
      const __m256i p0 = _mm256_maddubs_epi16(_mm256_or_si256(_mm256_and_si256(q, m4), h0), a0);
      const __m256i p1 = _mm256_maddubs_epi16(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1), a1);
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p0, _mm256_set1_epi16(sc0)));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16(sc1)));
    }
    const int sumi = hsum_epi32(acc);
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi) - (fp16_to_f32(w[b].dmin) * a[b].d) * static_cast<float>(summ);
  }
  return sum;
}

float vec_dot_q6_k_avx2(int64_t n, const void* vw, const void* va) {
  const BlockQ6_K* w = static_cast<const BlockQ6_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03);
  const ScaleCtrl ctl;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    __m256i acc = _mm256_setzero_si256();
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales)));
    // sum of sc * bsum, times 32 below (the -32 code offset)
    const int sum_off = hsum_epi32(_mm256_madd_epi16(sc16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].bsums))));
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh + 32 * h));
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      for (int g = 0; g < 4; ++g) {
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
        const __m256i q = _mm256_or_si256(lows[g], _mm256_slli_epi16(hb, 4));  // 0..63
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[b].qs + 128 * h + 32 * g));
        const __m256i p = _mm256_maddubs_epi16(q, av);
        const __m256i sch = bcast128(h ? _mm256_extracti128_si256(sc16, 1) : _mm256_castsi256_si128(sc16));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, pair_scales(sch, ctl, g)));
      }
    }
    const int sumi = hsum_epi32(acc) - 32 * sum_off;
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}


}  // namespace dsv4

#endif  // DSV4_X86
