// NEON quantizers (aarch64 only; quant.cpp dispatches): Q8_0, MXFP4 and Q4_K, byte-identical with the _ref
// quantizers (quant_basic_ref.cpp, kquant_impl.h).  Maxima are order-free; per-element arithmetic is the
// reference's (same products, roundf as round-half-away, ggml's nearest_int bit trick, strict-less code search),
// and Q4_K's scale search runs the reference's candidates 8 at a time in two float32x4_t, each lane summing
// in the reference's element order.  Dequantizers and the other types stay on the reference.
#include <arm_neon.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/tables.h"

namespace dsv4 {

uint8_t mxfp4_exponent(float amax);  // quant_basic_ref.cpp

namespace {

inline float block_amax(const float* x, int n) {  // n a multiple of 4
  float32x4_t m = vdupq_n_f32(0.f);
  for (int j = 0; j < n; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
  return vmaxvq_f32(m);
}

// ggml's nearest_int on 4 lanes (round half to even through the 1.5 * 2^23 bias, as blocks.h).
inline int32x4_t nearest_int4(float32x4_t v) {
  const int32x4_t b = vreinterpretq_s32_f32(vaddq_f32(v, vdupq_n_f32(12582912.f)));
  return vsubq_s32(vandq_s32(b, vdupq_n_s32(0x007fffff)), vdupq_n_s32(0x00400000));
}

}  // namespace

// ---- Q8_0: d = amax/127, codes = roundf(x * id)
void quantize_row_q8_0_neon(const float* x, void* vy, int64_t n, const float*) {
  BlockQ8_0* y = static_cast<BlockQ8_0*>(vy);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    const float d = block_amax(x, QK8_0) / 127.f;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y[b].d = f32_to_fp16(d);
    for (int k = 0; k < 4; ++k) {  // 8 codes per step; |code| <= 127, so the narrowing moves are exact
      const int32x4_t q0 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8 * k), id));
      const int32x4_t q1 = vcvtaq_s32_f32(vmulq_n_f32(vld1q_f32(x + 8 * k + 4), id));
      vst1_s8(y[b].qs + 8 * k, vmovn_s16(vcombine_s16(vmovn_s32(q0), vmovn_s32(q1))));
    }
  }
}

