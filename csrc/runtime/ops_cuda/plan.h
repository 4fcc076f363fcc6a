// Host-side planning for the CUDA backend, compiled into every build (no CUDA headers): which GGUF types
// the GEMV kernels decode in-kernel, their launch geometry, and the device arena layout of a model's
// weights (every WeightView as stored, plus the small f32 vectors and the hash-routing tables).
// It allocates nothing on a device; ops_cuda/session_cuda.cu (CudaModel) does the upload from this plan.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/model.h"

namespace dsv4 {

// Types the CUDA GEMV decodes in-kernel (ops_cuda/dequant.cuh).
bool cuda_gemv_supported(QType t);

// Launch geometry of the quantized GEMV (ops_cuda/linear.cu): one warp per output row, `warps` rows per
// thread block; a warp stages `chunk_blocks` weight blocks of its row in shared memory, then each lane
// decodes `lane_elems` elements of them (per sub-chunk of 32 lanes: one block per lane for 32-element
// types, 4 lanes per block for 256-element types).  grid = (ceil(rows / warps), n_slots).  `load_bytes`: width of the staging loads, the largest of
// 16, 8, 4, 1 that divides the row size (rows of the Flash widths are whole 16-byte words).
struct CudaGemvConfig {
  int threads = 0, warps = 0;
  int block_elems = 0, block_bytes = 0, chunk_blocks = 0, lane_elems = 0;
  int64_t grid_x = 0, grid_y = 0;
  size_t smem_bytes = 0, row_bytes = 0;
  int load_bytes = 1;
};
constexpr int kCudaGemvMaxVec = 8;  // activation vectors per launch (decode: 1; short prefill chunks: <= 8)
CudaGemvConfig cuda_gemv_config(QType t, int64_t rows, int64_t cols, int64_t n_vec, int64_t n_slots);

// Device arena layout: entries in a fixed order, each at a 256-byte aligned offset.
struct CudaUploadEntry {
  enum Kind : int { Weight = 0, F32 = 1, I32 = 2 };
  std::string name;
  Kind kind = Weight;
  QType type = QType::F32;     // Weight: the stored type; F32/I32: F32
  int64_t rows = 0, cols = 0;  // Weight: as the view; vectors: rows = 1, cols = n
  size_t bytes = 0, offset = 0;
  const void* src = nullptr;  // host source (mmap or decoded vector)
};
struct CudaUploadPlan {
  std::vector<CudaUploadEntry> entries;
  size_t total_bytes = 0;
  static constexpr size_t kAlign = 256;
  const CudaUploadEntry* find(const std::string& name) const;
};
// Throws std::invalid_argument naming the tensor when a weight's type has no CUDA kernel.
CudaUploadPlan plan_cuda_upload(const Model& m);

}  // namespace dsv4
