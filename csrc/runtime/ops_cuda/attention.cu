// CUDA attention-side ops (ops_cpu/attention.cpp on the device, DeepSeek-V4's inference/model.py): sparse attention
// of one query over the window ring and the selected compressed rows in one softmax with the per-head sink; the
// lightning-indexer scores and a top-k with the CPU runtime's tie order (bitonic network: logic.cuh, which the
// host runner executes too).  KV rows are f32 on the device (no FP8 KV storage on the GPU yet); decode-shaped
// (one query token per call).  The compressor's state machine is compressor.cu.
#include <cstdint>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"

namespace dsv4::cudaops {
namespace {

__device__ __forceinline__ const float* key_row(const float* window, int64_t win, int64_t first, int64_t n_win,
                                                const float* comp, const int32_t* ids, int64_t e, int64_t hd) {
  if (e < n_win) return window + ((first + e) % win) * hd;
  const int32_t id = ids[e - n_win];
  return id < 0 ? nullptr : comp + static_cast<int64_t>(id) * hd;
}

// block per head; dynamic smem: q [hd] | z [n_keys]
__global__ void sparse_attention_kernel(const float* __restrict__ q, int64_t hd, const float* __restrict__ window,
                                        int64_t win, int64_t p, const float* __restrict__ comp,
                                        const int32_t* __restrict__ ids, int64_t n_ids, const float* __restrict__ sinks,
                                        float scale, float* __restrict__ out) {
  extern __shared__ float sm[];
  const int h = blockIdx.x;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
  const int64_t first = p - win + 1 > 0 ? p - win + 1 : 0;
  const int64_t n_win = p - first + 1, n_keys = n_win + n_ids;
  float* qs = sm;
  float* z = sm + hd;
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[h * hd + d];
  __syncthreads();
  for (int64_t e = warp; e < n_keys; e += nw) {
    const float* k = key_row(window, win, first, n_win, comp, ids, e, hd);
    float s = 0.f;
    if (k)
      for (int64_t d = lane; d < hd; d += 32) s += qs[d] * k[d];
    s = warp_sum(s);
    if (lane == 0) z[e] = k ? s * scale : -INFINITY;
  }
  __syncthreads();
  float mx = -INFINITY;
  for (int64_t e = threadIdx.x; e < n_keys; e += blockDim.x) mx = fmaxf(mx, z[e]);
  mx = block_max(mx);
  __syncthreads();
  float den = 0.f;
  for (int64_t e = threadIdx.x; e < n_keys; e += blockDim.x) den += (z[e] = expf(z[e] - mx));
  den = block_sum(den) + expf(sinks[h] - mx);
  __syncthreads();
  for (int64_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int64_t e = 0; e < n_keys; ++e) {
      const float* k = key_row(window, win, first, n_win, comp, ids, e, hd);
      if (k) o += z[e] * k[d];
    }
    out[h * hd + d] = o / den;
  }
}

// warp per key; dynamic smem q [nh][dI]
__global__ void indexer_scores_kernel(const float* __restrict__ q, const float* __restrict__ w, int64_t nh, int64_t dI,
                                      const float* __restrict__ k, int64_t n, float* __restrict__ score) {
  extern __shared__ float qs[];
  for (int64_t i = threadIdx.x; i < nh * dI; i += blockDim.x) qs[i] = q[i];
  __syncthreads();
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + warp;
  if (j >= n) return;
  const float* kj = k + j * dI;
  float s = 0.f;
  for (int64_t h = 0; h < nh; ++h) {
    float dq = 0.f;
    for (int64_t d = lane; d < dI; d += 32) dq += qs[h * dI + d] * kj[d];
    dq = warp_sum(dq);
    s += fmaxf(dq, 0.f) * w[h];
  }
  if (lane == 0) score[j] = s;
}

__global__ void topk_init_kernel(const float* __restrict__ score, int64_t n, int64_t N, float* key, int32_t* idx) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  key[i] = i < n ? score[i] : -INFINITY;
  idx[i] = i < n ? static_cast<int32_t>(i) : 0x7fffffff;
}

