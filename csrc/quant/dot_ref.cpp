// Scalar reference dot products: weight row (its own format) . activation row (Q8_0 for the
// 32-element types, Q8_1 for Q4_1/Q5_1, Q8_K for the super-block types, f32 for the float types).  Integer sums per
// (sub-)block are exact; the float part follows one fixed order (per super-block expression, or the
// 8-lane layout of dot_lanes32), which the AVX2 versions reproduce, so ref and SIMD agree to the bit.  Like ggml's vec_dot, the result differs
// from the float dot of the dequantized rows only by the activation quantization.
#include <cmath>
#include <cstring>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"

namespace dsv4 {

float vec_dot_f32_ref(int64_t n, const void* w, const void* a) {
  const float* x = static_cast<const float*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * y[i];
  return static_cast<float>(s);
}
float vec_dot_f16_ref(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_f32(x[i])) * y[i];
  return static_cast<float>(s);
}
float vec_dot_bf16_ref(int64_t n, const void* w, const void* a) {
  const uint16_t* x = static_cast<const uint16_t*>(w);
  const float* y = static_cast<const float*>(a);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(bf16_to_f32(x[i])) * y[i];
  return static_cast<float>(s);
}

// 32-element block types accumulate in 8 float lanes, the layout of the AVX2 kernels (two blocks per
// 256-bit step): block b adds to lane 4*(b&1)+k (k < 4) the exact integer sum of its elements 4k..4k+3
// and 16+4k..16+4k+3, times (weight scale * activation scale), with one fused multiply-add, in block
// order.  The lanes are then summed in a fixed tree.  ggml accumulates one block per 8-lane FMA;
// either order differs from the exact float dot by a few float32 roundings.
namespace {

inline float reduce_lanes8(const float* l) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

// val(b, i): weight value i of block b as an integer; scale(b): the weight block's float scale.
// Act: BlockQ8_0 or BlockQ8_1 (same d and qs; Q8_1's s is used by the callers with a min term).
template <class Act, class Val, class Scale>
float dot_lanes32(int64_t nb, const Act* a, Val val, Scale scale) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t b = 0; b < nb; ++b) {
    const float s = scale(b) * fp16_to_f32(a[b].d);
    for (int k = 0; k < 4; ++k) {
      int isum = 0;
      for (int i = 4 * k; i < 4 * k + 4; ++i) isum += val(b, i) * a[b].qs[i] + val(b, i + 16) * a[b].qs[i + 16];
      float& lane = acc[4 * (b & 1) + k];
      lane = std::fma(s, static_cast<float>(isum), lane);
    }
  }
  return reduce_lanes8(acc);
}

}  // namespace

float vec_dot_q8_0_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ8_0* w = static_cast<const BlockQ8_0*>(vw);
  return dot_lanes32(
      n / QK8_0, static_cast<const BlockQ8_0*>(va), [w](int64_t b, int i) { return static_cast<int>(w[b].qs[i]); },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

float vec_dot_q4_0_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ4_0* w = static_cast<const BlockQ4_0*>(vw);
  return dot_lanes32(
      n / QK4_0, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b, int i) { return (i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4)) - 8; },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

float vec_dot_mxfp4_ref(int64_t n, const void* vw, const void* va) {
  const BlockMXFP4* w = static_cast<const BlockMXFP4*>(vw);
  return dot_lanes32(
      n / QK_MXFP4, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b, int i) {
        return static_cast<int>(kValuesMXFP4[i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4)]);
      },
      [w](int64_t b) { return e8m0_to_f32_half(w[b].e); });
}

float vec_dot_q5_0_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ5_0* w = static_cast<const BlockQ5_0*>(vw);
  return dot_lanes32(
      n / 32, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b, int i) {
        uint32_t h;
        std::memcpy(&h, w[b].qh, 4);
        const int lo = i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4);
        return (lo | static_cast<int>(((h >> i) & 1u) << 4)) - 16;
      },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

float vec_dot_iq4_nl_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ4_NL* w = static_cast<const BlockIQ4_NL*>(vw);
  return dot_lanes32(
      n / 32, static_cast<const BlockQ8_0*>(va),
      [w](int64_t b, int i) {
        return static_cast<int>(kValuesIQ4NL[i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4)]);
      },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
}

