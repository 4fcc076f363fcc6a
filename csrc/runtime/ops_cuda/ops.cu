// Element-wise and per-token CUDA ops of the forward pass (DeepSeek-V4's inference/model.py): RMSNorm, partial interleaved
// RoPE, FP8/FP4 fake-quant, Hadamard, mHC coefficients (Sinkhorn in the reference's order), collapse and
// expansion, the router (sqrt-softplus, bias for selection only, hash routing), clamped SwiGLU and the
// expert combine.  Arithmetic follows the CPU ops (ops_cpu/) in fp32; no fusion across ops yet.
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// 2^ceil(log2(x)) for positive normal x (the reference's frexp form).
__device__ __forceinline__ float pow2_ceil(float x) {
  int e;
  const float m = frexpf(x, &e);
  if (m == 0.5f) e -= 1;
  return ldexpf(1.0f, e);
}
__device__ __forceinline__ float e4m3_round(float x) {
  const float a = fabsf(x);
  if (a == 0.f) return x;
  float step;
  if (a < 0.015625f) {
    step = 0.001953125f;
  } else {
    int e;
    frexpf(a, &e);
    step = ldexpf(1.0f, e - 4);
  }
  return copysignf(rintf(a / step) * step, x);
}
__device__ __forceinline__ float e2m1_round(float x) {
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

// block per row
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int64_t n, float eps) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w ? w[i] * (xr[i] * r) : xr[i] * r;
}

// thread per (row, pair)
__global__ void rope_tail_kernel(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos,
                                 const float* __restrict__ freqs, int inverse) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t half = rd / 2;
  if (i >= rows * half) return;
  const int64_t row = i / half, k = i % half;
  const float p = static_cast<float>(pos0 + row / rows_per_pos);
  const float ang = p * freqs[k];
  const float c = cosf(ang), s = inverse ? -sinf(ang) : sinf(ang);
  float* r = x + row * n + (n - rd) + 2 * k;
  const float a = r[0], b = r[1];
  r[0] = a * c - b * s;
  r[1] = a * s + b * c;
}

// warp per group of `block` (<= 64) elements
__global__ void fake_quant_kernel(float* x, int64_t rows, int64_t row_stride, int64_t n, int block, int fp4) {
  const int64_t gw = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t groups = n / block;
  if (gw >= rows * groups) return;
  float* g = x + (gw / groups) * row_stride + (gw % groups) * block;
  const float v0 = lane < block ? g[lane] : 0.f, v1 = lane + 32 < block ? g[lane + 32] : 0.f;
  const float amax = warp_max(fmaxf(fabsf(v0), fabsf(v1)));
  const float lim = fp4 ? 6.f : 448.f;
  const float floor_amax = fp4 ? 6.0f * ldexpf(1.0f, -126) : 1e-4f;
  const float s = pow2_ceil(fmaxf(amax, floor_amax) * (1.0f / lim));
  auto q = [&](float v) {
    const float c = fminf(lim, fmaxf(-lim, v / s));
    return (fp4 ? e2m1_round(c) : e4m3_round(c)) * s;
  };
  if (lane < block) g[lane] = q(v0);
  if (lane + 32 < block) g[lane + 32] = q(v1);
}

// block per row, n threads (power of two <= 1024); same butterfly order as the CPU op
__global__ void hadamard_kernel(float* x, int64_t n) {
  extern __shared__ float hs[];
  float* r = x + blockIdx.x * n;
  const int i = threadIdx.x;
  hs[i] = r[i];
  __syncthreads();
  for (int h = 1; h < n; h *= 2) {
    float v = 0.f;
    if ((i & h) == 0)
      v = hs[i] + hs[i + h];
    else
      v = hs[i - h] - hs[i];
    __syncthreads();
    hs[i] = v;
    __syncthreads();
  }
  r[i] = hs[i] * static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
}