__global__ void bitonic_step_kernel(float* key, int32_t* idx, int64_t N, int64_t j, int64_t k, int by_idx) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < N) bitonic_pair(key, idx, i, j, k, by_idx);
}

__global__ void topk_mask_kernel(int32_t* idx, int64_t kk, int64_t K2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < K2 && i >= kk) idx[i] = 0x7fffffff;
}

__global__ void topk_out_kernel(const int32_t* __restrict__ idx, int64_t kk, int64_t k, int32_t* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < k) out[i] = i < kk ? idx[i] : -1;
}

int64_t pow2ceil(int64_t n) {
  int64_t N = 1;
  while (N < n) N <<= 1;
  return N;
}

void bitonic_sort(float* key, int32_t* idx, int64_t N, int by_idx, cudaStream_t s) {
  for (int64_t k = 2; k <= N; k <<= 1)
    for (int64_t j = k >> 1; j > 0; j >>= 1)
      bitonic_step_kernel<<<blocks_for(N, 256), 256, 0, s>>>(key, idx, N, j, k, by_idx);
  check_launch("bitonic_step_kernel");
}

}  // namespace

void sparse_attention(const float* q, int64_t H, int64_t hd, const float* window, int64_t win, int64_t p,
                      const float* comp, const int32_t* ids, int64_t n_ids, const float* sinks, float scale, float* out,
                      cudaStream_t s) {
  const int64_t first = p - win + 1 > 0 ? p - win + 1 : 0;
  const size_t smem = static_cast<size_t>(hd + (p - first + 1) + n_ids) * 4;
  if (smem > 48 * 1024)
    throw std::invalid_argument("sparse_attention: " + std::to_string(p - first + 1 + n_ids) +
                                " keys exceed one block's shared scratch (at most ~12K keys per query)");
  sparse_attention_kernel<<<static_cast<unsigned>(H), 256, smem, s>>>(q, hd, window, win, p, comp, ids, n_ids, sinks,
                                                                      scale, out);
  check_launch("sparse_attention_kernel");
}

void indexer_scores(const float* q, const float* w, int64_t nh, int64_t dI, const float* k, int64_t n, float* score,
                    cudaStream_t s) {
  if (n <= 0) return;
  const size_t smem = static_cast<size_t>(nh * dI) * 4;
  if (smem > 48 * 1024) throw std::invalid_argument("indexer_scores: heads x dim exceed 12K floats");
  indexer_scores_kernel<<<blocks_for(n, 8), 256, smem, s>>>(q, w, nh, dI, k, n, score);
  check_launch("indexer_scores_kernel");
}

size_t topk_scratch_bytes(int64_t n) { return static_cast<size_t>(pow2ceil(n < 1 ? 1 : n)) * 8; }

void topk_ids(const float* score, int64_t n, int64_t k, int32_t* out, void* scratch, cudaStream_t s) {
  if (k <= 0) return;
  const int64_t N = pow2ceil(n < 1 ? 1 : n);
  float* key = static_cast<float*>(scratch);
  int32_t* idx = reinterpret_cast<int32_t*>(key + N);
  const int64_t kk = k < n ? k : n;
  if (kk > 0) {
    topk_init_kernel<<<blocks_for(N, 256), 256, 0, s>>>(score, n, N, key, idx);
    bitonic_sort(key, idx, N, 0, s);
    const int64_t K2 = pow2ceil(kk);  // <= N: re-sort the selected ids ascending (CPU order of sel)
    topk_mask_kernel<<<blocks_for(K2, 256), 256, 0, s>>>(idx, kk, K2);
    bitonic_sort(key, idx, K2, 1, s);
  }
  topk_out_kernel<<<blocks_for(k, 256), 256, 0, s>>>(idx, kk, k, out);
  check_launch("topk_out_kernel");
}

}  // namespace dsv4::cudaops
