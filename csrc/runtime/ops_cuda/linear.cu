// Quantized GEMV with in-kernel dequantization (dense projections, shared expert, routed experts), the
// embedding row gather and two vector helpers (bias add, scale): ops_cpu/linear.cpp on the device.  One warp per
// output row: the warp stages a chunk of its row's blocks in shared memory with 16-byte loads (coalesced,
// whatever the block size), then each lane decodes its elements and dots them with the f32 activations, up to 8
// vectors per pass so a short chunk reads the weights once.  Accumulation is fp32 (DeepSeek-V4's
// inference/model.py), the CPU runtime's exact mode; activations are not quantized.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/dequant.cuh"
#include "runtime/ops_cuda/ops_cuda.h"
#include "runtime/ops_cuda/plan.h"

namespace dsv4::cudaops {

static_assert(kF32 == static_cast<int>(QType::F32) && kF16 == static_cast<int>(QType::F16) &&
                  kQ8_0 == static_cast<int>(QType::Q8_0) && kQ4_K == static_cast<int>(QType::Q4_K) &&
                  kQ6_K == static_cast<int>(QType::Q6_K) && kBF16 == static_cast<int>(QType::BF16) &&
                  kMXFP4 == static_cast<int>(QType::MXFP4),
              "dequant.cuh type ids must equal quant/qtypes.h");

namespace {

template <int T>
using Geom = GemvGeom<T>;

constexpr int kWarps = 8;

// grid (ceil(rows / 8), n_slots), block 256, dynamic smem 8 * chunk * bytes.
template <int T>
__global__ void __launch_bounds__(256)
    gemv_kernel(const uint8_t* __restrict__ w, int64_t rows, int64_t cols, const int32_t* __restrict__ ids,
                const float* __restrict__ x, int64_t x_slot_stride, int n_vec, float* __restrict__ y, int64_t y_stride,
                int64_t y_slot_stride, int load_bytes) {
  using G = Geom<T>;
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int slot = blockIdx.y;
  if (r >= rows) return;
  int64_t expert = 0;
  if (ids) {
    expert = ids[slot];
    if (expert < 0) return;
  }
  const int64_t nblocks = cols / G::elems;
  const size_t row_bytes = static_cast<size_t>(nblocks) * G::bytes;
  const uint8_t* wr =
      w + (static_cast<size_t>(expert) * static_cast<size_t>(rows) + static_cast<size_t>(r)) * row_bytes;
  x += slot * x_slot_stride;
  uint8_t* sm = smem + warp * (G::chunk * G::bytes);
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c0 = 0; c0 < nblocks; c0 += G::chunk) {
    const int nb = static_cast<int>(nblocks - c0 < G::chunk ? nblocks - c0 : G::chunk);
    const int nbytes = nb * G::bytes;
    const uint8_t* src = wr + static_cast<size_t>(c0) * G::bytes;
    __syncwarp();
    // chunk offsets are multiples of the chunk size (whole 16-byte words), so every load is aligned
    if (load_bytes == 16) {
#pragma unroll 4
      for (int i = lane; i < nbytes / 16; i += 32)
        reinterpret_cast<uint4*>(sm)[i] = __ldg(reinterpret_cast<const uint4*>(src) + i);
    } else if (load_bytes == 8) {
      for (int i = lane; i < nbytes / 8; i += 32)
        reinterpret_cast<uint2*>(sm)[i] = __ldg(reinterpret_cast<const uint2*>(src) + i);
    } else if (load_bytes == 4) {
      for (int i = lane; i < nbytes / 4; i += 32)
        reinterpret_cast<uint32_t*>(sm)[i] = __ldg(reinterpret_cast<const uint32_t*>(src) + i);
    } else {
      for (int i = lane; i < nbytes; i += 32) sm[i] = __ldg(src + i);
    }
    __syncwarp();
    gemv_lane<T>(sm, lane, nb, c0, x, cols, n_vec, acc);
  }
  float* yo = y + slot * y_slot_stride + r;
#pragma unroll
  for (int t = 0; t < 8; ++t) {
    if (t < n_vec) {
      const float s = warp_sum(acc[t]);
      if (lane == 0) yo[t * y_stride] = s;
    }
  }
}

// One thread per 8 elements of the gathered rows.
template <int T>
__global__ void dequant_rows_kernel(const uint8_t* __restrict__ w, int64_t cols, const int32_t* __restrict__ idx, int n,
                                    float* __restrict__ out) {
  using G = Geom<T>;
  const int64_t per_row = cols / 8;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= per_row * n) return;
  const int64_t row = i / per_row, e = (i % per_row) * 8;
  const size_t row_bytes = static_cast<size_t>(cols / G::elems) * G::bytes;
  const uint8_t* b = w + static_cast<size_t>(idx[row]) * row_bytes + static_cast<size_t>(e / G::elems) * G::bytes;
  float v[8];
  dequant8<T>(b, static_cast<int>(e % G::elems), v);
  float* o = out + row * cols + e;
#pragma unroll
  for (int k = 0; k < 8; ++k) o[k] = v[k];
}

