// AVX2 quantize/dequantize kernels, bit-exact with the scalar references: the same IEEE operations per
// element (no FMA contraction; built with -ffp-contract=off) and candidate-parallel scale searches (8
// candidate scales at once, one per lane, each lane accumulating in the reference's order).  The
// coordinate-descent searches (make_q3_quants, make_qp_quants) stay scalar.  Dots: dot_avx2.cpp.
#if defined(DSV4_X86)
#include <immintrin.h>

#include <stdexcept>

#include "quant/kernels.h"
#include "quant/iquant_impl.h"
#include "quant/kquant_impl.h"
#include "quant/simd_avx2.h"

namespace dsv4 {

uint8_t mxfp4_exponent(float amax);  // quant_basic_ref.cpp

// ================================================================ F16
void quantize_row_f16_avx2(const float* x, void* vy, int64_t n, const float*) {
  uint16_t* y = static_cast<uint16_t*>(vy);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}
void dequantize_row_f16_avx2(const void* vx, float* y, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(vx);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  for (; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

// ================================================================ BF16
void quantize_row_bf16_avx2(const float* x, void* vy, int64_t n, const float*) {
  uint16_t* y = static_cast<uint16_t*>(vy);
  int64_t i = 0;
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  for (; i + 16 <= n; i += 16) {
    __m256i r[2];
    for (int k = 0; k < 2; ++k) {
      const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
      const __m256i rne = _mm256_srli_epi32(
          _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one))), 16);
      const __m256i qnan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
      const __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
      r[k] = _mm256_blendv_epi8(rne, qnan, isnan);
      r[k] = _mm256_and_si256(r[k], _mm256_set1_epi32(0xffff));
    }
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), p);
  }
  for (; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}
void dequantize_row_bf16_avx2(const void* vx, float* y, int64_t n) {
  const uint16_t* x = static_cast<const uint16_t*>(vx);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

// ================================================================ Q8_0
void quantize_row_q8_0_avx2(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    const float amax = block_amax(x, 32);
    const float d = amax / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(roundf_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), pack_i32x32_i8(q[0], q[1], q[2], q[3]));
  }
}
void dequantize_row_q8_0_avx2(const void* vx, float* y, int64_t n) {
  const BlockQ8_0* x = static_cast<const BlockQ8_0*>(vx);
  for (int64_t b = 0; b < n / QK8_0; ++b, y += QK8_0) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[b].d));
    for (int k = 0; k < 4; ++k) {
      const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].qs + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

// ================================================================ Q4_0
namespace {
struct Avx2Search;
}
void quantize_row_q4_0_weighted_avx2(const float* x, BlockQ4_0* y, int64_t n, const float* qw);

void quantize_row_q4_0_avx2(const float* x, void* vy, int64_t n, const float* qw) {
  BlockQ4_0* y = static_cast<BlockQ4_0*>(vy);
  if (qw) return quantize_row_q4_0_weighted_avx2(x, y, n, qw);
  alignas(32) int32_t q[32];
  for (int64_t b = 0; b < n / QK4_0; ++b, x += QK4_0) {
    const float amax = block_amax(x, 32);
    const float max = x[first_abs_equal(x, 32, amax)];
    const float d = max / -8.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(8.5f);
    for (int k = 0; k < 4; ++k) {
      const __m256i v = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), vid), half));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * k), _mm256_min_epi32(v, _mm256_set1_epi32(15)));
    }
    for (int j = 0; j < 16; ++j) y[b].qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}
void dequantize_row_q4_0_avx2(const void* vx, float* y, int64_t n) {
  const BlockQ4_0* x = static_cast<const BlockQ4_0*>(vx);
  alignas(32) int8_t q[32];
  for (int64_t b = 0; b < n / QK4_0; ++b, y += QK4_0) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(x[b].d));
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(load_nibbles(x[b].qs), _mm256_set1_epi8(8)));
    for (int k = 0; k < 4; ++k) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
    }
  }
}

