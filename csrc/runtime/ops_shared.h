// Scalar math that the CPU ops (ops_cpu/) and the CUDA kernels (ops_cuda/) must compute identically: e4m3 / e2m1
// rounding and the QAT block scales, the RMSNorm factor, one RoPE pair, sigmoid, the clamped SwiGLU, the router's
// score, rank order, top-k and weights.  One definition each, __host__ __device__ under nvcc and inline in the CPU
// build, so the kernels' host runners (tests/cuda/test_logic.py) check the arithmetic the device runs.  Beside
// ops_cpu/ and ops_cuda/ because both include it and neither owns it.  Not here: reductions (sequential on the
// CPU, warp and block trees on the GPU: each backend keeps its own order).
#pragma once

#include <math.h>

#include <cstdint>

#ifdef __CUDACC__
#define DSV4_HD __host__ __device__ __forceinline__
#else
#define DSV4_HD inline
#endif

namespace dsv4 {

// std::max / std::min, usable in device code (the CPU ops' form: on x86-64 they compile to maxss / minss, where
// fmaxf / fminf are library calls).  The kernels' former fmaxf / fminf give the same values for non-NaN inputs.
DSV4_HD float hd_max(float a, float b) { return a < b ? b : a; }
DSV4_HD float hd_min(float a, float b) { return b < a ? b : a; }

// ---- QAT fake-quant (DeepSeek-V4's inference/kernel.py act_quant / fp4_act_quant) ----

// 2^ceil(log2(x)) for positive normal x, exactly (the reference's frexp form).
DSV4_HD float pow2_ceil(float x) {
  int e;
  const float m = frexpf(x, &e);
  if (m == 0.5f) e -= 1;
  return ldexpf(1.0f, e);
}

// Nearest e4m3 value of x already clamped to [-448, 448], ties to even.
DSV4_HD float e4m3_round(float x) {
  const float a = fabsf(x);
  if (a == 0.f) return x;
  float step;
  if (a < 0.015625f) {  // 2^-6: subnormal range, step 2^-9
    step = 0.001953125f;
  } else {
    int e;
    frexpf(a, &e);  // a = m * 2^e, m in [0.5, 1): binary exponent e-1, 3 mantissa bits
    step = ldexpf(1.0f, e - 4);
  }
  return copysignf(nearbyintf(a / step) * step, x);
}

// Nearest e2m1 value of x already clamped to [-6, 6]: one of {0, .5, 1, 1.5, 2, 3, 4, 6}, ties to the even code
// (mantissa bit 0).
DSV4_HD float e2m1_round(float x) {
  const float a = fabsf(x);
  float q;
  if (a <= 0.25f)
    q = 0.f;
  else if (a < 0.75f)
    q = 0.5f;
  else if (a <= 1.25f)
    q = 1.f;
  else if (a < 1.75f)
    q = 1.5f;
  else if (a <= 2.5f)
    q = 2.f;
  else if (a < 3.5f)
    q = 3.f;
  else if (a <= 5.f)
    q = 4.f;
  else
    q = 6.f;
  return copysignf(q, x);
}

// Block scale from the block's absolute max: the power of two that brings max(amax, floor) to at most the
// format's largest value (e4m3: 448, floor 1e-4; e2m1: 6, floor 6 * 2^-126).
DSV4_HD float fp8_block_scale(float amax) { return pow2_ceil(hd_max(amax, 1e-4f) * (1.0f / 448.0f)); }
DSV4_HD float fp4_block_scale(float amax) { return pow2_ceil(hd_max(amax, 6.0f * ldexpf(1.0f, -126)) * (1.0f / 6.0f)); }
// One element of a block with scale s: x / s clamped to the format's range, rounded to its grid, scaled back.
DSV4_HD float fp8_fake_quant_one(float x, float s) { return e4m3_round(hd_min(448.f, hd_max(-448.f, x / s))) * s; }
DSV4_HD float fp4_fake_quant_one(float x, float s) { return e2m1_round(hd_min(6.f, hd_max(-6.f, x / s))) * s; }

// ---- RMSNorm, RoPE, activations ----

// RMSNorm's factor of a row with sum of squares ss over n elements: 1 / sqrt(ss / n + eps).
DSV4_HD float rms_scale(float ss, int64_t n, float eps) { return 1.0f / sqrtf(ss / static_cast<float>(n) + eps); }
// One normalised element: w[i] * (x * r), or x * r without a weight (w == nullptr).
DSV4_HD float rms_apply(float x, const float* w, int64_t i, float r) { return w ? w[i] * (x * r) : x * r; }

// Rotate the interleaved pair (r[0], r[1]) by the angle pos * freq; inverse: the conjugate rotation.
DSV4_HD void rope_pair(float* r, float pos, float freq, bool inverse) {
  const float ang = pos * freq;
  const float c = cosf(ang), s = inverse ? -sinf(ang) : sinf(ang);
  const float a = r[0], b = r[1];
  r[0] = a * c - b * s;
  r[1] = a * s + b * c;
}

DSV4_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Clamped SwiGLU of one element (the official Expert): silu(min(g, L)) * clamp(u, -L, L); limit <= 0: no clamp.
DSV4_HD float swiglu_one(float g, float u, float limit) {
  if (limit > 0) {
    u = hd_min(limit, hd_max(-limit, u));
    g = hd_min(g, limit);
  }
  return g / (1.0f + expf(-g)) * u;
}

// ---- MoE router (the official Gate, score_func "sqrtsoftplus") ----

// Score of one expert logit: sqrt(softplus(x)), softplus(x) = x above 20 (torch's threshold).
DSV4_HD float route_score(float x) { return sqrtf(x > 20.f ? x : log1pf(expf(x))); }

// Selection value of expert e: the score plus the expert's bias (bias only steers the choice, not the weights).
DSV4_HD float route_biased(float score, const float* bias, int64_t e) { return score + (bias ? bias[e] : 0.f); }

// "(a, ia) ranks before (b, ib)": the higher value first, ties to the lower id: the order of a stable
// descending sort, which the router's choice and the indexer's top-k both follow.
DSV4_HD bool ranks_before(float a, int64_t ia, float b, int64_t ib) { return a > b || (a == b && ia < ib); }

// Top-k of one token's biased scores sel[0..E) (finite): K rounds of "first remaining by ranks_before", i.e.
// the first K of the stable descending sort.  idx[k], val[k]: the k-th choice and its value; chosen entries of
// sel become -inf.
DSV4_HD void route_topk(float* sel, int64_t E, int K, int32_t* idx, float* val) {
  for (int k = 0; k < K; ++k) {
    int64_t bi = 0;
    for (int64_t e = 1; e < E; ++e)
      if (ranks_before(sel[e], e, sel[bi], bi)) bi = e;
    idx[k] = static_cast<int32_t>(bi);
    val[k] = sel[bi];
    sel[bi] = -INFINITY;
  }
}

// Weights of the K chosen experts: their unbiased scores, divided by their sum when norm, times route_scale.
DSV4_HD void route_weights(const float* score, const int32_t* idx, int K, float route_scale, bool norm, float* w) {
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += score[idx[k]];
  for (int k = 0; k < K; ++k) w[k] = norm ? score[idx[k]] / s * route_scale : score[idx[k]] * route_scale;
}

}  // namespace dsv4