// Q4_1 / Q5_1 against Q8_1: sum_b d_w*d_a*sum(q*q8) + m_w*s_a (s_a = d_a*sum(q8), as ggml): the first term in
// the lanes of dot_lanes32, the min terms in one float in block order, added last.
namespace {

template <class Block>
float min_terms(int64_t nb, const Block* w, const BlockQ8_1* a) {
  float s = 0;
  for (int64_t b = 0; b < nb; ++b) s = std::fma(fp16_to_f32(w[b].m), fp16_to_f32(a[b].s), s);
  return s;
}

}  // namespace

float vec_dot_q4_1_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ4_1* w = static_cast<const BlockQ4_1*>(vw);
  const BlockQ8_1* a = static_cast<const BlockQ8_1*>(va);
  const float q = dot_lanes32(
      n / 32, a, [w](int64_t b, int i) { return i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4); },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
  return q + min_terms(n / 32, w, a);
}

float vec_dot_q5_1_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ5_1* w = static_cast<const BlockQ5_1*>(vw);
  const BlockQ8_1* a = static_cast<const BlockQ8_1*>(va);
  const float q = dot_lanes32(
      n / 32, a,
      [w](int64_t b, int i) {
        uint32_t h;
        std::memcpy(&h, w[b].qh, 4);
        const int lo = i < 16 ? (w[b].qs[i] & 0xf) : (w[b].qs[i - 16] >> 4);
        return lo | static_cast<int>(((h >> i) & 1u) << 4);
      },
      [w](int64_t b) { return fp16_to_f32(w[b].d); });
  return q + min_terms(n / 32, w, a);
}

float vec_dot_q2_k_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ2_K* w = static_cast<const BlockQ2_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0, summ = 0;
    for (int j = 0; j < 16; ++j) summ += (w[b].scales[j] >> 4) * a[b].bsums[j];
    const int8_t* q8 = a[b].qs;
    int is = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q2 = w[b].qs + 32 * h;
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half, q8 += 16) {
          int isum = 0;
          for (int l = 0; l < 16; ++l) isum += ((q2[l + 16 * half] >> shift) & 3) * q8[l];
          sumi += (w[b].scales[is++] & 0xF) * isum;
        }
      }
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi) -
           (fp16_to_f32(w[b].dmin) * a[b].d) * static_cast<float>(summ);
  }
  return sum;
}

float vec_dot_q3_k_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ3_K* w = static_cast<const BlockQ3_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0;
    const int8_t* q8 = a[b].qs;
    int is = 0;
    uint8_t m = 1;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* q3 = w[b].qs + 32 * h;
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half, q8 += 16) {
          int isum = 0;
          for (int l = 0; l < 16; ++l) {
            const int o = l + 16 * half;
            isum += (((q3[o] >> shift) & 3) - ((w[b].hmask[o] & m) ? 0 : 4)) * q8[l];
          }
          sumi += kq::get_q3_scale(is++, w[b].scales) * isum;
        }
      }
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

// Q4_K / Q5_K accumulate like their AVX2 kernels (and ggml's): per super-block the scaled integer sums
// stay in 8 int32 lanes (lane m: elements 32j+4m..32j+4m+3 of every sub-block j, times its scale), added
// to 8 float lanes with one FMA by d*da; the min terms in 4 lanes (lane k: sub-blocks 2k, 2k+1) with one
// FMA by -(dmin*da).  Both lane sets are reduced in fixed trees at the end.
namespace {

template <class Block, class Val>
float dot_k4_lanes(int64_t nb, const Block* w, const BlockQ8_K* a, Val val) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, accm[4] = {0, 0, 0, 0};
  for (int64_t b = 0; b < nb; ++b) {
    int lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0}, mins[4] = {0, 0, 0, 0};
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, w[b].scales, &sc, &m);
      for (int l = 0; l < 8; ++l) {
        int isum = 0;
        for (int i = 32 * j + 4 * l; i < 32 * j + 4 * l + 4; ++i) isum += val(w[b], i) * a[b].qs[i];
        lanes[l] += sc * isum;
      }
      mins[j / 2] += m * (a[b].bsums[2 * j] + a[b].bsums[2 * j + 1]);
    }
    const float d = fp16_to_f32(w[b].d) * a[b].d, dm = -(fp16_to_f32(w[b].dmin) * a[b].d);
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(d, static_cast<float>(lanes[l]), acc[l]);
    for (int k = 0; k < 4; ++k) accm[k] = std::fma(dm, static_cast<float>(mins[k]), accm[k]);
  }
  return reduce_lanes8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
}

}  // namespace