// block per token
__global__ void hc_scale_mixes_kernel(const float* __restrict__ x, int64_t n, float eps, float* mixes, int n_mix) {
  const float* xt = x + blockIdx.x * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xt[i] * xt[i];
  ss = block_sum(ss);
  const float r = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
  for (int o = threadIdx.x; o < n_mix; o += blockDim.x) mixes[blockIdx.x * n_mix + o] *= r;
}

// thread per token (hc <= 4; logic.cuh)
__global__ void hc_coeffs_kernel(const float* __restrict__ mixes, int64_t T, const float* __restrict__ scale,
                                 const float* __restrict__ base, int hc, int iters, float eps, float* pre, float* post,
                                 float* comb) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= T || hc > 4) return;
  hc_coeffs_one(mixes + t * (2 + hc) * hc, scale, base, hc, iters, eps, pre + t * hc, post + t * hc,
                comb + t * hc * hc);
}

__global__ void hc_head_pre_kernel(const float* __restrict__ mixes, int64_t T, const float* __restrict__ scale,
                                   const float* __restrict__ base, int hc, float eps, float* pre) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * hc) return;
  pre[i] = sigmoidf_(mixes[i] * scale[0] + base[i % hc]) + eps;
}

__global__ void hc_collapse_kernel(const float* __restrict__ x, const float* __restrict__ pre, int64_t T, int hc,
                                   int64_t D, float* __restrict__ y) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * D) return;
  const int64_t t = i / D, d = i % D;
  float s = 0.f;
  for (int j = 0; j < hc; ++j) s += pre[t * hc + j] * x[(t * hc + j) * D + d];
  y[i] = s;
}

// thread per (token, d): reads the hc source values, writes the hc outputs (in place is safe)
__global__ void hc_expand_kernel(const float* __restrict__ f, float* x, const float* __restrict__ post,
                                 const float* __restrict__ comb, int64_t T, int hc, int64_t D) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * D || hc > 4) return;
  const int64_t t = i / D, d = i % D;
  float src[4];
  for (int j = 0; j < hc; ++j) src[j] = x[(t * hc + j) * D + d];
  const float* cb = comb + t * hc * hc;
  for (int k = 0; k < hc; ++k) {
    float s = 0.f;
    for (int j = 0; j < hc; ++j) s += cb[j * hc + k] * src[j];
    x[(t * hc + k) * D + d] = post[t * hc + k] * f[i] + s;
  }
}

// warp per token: scores, K rounds of warp argmax (ties to the lower expert id, as stable_sort)
__global__ void route_kernel(const float* __restrict__ logits, int64_t T, int64_t E, int K,
                             const float* __restrict__ bias, const int32_t* __restrict__ tid2eid,
                             const int32_t* __restrict__ tokens, float route_scale, int norm, int32_t* idx, float* w) {
  extern __shared__ float rs[];  // score [E] | sel [E] per warp
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + warp;
  if (t >= T) return;
  float* score = rs + warp * 2 * E;
  float* sel = score + E;
  for (int64_t e = lane; e < E; e += 32) {
    const float x = logits[t * E + e];
    const float sp = x > 20.f ? x : log1pf(expf(x));
    score[e] = sqrtf(sp);
    sel[e] = score[e] + (bias ? bias[e] : 0.f);
  }
  __syncwarp();
  int32_t* it = idx + t * K;
  if (tid2eid) {
    if (lane < K) it[lane] = tid2eid[static_cast<int64_t>(tokens[t]) * K + lane];
  } else {
    for (int k = 0; k < K; ++k) {
      float best = -INFINITY;
      int bi = 0x7fffffff;
      for (int64_t e = lane; e < E; e += 32)
        if (sel[e] > best || (sel[e] == best && e < bi)) {
          best = sel[e];
          bi = static_cast<int>(e);
        }
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) {
          best = ob;
          bi = oi;
        }
      }
      if (lane == 0) {
        it[k] = bi;
        sel[bi] = -INFINITY;
      }
      __syncwarp();
    }
  }
  __syncwarp();
  if (lane == 0) {
    float s = 0.f;
    for (int k = 0; k < K; ++k) s += score[it[k]];
    for (int k = 0; k < K; ++k) w[t * K + k] = norm ? score[it[k]] / s * route_scale : score[it[k]] * route_scale;
  }
}