// ---- MXFP4: the reference's exponent, then per element the first of the 8 non-negative codes with the
// smallest |k*d - |x|| (strictly smaller wins), plus the sign bit for x < 0 and a non-zero code.
void quantize_row_mxfp4_neon(const float* x, void* vy, int64_t n, const float*) {
  BlockMXFP4* y = static_cast<BlockMXFP4*>(vy);
  alignas(16) uint32_t q[32];
  for (int64_t b = 0; b < n / QK_MXFP4; ++b, x += QK_MXFP4) {
    const uint8_t e = mxfp4_exponent(block_amax(x, QK_MXFP4));
    const float d = e8m0_to_f32_half(e);
    y[b].e = e;
    for (int k = 0; k < 8; ++k) {
      const float32x4_t v = vld1q_f32(x + 4 * k);
      const float32x4_t ax = vabsq_f32(v);
      float32x4_t best_err = ax;
      uint32x4_t best = vdupq_n_u32(0);
      for (int c = 1; c < 8; ++c) {
        const float32x4_t err = vabdq_f32(vdupq_n_f32(static_cast<float>(kValuesMXFP4[c]) * d), ax);
        const uint32x4_t better = vcltq_f32(err, best_err);
        best_err = vbslq_f32(better, err, best_err);
        best = vbslq_u32(better, vdupq_n_u32(static_cast<uint32_t>(c)), best);
      }
      const uint32x4_t sign = vandq_u32(vcltq_f32(v, vdupq_n_f32(0.f)), vcgtq_u32(best, vdupq_n_u32(0)));
      vst1q_u32(q + 4 * k, vaddq_u32(best, vandq_u32(sign, vdupq_n_u32(8))));
    }
    for (int j = 0; j < 16; ++j) y[b].qs[j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
  }
}

// ---- Q4_K: kq::quantize_row_q4_k with make_qkx_quants' candidate loop run 8 candidates at a time
namespace {

struct NeonSearch {
  // make_qkx2/qkx3 with weights given (Q4_K always passes them).  As Avx2Search: the lanes are speculative,
  // because the reference moves `min` whenever a candidate wins and evaluates later candidates against it;
  // after such a winner the group restarts from the next candidate.
  static float qkx(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min, uint8_t* Laux,
                   float rmin, float rdelta, int nstep, bool mad, bool qkx3) {
    kq::QkxStart s;
    if (!kq::qkx_start(n, nmax, x, weights, L, the_min, mad, qkx3, &s)) return 0.f;
    const float max = s.max, sum_w = s.sum_w, sum_x = s.sum_x;
    float min = s.min, scale = s.scale, best_error = s.best_error;
    float xm[32];
    const float32x4_t vsw = vdupq_n_f32(sum_w), vsx = vdupq_n_f32(sum_x), zero = vdupq_n_f32(0.f);
    const int32x4_t vnmax = vdupq_n_s32(nmax), izero = vdupq_n_s32(0);
    float32x4_t lf[32][2];
    int is0 = 0;
    while (is0 <= nstep) {
      alignas(16) float isc[8];
      for (int k = 0; k < 8; ++k) isc[k] = (rmin + rdelta * (is0 + k) + nmax) / (max - min);
      for (int i = 0; i < n; ++i) xm[i] = x[i] - min;
      float32x4_t D[2], tsc[2], tmn[2], err[2];
      for (int p = 0; p < 2; ++p) {  // candidates is0 + 4p .. is0 + 4p + 3
        const float32x4_t vis = vld1q_f32(isc + 4 * p);
        float32x4_t sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < n; ++i) {
          int32x4_t l = nearest_int4(vmulq_f32(vis, vdupq_n_f32(xm[i])));
          l = vmaxq_s32(izero, vminq_s32(vnmax, l));
          lf[i][p] = vcvtq_f32_s32(l);
          const float32x4_t wl = vmulq_f32(vdupq_n_f32(weights[i]), lf[i][p]);
          sl = vaddq_f32(sl, wl);
          sl2 = vaddq_f32(sl2, vmulq_f32(wl, lf[i][p]));
          sxl = vaddq_f32(sxl, vmulq_f32(wl, vdupq_n_f32(x[i])));
        }
        D[p] = vsubq_f32(vmulq_f32(vsw, sl2), vmulq_f32(sl, sl));
        tsc[p] = vdivq_f32(vsubq_f32(vmulq_f32(vsw, sxl), vmulq_f32(vsx, sl)), D[p]);
        tmn[p] = vdivq_f32(vsubq_f32(vmulq_f32(sl2, vsx), vmulq_f32(sl, sxl)), D[p]);
        const uint32x4_t pos = vcgtq_f32(tmn[p], zero);
        tmn[p] = vbslq_f32(pos, zero, tmn[p]);
        tsc[p] = vbslq_f32(pos, vdivq_f32(sxl, sl2), tsc[p]);
        err[p] = zero;
        for (int i = 0; i < n; ++i) {
          float32x4_t diff = vsubq_f32(vaddq_f32(vmulq_f32(tsc[p], lf[i][p]), tmn[p]), vdupq_n_f32(x[i]));
          diff = mad ? vabsq_f32(diff) : vmulq_f32(diff, diff);
          err[p] = vaddq_f32(err[p], vmulq_f32(vdupq_n_f32(weights[i]), diff));
        }
      }
      alignas(16) float Dv[8], ev[8], sv[8], mv[8];
      for (int p = 0; p < 2; ++p) {
        vst1q_f32(Dv + 4 * p, D[p]);
        vst1q_f32(ev + 4 * p, err[p]);
        vst1q_f32(sv + 4 * p, tsc[p]);
        vst1q_f32(mv + 4 * p, tmn[p]);
      }
      int next;
      const int win = kq::qkx_pick_lane(Dv, ev, sv, mv, is0, nstep, &best_error, &scale, &min, &next);
      if (win >= 0) {
        for (int i = 0; i < n; ++i) {
          alignas(16) float t[4];
          vst1q_f32(t, lf[i][win / 4]);
          L[i] = static_cast<uint8_t>(t[win % 4]);
        }
      }
      is0 = next;
    }
    (void)Laux;
    *the_min = -min;
    return scale;
  }
};

}  // namespace

void quantize_row_q4_k_neon(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q4_k<NeonSearch>(x, y, n, qw);
}

}  // namespace dsv4