float vec_dot_q4_k_ref(int64_t n, const void* vw, const void* va) {
  return dot_k4_lanes(
      n / QK_K, static_cast<const BlockQ4_K*>(vw), static_cast<const BlockQ8_K*>(va),
      [](const BlockQ4_K& x, int i) { return (x.qs[32 * (i / 64) + i % 32] >> (4 * ((i / 32) & 1))) & 0xF; });
}

float vec_dot_q5_k_ref(int64_t n, const void* vw, const void* va) {
  return dot_k4_lanes(n / QK_K, static_cast<const BlockQ5_K*>(vw), static_cast<const BlockQ8_K*>(va),
                      [](const BlockQ5_K& x, int i) {
                        const int lo = (x.qs[32 * (i / 64) + i % 32] >> (4 * ((i / 32) & 1))) & 0xF;
                        return lo | (((x.qh[i % 32] >> (i / 32)) & 1) << 4);
                      });
}

float vec_dot_q6_k_ref(int64_t n, const void* vw, const void* va) {
  const BlockQ6_K* w = static_cast<const BlockQ6_K*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0;
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const uint8_t* qh = w[b].qh + 32 * h;
      const int8_t* q8 = a[b].qs + 128 * h;
      const int8_t* sc = w[b].scales + 8 * h;
      for (int g = 0; g < 4; ++g) {  // value groups l + 32g
        for (int half = 0; half < 2; ++half) {
          int isum = 0;
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const uint8_t qlb = ql[l + 32 * (g & 1)];
            const int q = ((g < 2 ? (qlb & 0xF) : (qlb >> 4)) | (((qh[l] >> (2 * g)) & 3) << 4)) - 32;
            isum += q * q8[32 * g + l];
          }
          sumi += sc[2 * g + half] * isum;
        }
      }
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float vec_dot_iq4_xs_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ4_XS* w = static_cast<const BlockIQ4_XS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0;
    for (int ib = 0; ib < 8; ++ib) {
      const int ls = ((w[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((w[b].scales_h >> 2 * ib) & 3) << 4);
      const uint8_t* qs = w[b].qs + 16 * ib;
      const int8_t* q8 = a[b].qs + 32 * ib;
      int isum = 0;
      for (int j = 0; j < 16; ++j) isum += kValuesIQ4NL[qs[j] & 0xf] * q8[j] + kValuesIQ4NL[qs[j] >> 4] * q8[j + 16];
      sumi += (ls - 32) * isum;
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

float vec_dot_iq2_xxs_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_XXS* w = static_cast<const BlockIQ2_XXS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq2xxsTables& t = iq2xxs_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    int sumi = 0;
    const int8_t* q8 = a[b].qs;
    for (int ib = 0; ib < 8; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, w[b].qs + 4 * ib, 8);
      int isum = 0;
      for (int l = 0; l < 4; ++l, q8 += 8) {
        const uint64_t g = t.grid_values[(aux[0] >> (8 * l)) & 0xff];
        const uint8_t signs = t.ksigns[(aux[1] >> (7 * l)) & 127];
        for (int j = 0; j < 8; ++j) {
          const int v = static_cast<int>((g >> (8 * j)) & 0xff);
          isum += ((signs >> j) & 1 ? -v : v) * q8[j];
        }
      }
      sumi += static_cast<int>(2 * (aux[1] >> 28) + 1) * isum;
    }
    sum += ((fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi)) * 0.125f;
  }
  return sum;
}

}  // namespace dsv4