__global__ void add_rows_kernel(float* y, const float* __restrict__ b, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += b[i];
}

__global__ void scale_kernel(float* y, int64_t n, float a) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] *= a;
}

template <int T>
void launch_gemv(const CudaGemvConfig& c, const void* w, int64_t rows, int64_t cols, const int32_t* ids, const float* x,
                 int64_t xs, int n_vec, float* y, int64_t ys, int64_t yss, cudaStream_t s) {
  int load = c.load_bytes;  // the base pointer must be aligned too (slices of a tensor may not be)
  while (load > 1 && reinterpret_cast<uintptr_t>(w) % load != 0) load /= 2;
  gemv_kernel<T>
      <<<dim3(static_cast<unsigned>(c.grid_x), static_cast<unsigned>(c.grid_y)), c.threads, c.smem_bytes, s>>>(
          static_cast<const uint8_t*>(w), rows, cols, ids, x, xs, n_vec, y, ys, yss, load);
  check_launch("gemv_kernel");
}

void dispatch_gemv(int qtype, const void* w, int64_t rows, int64_t cols, const int32_t* ids, int n_slots,
                   const float* x, int64_t xs, int n_vec, float* y, int64_t ys, int64_t yss, cudaStream_t s) {
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, n_vec, n_slots);
  switch (qtype) {
    case kF32:
      return launch_gemv<kF32>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kF16:
      return launch_gemv<kF16>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kBF16:
      return launch_gemv<kBF16>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kQ8_0:
      return launch_gemv<kQ8_0>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kMXFP4:
      return launch_gemv<kMXFP4>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kQ4_K:
      return launch_gemv<kQ4_K>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    case kQ6_K:
      return launch_gemv<kQ6_K>(c, w, rows, cols, ids, x, xs, n_vec, y, ys, yss, s);
    default:
      break;  // cuda_gemv_config threw already
  }
}

}  // namespace

void gemv(int qtype, const void* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y, int64_t y_stride,
          cudaStream_t s) {
  dispatch_gemv(qtype, w, rows, cols, nullptr, 1, x, 0, n_vec, y, y_stride, 0, s);
}

void moe_gemv(int qtype, const void* w, int64_t rows, int64_t cols, const int32_t* ids, int n_slots, const float* x,
              int64_t x_slot_stride, float* y, int64_t y_slot_stride, cudaStream_t s) {
  dispatch_gemv(qtype, w, rows, cols, ids, n_slots, x, x_slot_stride, 1, y, 0, y_slot_stride, s);
}