// ================================================================ MXFP4
void quantize_row_mxfp4_avx2(const float* x, void* vy, int64_t n, const float*) {
  BlockMXFP4* y = static_cast<BlockMXFP4*>(vy);
  alignas(32) int32_t q[32];
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, x += QK_MXFP4) {
    const uint8_t e = mxfp4_exponent(block_amax(x, 32));
    const float d = e8m0_to_f32_half(e);
    y[b].e = e;
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_loadu_ps(x + 8 * k);
      const __m256 ax = abs_ps(v);
      __m256 best_err = ax;
      __m256i best = _mm256_setzero_si256();
      for (int c = 1; c < 8; ++c) {
        const __m256 err = abs_ps(_mm256_sub_ps(_mm256_set1_ps(static_cast<float>(kValuesMXFP4[c]) * d), ax));
        const __m256 better = _mm256_cmp_ps(err, best_err, _CMP_LT_OQ);
        best_err = _mm256_blendv_ps(best_err, err, better);
        best = _mm256_blendv_epi8(best, _mm256_set1_epi32(c), _mm256_castps_si256(better));
      }
      const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
      const __m256i nz = _mm256_cmpgt_epi32(best, _mm256_setzero_si256());
      best = _mm256_add_epi32(best, _mm256_and_si256(_mm256_and_si256(neg, nz), _mm256_set1_epi32(8)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 8 * k), best);
    }
    for (int j = 0; j < 16; ++j) y[b].qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}
void dequantize_row_mxfp4_avx2(const void* vx, float* y, int64_t n) {
  const BlockMXFP4* x = static_cast<const BlockMXFP4*>(vx);
  alignas(32) int8_t q[32];
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, y += QK_MXFP4) {
    const __m256 d = _mm256_set1_ps(e8m0_to_f32_half(x[b].e));
    _mm256_store_si256(reinterpret_cast<__m256i*>(q), mxfp4_values(x[b].qs));
    for (int k = 0; k < 4; ++k) {
      const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 8 * k)));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, _mm256_cvtepi32_ps(v)));
    }
  }
}

// ================================================================ Q8_K (activations)
void quantize_row_q8_k_avx2(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_K* y = static_cast<BlockQ8_K*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b, x += QK_K) {
    const float amax = block_amax(x, QK_K);
    if (amax == 0.f) {
      std::memset(&y[b], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float max = x[first_abs_equal(x, QK_K, amax)];
    const float iscale = -127.f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int j = 0; j < QK_K; j += 32) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k)
        q[k] =
            _mm256_min_epi32(nearest_int_ps(_mm256_mul_ps(vs, _mm256_loadu_ps(x + j + 8 * k))), _mm256_set1_epi32(127));
      const __m256i p = pack_i32x32_i8(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs + j), p);
      // bsums of the two 16-groups
      const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), p);
      const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
      alignas(32) int32_t t[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(t), s32);
      y[b].bsums[j / 16] = static_cast<int16_t>(t[0] + t[1] + t[2] + t[3]);
      y[b].bsums[j / 16 + 1] = static_cast<int16_t>(t[4] + t[5] + t[6] + t[7]);
    }
    y[b].d = 1.f / iscale;
  }
}

