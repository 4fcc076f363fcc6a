// CUDA MoE ops (ops_cpu/moe.cpp on the device): the router (warp per token: sqrt-softplus scores, bias for the
// choice only, K rounds of warp argmax in the CPU's order, hash routing through tid2eid), the clamped SwiGLU
// (thread per element) and the expert combine in ascending expert id.  Score, rank order and weights are
// runtime/ops_shared.h, the lane scan logic.cuh; the host runner (ops_host.cu) replays the warp on the CPU.
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

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
    score[e] = route_score(logits[t * E + e]);
    sel[e] = route_biased(score[e], bias, e);
  }
  __syncwarp();
  int32_t* it = idx + t * K;
  if (tid2eid) {
    if (lane < K) it[lane] = tid2eid[static_cast<int64_t>(tokens[t]) * K + lane];
  } else {
    for (int k = 0; k < K; ++k) {
      float best;
      int bi;
      route_lane_best(sel, E, lane, &best, &bi);
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ranks_before(ob, oi, best, bi)) {
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
  if (lane == 0) route_weights(score, it, K, route_scale, norm != 0, w + t * K);
}

__global__ void swiglu_kernel(const float* __restrict__ g, const float* __restrict__ u, const float* __restrict__ wt,
                              int64_t T, int64_t I, float limit, float* __restrict__ h) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < T * I) h[i] = swiglu_at(g, u, wt, I, limit, i);
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

}  // namespace

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

}  // namespace dsv4::cudaops