void dequant_rows(int qtype, const void* w, int64_t cols, const int32_t* idx, int n, float* out, cudaStream_t s) {
  if (n <= 0) return;
  cuda_gemv_config(static_cast<QType>(qtype), 1, cols, 1, 1);  // validates type and width
  const unsigned blocks = blocks_for(cols / 8 * n, 256);
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  switch (qtype) {
    case kF32:
      dequant_rows_kernel<kF32><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kF16:
      dequant_rows_kernel<kF16><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kBF16:
      dequant_rows_kernel<kBF16><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kQ8_0:
      dequant_rows_kernel<kQ8_0><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kMXFP4:
      dequant_rows_kernel<kMXFP4><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kQ4_K:
      dequant_rows_kernel<kQ4_K><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    case kQ6_K:
      dequant_rows_kernel<kQ6_K><<<blocks, 256, 0, s>>>(wb, cols, idx, n, out);
      break;
    default:
      break;
  }
  check_launch("dequant_rows_kernel");
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

// Host execution of the GEMV kernel's per-lane code and its warp reduction (xor-shuffle tree), lane by
// lane: the CPU tests check the kernel's indexing and order without a device.
void gemv_emulate_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y) {
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, n_vec, 1);
  const int64_t nblocks = cols / c.block_elems;
  std::vector<float> acc(32 * 8);
  for (int64_t r = 0; r < rows; ++r) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const uint8_t* wr = w + static_cast<size_t>(r) * c.row_bytes;
    for (int64_t c0 = 0; c0 < nblocks; c0 += c.chunk_blocks) {
      const int nb = static_cast<int>(std::min<int64_t>(nblocks - c0, c.chunk_blocks));
      const uint8_t* sm = wr + static_cast<size_t>(c0) * c.block_bytes;  // the staged bytes are these bytes
      for (int lane = 0; lane < 32; ++lane) {
        float* a = &acc[static_cast<size_t>(lane) * 8];
        switch (qtype) {
          case kF32:
            gemv_lane<kF32>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kF16:
            gemv_lane<kF16>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kBF16:
            gemv_lane<kBF16>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kQ8_0:
            gemv_lane<kQ8_0>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kMXFP4:
            gemv_lane<kMXFP4>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kQ4_K:
            gemv_lane<kQ4_K>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          case kQ6_K:
            gemv_lane<kQ6_K>(sm, lane, nb, c0, x, cols, n_vec, a);
            break;
          default:
            break;
        }
      }
    }
    for (int t = 0; t < n_vec; ++t) {
      float v[32];
      for (int l = 0; l < 32; ++l) v[l] = acc[static_cast<size_t>(l) * 8 + t];
      for (int o = 16; o > 0; o >>= 1) {  // warp_sum: every lane adds its xor partner's value
        float nv[32];
        for (int l = 0; l < 32; ++l) nv[l] = v[l] + v[l ^ o];
        for (int l = 0; l < 32; ++l) v[l] = nv[l];
      }
      y[t * rows + r] = v[0];
    }
  }
}

// Host execution of the same decoders (no device needed): the CPU tests compare it with csrc/quant.
void dequant_rows_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, float* out) {
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, 1, 1);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t e = 0; e < cols; e += 8) {
      const uint8_t* b =
          w + static_cast<size_t>(r) * c.row_bytes + static_cast<size_t>(e / c.block_elems) * c.block_bytes;
      const int j = static_cast<int>(e % c.block_elems);
      float* o = out + r * cols + e;
      switch (qtype) {
        case kF32:
          dequant8<kF32>(b, j, o);
          break;
        case kF16:
          dequant8<kF16>(b, j, o);
          break;
        case kBF16:
          dequant8<kBF16>(b, j, o);
          break;
        case kQ8_0:
          dequant8<kQ8_0>(b, j, o);
          break;
        case kMXFP4:
          dequant8<kMXFP4>(b, j, o);
          break;
        case kQ4_K:
          dequant8<kQ4_K>(b, j, o);
          break;
        case kQ6_K:
          dequant8<kQ6_K>(b, j, o);
          break;
        default:
          break;
      }
    }
}

}  // namespace dsv4::cudaops