// ================================================================ K-quant scale searches
namespace {

struct Avx2Search {
  // make_qkx2/qkx3 with weights given; the nstep+1 candidates run 8 at a time.
  static float qkx(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                   float rmin, float rdelta, int nstep, bool mad, bool qkx3) {
    kq::QkxStart s;
    if (!kq::qkx_start(n, nmax, x, weights, L, the_min, mad, qkx3, &s)) return 0.f;
    const float max = s.max, sum_w = s.sum_w, sum_x = s.sum_x;
    float min = s.min, scale = s.scale, best_error = s.best_error;
    float xm[32];
    // ggml's loop updates `min` whenever a candidate wins, and later candidates are evaluated
    // against the new min.  So lanes are speculative: after a winner that moved min, the group is
    // re-evaluated from the next candidate on.
    const __m256 vsw = _mm256_set1_ps(sum_w), vsx = _mm256_set1_ps(sum_x);
    const __m256i vnmax = _mm256_set1_epi32(nmax), vzero = _mm256_setzero_si256();
    __m256 lf[32];
    int is0 = 0;
    while (is0 <= nstep) {
      alignas(32) float isc[8];
      for (int k = 0; k < 8; ++k) isc[k] = (rmin + rdelta * (is0 + k) + nmax) / (max - min);
      for (int i = 0; i < n; ++i) xm[i] = x[i] - min;
      const __m256 vis = _mm256_load_ps(isc);
      __m256 sl = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps(), sxl = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        __m256i l = nearest_int_ps(_mm256_mul_ps(vis, _mm256_set1_ps(xm[i])));
        l = _mm256_max_epi32(vzero, _mm256_min_epi32(vnmax, l));
        lf[i] = _mm256_cvtepi32_ps(l);
        const __m256 wl = _mm256_mul_ps(_mm256_set1_ps(weights[i]), lf[i]);
        sl = _mm256_add_ps(sl, wl);
        sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, lf[i]));
        sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, _mm256_set1_ps(x[i])));
      }
      const __m256 D = _mm256_sub_ps(_mm256_mul_ps(vsw, sl2), _mm256_mul_ps(sl, sl));
      __m256 tsc = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(vsw, sxl), _mm256_mul_ps(vsx, sl)), D);
      __m256 tmn = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, vsx), _mm256_mul_ps(sl, sxl)), D);
      const __m256 pos = _mm256_cmp_ps(tmn, _mm256_setzero_ps(), _CMP_GT_OQ);
      tmn = _mm256_blendv_ps(tmn, _mm256_setzero_ps(), pos);
      tsc = _mm256_blendv_ps(tsc, _mm256_div_ps(sxl, sl2), pos);
      __m256 err = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(tsc, lf[i]), tmn), _mm256_set1_ps(x[i]));
        diff = mad ? abs_ps(diff) : _mm256_mul_ps(diff, diff);
        err = _mm256_add_ps(err, _mm256_mul_ps(_mm256_set1_ps(weights[i]), diff));
      }
      alignas(32) float Dv[8], ev[8], sv[8], mv[8];
      _mm256_store_ps(Dv, D);
      _mm256_store_ps(ev, err);
      _mm256_store_ps(sv, tsc);
      _mm256_store_ps(mv, tmn);
      int next;
      const int win = kq::qkx_pick_lane(Dv, ev, sv, mv, is0, nstep, &best_error, &scale, &min, &next);
      if (win >= 0) {
        for (int i = 0; i < n; ++i) {
          alignas(32) float t[8];
          _mm256_store_ps(t, lf[i]);
          L[i] = static_cast<uint8_t>(t[win]);
        }
      }
      is0 = next;
    }
    (void)Laux;
    *the_min = -min;
    return scale;
  }

  // IQ4_NL nearest code for 32 values: ggml's binary search as a count of table entries <= x.
  static void iq4_index32(const float* xb, float id, uint8_t* idx) {
    alignas(32) float tab[16];
    for (int k = 0; k < 16; ++k) tab[k] = static_cast<float>(kValuesIQ4NL[k]);
    const __m256 lo = _mm256_load_ps(tab), hi = _mm256_load_ps(tab + 8);
    const __m256 v0 = _mm256_set1_ps(tab[0]), v15 = _mm256_set1_ps(tab[15]);
    const __m256 vid = _mm256_set1_ps(id);
    alignas(32) int32_t out[32];
    for (int g = 0; g < 4; ++g) {
      const __m256 al = _mm256_mul_ps(vid, _mm256_loadu_ps(xb + 8 * g));
      __m256i c = _mm256_setzero_si256();
      for (int k = 1; k < 16; ++k)
        c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(_mm256_set1_ps(tab[k]), al, _CMP_LE_OQ)));
      c = _mm256_add_epi32(c, _mm256_set1_epi32(1));  // + (tab[0] <= al) on the interior path
      c = _mm256_min_epi32(_mm256_max_epi32(c, _mm256_set1_epi32(1)), _mm256_set1_epi32(15));
      const __m256i cm1 = _mm256_sub_epi32(c, _mm256_set1_epi32(1));
      auto gather = [&](__m256i ix) {
        const __m256 a = _mm256_permutevar8x32_ps(lo, ix), b = _mm256_permutevar8x32_ps(hi, ix);
        return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_cmpgt_epi32(ix, _mm256_set1_epi32(7))));
      };
      const __m256 vm1 = gather(cm1), vm = gather(c);
      const __m256 take_lower = _mm256_cmp_ps(_mm256_sub_ps(al, vm1), _mm256_sub_ps(vm, al), _CMP_LT_OQ);
      __m256i r = _mm256_blendv_epi8(c, cm1, _mm256_castps_si256(take_lower));
      r = _mm256_blendv_epi8(r, _mm256_setzero_si256(), _mm256_castps_si256(_mm256_cmp_ps(al, v0, _CMP_LE_OQ)));
      r = _mm256_blendv_epi8(r, _mm256_set1_epi32(15), _mm256_castps_si256(_mm256_cmp_ps(al, v15, _CMP_GE_OQ)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(out + 8 * g), r);
    }
    for (int j = 0; j < 32; ++j) idx[j] = static_cast<uint8_t>(out[j]);
  }

  // IQ2_XXS off-grid point: weighted distance to 8 candidate grid points per step, one per lane.
  static int iq2_neighbour(const uint16_t* nb, const Iq2xxsTables& t, const float* xval, const float* weight,
                           float scale, int8_t* L) {
    const size_t o = static_cast<size_t>(nb - t.neighbours.data()) + 1;
    return best_neighbour_words_avx2<8>(nb, t.nb_lo.data() + o, t.nb_hi.data() + o, t.grid_odd, xval, weight, scale, L,
                                        "IQ2_XXS");
  }
  // 8 searches at a time: their first 8 candidates' distances are independent, so they overlap in the core
  static void iq2_find_all(const kq::GridSearch* s, int n, const Iq2xxsTables& t) {
    for (int b = 0; b < n; b += 8) {
      const int m = std::min(8, n - b);
      NeighbourChunk c[8];
      for (int j = 0; j < m; ++j) {
        const size_t o = static_cast<size_t>(s[b + j].nb - t.neighbours.data()) + 1;
        c[j] = neighbour_chunk<8>(s[b + j].nb, t.nb_lo.data() + o, t.nb_hi.data() + o, s[b + j].xval, s[b + j].weight,
                                  s[b + j].scale);
      }
      for (int j = 0; j < m; ++j) {
        const kq::GridSearch& q = s[b + j];
        const size_t o = static_cast<size_t>(q.nb - t.neighbours.data()) + 1;
        finish_neighbour<8>(c[j], q.nb, t.nb_lo.data() + o, t.nb_hi.data() + o, t.grid_odd, q.xval, q.weight, q.scale,
                            q.L, "IQ2_XXS");
      }
    }
  }
  static void trial_sums(int ntrials, const int8_t (*L)[32], const float* weight, const float* xval, float* sumqx,
                         float* sumq2) {
    trial_sums_avx2(ntrials, L, weight, xval, sumqx, sumq2);
  }

  // make_qx_quants (rmse_type 1): 18 candidates in 3 groups of 8.
  static float qx(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
      const float ax = std::fabs(x[i]);
      if (ax > amax) {
        amax = ax;
        max = x[i];
      }
    }
    if (amax < kGroupMaxEps) {
      for (int i = 0; i < n; ++i) L[i] = 0;
      return 0.f;
    }
    float w[32];
    for (int i = 0; i < n; ++i) w[i] = qw ? qw[i] : x[i] * x[i];
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      L[i] = static_cast<int8_t>(l + nmax);
      sumlx += w[i] * x[i] * l;
      suml2 += w[i] * l * l;
    }
    float scale = suml2 != 0.f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    static const int kCand[24] = {-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0};
    const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
    __m256i lv[32];
    for (int g = 0; g < 3; ++g) {
      alignas(32) float isc[8];
      for (int k = 0; k < 8; ++k) isc[k] = -(nmax + 0.1f * kCand[8 * g + k]) / max;
      const __m256 vis = _mm256_load_ps(isc);
      __m256 slx = _mm256_setzero_ps(), sl2 = _mm256_setzero_ps();
      for (int i = 0; i < n; ++i) {
        const __m256i r = nearest_int_ps(_mm256_mul_ps(vis, _mm256_set1_ps(x[i])));
        const __m256i l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, r));
        lv[i] = l;
        const __m256 lf = _mm256_cvtepi32_ps(l);
        slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_set1_ps(w[i] * x[i]), lf));
        sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), lf), lf));
      }
      alignas(32) float a[8], c[8];
      _mm256_store_ps(a, slx);
      _mm256_store_ps(c, sl2);
      int win = -1;
      const int nk = g < 2 ? 8 : 2;
      for (int k = 0; k < nk; ++k) {
        if (c[k] > 0 && a[k] * a[k] > best * c[k]) {
          scale = a[k] / c[k];
          best = scale * a[k];
          win = k;
        }
      }
      if (win >= 0) {
        for (int i = 0; i < n; ++i) {
          alignas(32) int32_t t[8];
          _mm256_store_si256(reinterpret_cast<__m256i*>(t), lv[i]);
          L[i] = static_cast<int8_t>(t[win] + nmax);
        }
      }
    }
    return scale;
  }
};

}  // namespace

