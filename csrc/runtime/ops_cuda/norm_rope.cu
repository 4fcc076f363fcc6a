// CUDA RMSNorm (block per row), partial interleaved RoPE (thread per pair), FP8/FP4 fake-quant with power-of-two
// block scales (warp per block) and the normalised Walsh-Hadamard transform (block per row): ops_cpu/norm_rope.cpp
// on the device.  The per-element math is runtime/ops_shared.h and the per-thread work logic.cuh, which the host
// runners (ops_host.cu) execute on the CPU; only the RMS sum's order differs from the CPU (a block tree).
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

// block per row (kNormThreads threads)
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int64_t n, float eps) {
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  const float r = rms_scale(block_sum(sumsq_partial(xr, n, threadIdx.x, blockDim.x)), n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = rms_apply(xr[i], w, i, r);
}

// thread per (row, pair)
__global__ void rope_tail_kernel(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos,
                                 const float* __restrict__ freqs, int inverse) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * (rd / 2)) return;
  rope_tail_thread(x, n, rd, pos0, rows_per_pos, freqs, inverse != 0, i);
}

// warp per group of `block` (<= 64) elements
__global__ void fake_quant_kernel(float* x, int64_t rows, int64_t row_stride, int64_t n, int block, int fp4) {
  const int64_t gw = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  const int64_t groups = n / block;
  if (gw >= rows * groups) return;
  float* g = x + (gw / groups) * row_stride + (gw % groups) * block;
  const float v0 = lane < block ? g[lane] : 0.f, v1 = lane + 32 < block ? g[lane + 32] : 0.f;
  const float s = fake_quant_scale(warp_max(fmaxf(fabsf(v0), fabsf(v1))), fp4 != 0);
  if (lane < block) g[lane] = fake_quant_value(v0, s, fp4 != 0);
  if (lane + 32 < block) g[lane + 32] = fake_quant_value(v1, s, fp4 != 0);
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

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, cudaStream_t s) {
  if (rows <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kNormThreads, 0, s>>>(x, w, y, n, eps);
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

}  // namespace dsv4::cudaops