__global__ void swiglu_kernel(const float* __restrict__ g, const float* __restrict__ u, const float* __restrict__ wt,
                              int64_t T, int64_t I, float limit, float* __restrict__ h) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * I) return;
  float gv = g[i], uv = u[i];
  if (limit > 0) {
    uv = fminf(limit, fmaxf(-limit, uv));
    gv = fminf(gv, limit);
  }
  float r = gv / (1.0f + expf(-gv)) * uv;
  if (wt) r = wt[i / I] * r;
  h[i] = r;
}

__global__ void moe_combine_kernel(const float* __restrict__ y, const int32_t* __restrict__ idx,
                                   const float* __restrict__ shared, int64_t T, int K, int64_t D,
                                   float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * D) return;
  const int64_t t = i / D, d = i % D;
  const int32_t* it = idx + t * K;
  float s = 0.f;
  // visit slots in ascending (expert id, slot): the CPU's stable sort by id, duplicates included
  int last_id = -1, last_k = -1;
  for (int n = 0; n < K; ++n) {
    int bk = -1;
    for (int k = 0; k < K; ++k) {
      const bool after = it[k] > last_id || (it[k] == last_id && k > last_k);
      if (after && (bk < 0 || it[k] < it[bk])) bk = k;
    }
    if (bk < 0) break;
    last_id = it[bk];
    last_k = bk;
    s += y[(t * K + bk) * D + d];
  }
  out[i] = s + shared[i];
}

__global__ void add_rows_kernel(float* y, const float* __restrict__ b, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += b[i];
}

__global__ void scale_kernel(float* y, int64_t n, float a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] *= a;
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, cudaStream_t s) {
  if (rows <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, s>>>(x, w, y, n, eps);
  check_launch("rms_norm_kernel");
}

void rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
               bool inverse, cudaStream_t s) {
  if (rows <= 0) return;
  rope_tail_kernel<<<blocks_for(rows * rd / 2, 256), 256, 0, s>>>(x, rows, n, rd, pos0, rows_per_pos, freqs, inverse);
  check_launch("rope_tail_kernel");
}

void fp8_fake_quant(float* x, int64_t rows, int64_t row_stride, int64_t n, int block, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return;
  if (block > 64 || n % block) throw std::invalid_argument("fp8_fake_quant: block must be <= 64 and divide n");
  fake_quant_kernel<<<blocks_for(rows * (n / block) * 32, 256), 256, 0, s>>>(x, rows, row_stride, n, block, 0);
  check_launch("fake_quant_kernel");
}

void fp4_fake_quant(float* x, int64_t rows, int64_t n, int block, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return;
  if (block > 64 || n % block) throw std::invalid_argument("fp4_fake_quant: block must be <= 64 and divide n");
  fake_quant_kernel<<<blocks_for(rows * (n / block) * 32, 256), 256, 0, s>>>(x, rows, n, n, block, 1);
  check_launch("fake_quant_kernel");
}

void hadamard(float* x, int64_t rows, int64_t n, cudaStream_t s) {
  if (rows <= 0) return;
  if (n < 1 || n > 1024 || (n & (n - 1))) throw std::invalid_argument("hadamard: n must be a power of two <= 1024");
  hadamard_kernel<<<static_cast<unsigned>(rows), static_cast<unsigned>(n), static_cast<size_t>(n) * 4, s>>>(x, n);
  check_launch("hadamard_kernel");
}

