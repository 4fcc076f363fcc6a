// CUDA device discovery (device count and name, runtime version: build_info, the skip policy) and the E4M3
// decode (one thread per element, the bit assembly of core/fp_decode.cpp, bit-identical): backend.h's first
// section.  Not the runtime's weight path (the GEMV decodes in-kernel: dequant.cuh).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "runtime/ops_cuda/backend.h"
#include "runtime/ops_cuda/common.cuh"

namespace dsv4::cuda {
namespace {
using cudaops::check;

__global__ void decode_e4m3_kernel(const uint8_t* __restrict__ in, float* __restrict__ out, size_t n) {
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint32_t x = in[i];
  const uint32_t sign = (x & 0x80u) << 24;
  const uint32_t e = (x >> 3) & 0xFu, m = x & 0x7u;
  uint32_t bits;
  if ((x & 0x7Fu) == 0x7Fu) {
    bits = 0x7FC00000u;
  } else if (e == 0) {
    bits = __float_as_uint(static_cast<float>(m) * (1.0f / 512.0f));
  } else {
    bits = ((e + 120u) << 23) | (m << 20);
  }
  out[i] = __uint_as_float(bits | sign);
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

void decode_e4m3(const uint8_t* in, float* out, size_t n) {
  if (device_count() == 0) throw std::runtime_error("no CUDA device is available");
  if (n == 0) return;
  uint8_t* d_in = nullptr;
  float* d_out = nullptr;
  check(cudaMalloc(&d_in, n), "cudaMalloc");
  cudaError_t err = cudaMalloc(&d_out, n * sizeof(float));
  if (err != cudaSuccess) {
    cudaFree(d_in);
    check(err, "cudaMalloc");
  }
  err = cudaMemcpy(d_in, in, n, cudaMemcpyHostToDevice);
  if (err == cudaSuccess) {
    const unsigned threads = 256;
    const unsigned blocks = static_cast<unsigned>((n + threads - 1) / threads);
    decode_e4m3_kernel<<<blocks, threads>>>(d_in, d_out, n);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaMemcpy(out, d_out, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(d_in);
  cudaFree(d_out);
  check(err, "decode_e4m3");
}

}  // namespace dsv4::cuda
