// CUDA manifold-constrained hyper-connections (ops_cpu/mhc.cpp on the device): the mixes' RMS factor (block per
// token), the coefficients with Sinkhorn in the reference's order (thread per token: logic.cuh hc_coeffs_one,
// which the host runner executes too), the head's pre coefficients, stream collapse and expansion (thread per
// element).  hc <= 4 (DeepSeek-V4 uses 4), so a token's coefficients fit in registers.
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

// block per token (kNormThreads threads)
__global__ void hc_scale_mixes_kernel(const float* __restrict__ x, int64_t n, float eps, float* mixes, int n_mix) {
  const float r = rms_scale(block_sum(sumsq_partial(x + blockIdx.x * n, n, threadIdx.x, blockDim.x)), n, eps);
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
  pre[i] = sigmoid(mixes[i] * scale[0] + base[i % hc]) + eps;
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

}  // namespace

void hc_scale_mixes(const float* x, int64_t T, int64_t n, float eps, float* mixes, int n_mix, cudaStream_t s) {
  if (T <= 0) return;
  hc_scale_mixes_kernel<<<static_cast<unsigned>(T), kNormThreads, 0, s>>>(x, n, eps, mixes, n_mix);
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

}  // namespace dsv4::cudaops
