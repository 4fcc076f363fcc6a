// CUDA backend of the runtime: the model's weights resident on the device (uploaded once from the GGUF
// mmap per plan_cuda_upload) and a session whose KV caches and compressor states live on the device.
// The forward pass mirrors Session (session.cpp) op for op, one token at a time (decode-shaped; a
// prefill is a loop of steps), with no host synchronisation inside a step: routing, indexer top-k and
// expert selection stay on the device.  Not yet: FP8/BF16 KV on the device, taps, MTP, save/restore,
// batched prefill, CUDA graphs.  No CUDA types here (pimpl), so host code can include it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/session.h"

namespace dsv4 {

struct CudaModelImpl;
struct CudaSessionImpl;

class CudaModel {
 public:
  // Uploads every weight of rt.model() to device `device`; throws std::runtime_error on CUDA errors and
  // std::invalid_argument for tensor types without a CUDA kernel (naming the tensor).
  CudaModel(const Runtime& rt, int device = 0);
  ~CudaModel();
  const Runtime& runtime() const { return rt_; }
  size_t device_bytes() const;
  CudaModelImpl& impl() const { return *impl_; }

 private:
  const Runtime& rt_;
  std::unique_ptr<CudaModelImpl> impl_;
};

class CudaSession {
 public:
  CudaSession(const CudaModel& m, int64_t ctx);
  ~CudaSession();
  // Same contract as Session::forward: logits [n_out][vocab] (n_out = T if all_logits else 1).
  std::vector<float> forward(const int32_t* tokens, int64_t T, bool all_logits);
  int64_t pos() const { return pos_; }
  int64_t ctx() const { return ctx_; }
  void reset();
  size_t device_bytes() const;

 private:
  const CudaModel& m_;
  int64_t ctx_, pos_ = 0;
  std::unique_ptr<CudaSessionImpl> impl_;
};

}  // namespace dsv4
