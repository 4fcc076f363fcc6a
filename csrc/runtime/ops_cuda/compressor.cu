// CUDA compressor step (ops_cpu/compressor.cpp on the device): thread per channel, the state machine of
// logic.cuh compressor_channel (which the host runner executes too) over kv/score state resident on the device.
// Whether the token completes a block is decided on the host, so the decode step needs no device sync.
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

// thread per channel (logic.cuh compressor_channel)
__global__ void compressor_step_kernel(float* kv, float* score, int m, int d, const float* __restrict__ a,
                                       const float* __restrict__ g, int64_t pos, float* __restrict__ out) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= d) return;
  float v;
  if (compressor_channel(kv, score, m, d, a, g, pos, c, &v)) out[c] = v;
}

}  // namespace

bool compressor_step(float* st_kv, float* st_score, int m, int d, const float* a, const float* g, int64_t pos,
                     float* out, cudaStream_t s) {
  compressor_step_kernel<<<blocks_for(d, 128), 128, 0, s>>>(st_kv, st_score, m, d, a, g, pos, out);
  check_launch("compressor_step_kernel");
  return (pos + 1) % m == 0;
}

}  // namespace dsv4::cudaops