void quantize_row_q4_0_weighted_avx2(const float* x, BlockQ4_0* y, int64_t n, const float* qw) {
  kq::quantize_row_q4_0_weighted<Avx2Search>(x, y, n, qw);
}
void quantize_row_q2_k_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q2_k<Avx2Search>(x, y, n, qw);
}
void quantize_row_q3_k_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q3_k<Avx2Search>(x, y, n, qw);
}
void quantize_row_q4_k_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q4_k<Avx2Search>(x, y, n, qw);
}
void quantize_row_q5_k_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q5_k<Avx2Search>(x, y, n, qw);
}
void quantize_row_q6_k_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q6_k<Avx2Search>(x, y, n, qw);
}
void quantize_row_iq4_xs_avx2(const float* x, void* vy, int64_t n, const float* qw) {
  BlockIQ4_XS* y = static_cast<BlockIQ4_XS*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b)
    kq::quantize_iq4_xs_block<Avx2Search>(x + QK_K * b, qw ? qw + QK_K * b : nullptr, &y[b]);
}
void quantize_row_iq2_xxs_avx2(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_iq2_xxs<Avx2Search>(x, y, n, qw);
}

// ================================================================ K-quant dequant / dots
void dequantize_row_q4_k_avx2(const void* vx, float* y, int64_t n) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    for (int j = 0; j < 8; ++j, y += 32) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, x[b].scales, &sc, &m);
      const __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(min * m);
      const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs + 32 * (j / 2) + 0));
      const __m128i raw2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[b].qs + 32 * (j / 2) + 16));
      const __m128i mask = _mm_set1_epi8(0x0f);
      const __m128i q0 = (j & 1) ? _mm_and_si128(_mm_srli_epi16(raw, 4), mask) : _mm_and_si128(raw, mask);
      const __m128i q1 = (j & 1) ? _mm_and_si128(_mm_srli_epi16(raw2, 4), mask) : _mm_and_si128(raw2, mask);
      const __m128i parts[4] = {q0, _mm_srli_si128(q0, 8), q1, _mm_srli_si128(q1, 8)};
      for (int k = 0; k < 4; ++k) {
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
        _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d1, q), m1));
      }
    }
  }
}

void dequantize_row_q6_k_avx2(const void* vx, float* y, int64_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vx);
  alignas(32) int8_t q[QK_K];
  for (int64_t b = 0; b < n / QK_K; ++b, y += QK_K) {
    const float d = fp16_to_f32(x[b].d);
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h));
      const __m256i ql1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].ql + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qh + 32 * h));
      const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(0x03), off = _mm256_set1_epi8(32);
      const __m256i lows[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
      for (int g = 0; g < 4; ++g) {
        const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), m2);
        const __m256i v = _mm256_sub_epi8(_mm256_or_si256(lows[g], _mm256_slli_epi16(hb, 4)), off);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 128 * h + 32 * g), v);
      }
    }
    for (int s = 0; s < 16; ++s) {
      const __m256 ds = _mm256_set1_ps(d * x[b].scales[s]);
      for (int k = 0; k < 2; ++k) {
        const __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + 16 * s + 8 * k)));
        _mm256_storeu_ps(y + 16 * s + 8 * k, _mm256_mul_ps(ds, _mm256_cvtepi32_ps(v)));
      }
    }
  }
}

}  // namespace dsv4

#endif  // DSV4_X86