void hc_scale_mixes(const float* x, int64_t T, int64_t n, float eps, float* mixes, int n_mix, cudaStream_t s) {
  if (T <= 0) return;
  hc_scale_mixes_kernel<<<static_cast<unsigned>(T), 256, 0, s>>>(x, n, eps, mixes, n_mix);
  check_launch("hc_scale_mixes_kernel");
}

void hc_coeffs(const float* mixes, int64_t T, const float* scale, const float* base, int hc, int iters, float eps,
               float* pre, float* post, float* comb, cudaStream_t s) {
  if (T <= 0) return;
  if (hc > 4) throw std::invalid_argument("hc_coeffs: hc must be <= 4");
  hc_coeffs_kernel<<<blocks_for(T, 64), 64, 0, s>>>(mixes, T, scale, base, hc, iters, eps, pre, post, comb);
  check_launch("hc_coeffs_kernel");
}

void hc_head_pre(const float* mixes, int64_t T, const float* scale, const float* base, int hc, float eps, float* pre,
                 cudaStream_t s) {
  if (T <= 0) return;
  hc_head_pre_kernel<<<blocks_for(T * hc, 256), 256, 0, s>>>(mixes, T, scale, base, hc, eps, pre);
  check_launch("hc_head_pre_kernel");
}

void hc_collapse(const float* x, const float* pre, int64_t T, int hc, int64_t D, float* y, cudaStream_t s) {
  if (T <= 0) return;
  hc_collapse_kernel<<<blocks_for(T * D, 256), 256, 0, s>>>(x, pre, T, hc, D, y);
  check_launch("hc_collapse_kernel");
}

void hc_expand(const float* f, float* x, const float* post, const float* comb, int64_t T, int hc, int64_t D,
               cudaStream_t s) {
  if (T <= 0) return;
  if (hc > 4) throw std::invalid_argument("hc_expand: hc must be <= 4");
  hc_expand_kernel<<<blocks_for(T * D, 256), 256, 0, s>>>(f, x, post, comb, T, hc, D);
  check_launch("hc_expand_kernel");
}

void route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid,
           const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, cudaStream_t s) {
  if (T <= 0) return;
  if (K < 1 || K > 32 || K > E) throw std::invalid_argument("route: need 1 <= K <= min(32, E)");
  const int warps = 4;
  const size_t smem = static_cast<size_t>(warps) * 2 * static_cast<size_t>(E) * 4;
  if (smem > 48 * 1024) throw std::invalid_argument("route: E too large for one warp's shared scratch");
  route_kernel<<<blocks_for(T, warps), 32 * warps, smem, s>>>(logits, T, E, K, bias, tid2eid, tokens, route_scale, norm,
                                                              idx, w);
  check_launch("route_kernel");
}

void swiglu(const float* g, const float* u, const float* wt, int64_t T, int64_t I, float limit, float* h,
            cudaStream_t s) {
  if (T <= 0) return;
  swiglu_kernel<<<blocks_for(T * I, 256), 256, 0, s>>>(g, u, wt, T, I, limit, h);
  check_launch("swiglu_kernel");
}

void moe_combine(const float* y, const int32_t* idx, const float* shared, int64_t T, int K, int64_t D, float* out,
                 cudaStream_t s) {
  if (T <= 0) return;
  moe_combine_kernel<<<blocks_for(T * D, 256), 256, 0, s>>>(y, idx, shared, T, K, D, out);
  check_launch("moe_combine_kernel");
}

void add_rows(float* y, const float* b, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  add_rows_kernel<<<blocks_for(n, 256), 256, 0, s>>>(y, b, n);
  check_launch("add_rows_kernel");
}

void scale(float* y, int64_t n, float a, cudaStream_t s) {
  if (n <= 0) return;
  scale_kernel<<<blocks_for(n, 256), 256, 0, s>>>(y, n, a);
  check_launch("scale_kernel");
}

}  // namespace dsv4::cudaops
