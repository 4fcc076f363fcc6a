// DeepSeek-V4 model over a GGUF file (llama.cpp `deepseek4` keys and tensor names, as llama.cpp's converter writes them):
// hyper-parameters, per-block weight views (zero-copy into the mmap; small 1-D tensors are decoded to
// f32 once) and the validation of every shape and type against the hyper-parameters.
// It holds no per-sequence state (session.h) and runs no math (ops_cpu/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "quant/qtypes.h"
#include "runtime/gguf_file.h"

namespace dsv4 {

// A 2-D weight in ggml order: `rows` rows of `cols` elements, row-major, any supported QType.
struct WeightView {
  QType type = QType::F32;
  int64_t cols = 0, rows = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  std::string name;
  bool valid() const { return data != nullptr; }
  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  // Rows [r0, r0 + n) as a view (expert slabs, output groups).
  WeightView slice(int64_t r0, int64_t n) const;
};

struct ModelConfig {
  int64_t vocab = 0, dim = 0, n_layers = 0, n_mtp = 0, n_heads = 0, head_dim = 512, rope_dim = 64;
  int64_t q_lora_rank = 0, o_groups = 0, o_lora_rank = 0, window = 128;
  int64_t n_experts = 0, n_used = 0, moe_inter = 0, n_hash = 0;
  int64_t idx_heads = 0, idx_dim = 0, idx_topk = 0;
  int64_t hc = 4, sinkhorn_iters = 20;
  float hc_eps = 1e-6f, norm_eps = 1e-6f, route_scale = 1.f;
  bool norm_topk = true;
  float rope_theta = 10000.f, compress_rope_theta = 160000.f, rope_factor = 1.f;
  int64_t original_ctx = 0;
  float beta_fast = 32.f, beta_slow = 1.f;
  int64_t ctx_train = 0;
  std::vector<int> ratios;          // per block incl. MTP
  std::vector<float> swiglu_exp;    // per block
  std::vector<float> swiglu_shexp;  // per block
  int64_t nope_dim() const { return head_dim - rope_dim; }
};

struct CompressorWeights {
  WeightView wkv, wgate;    // [coff*d rows, D cols]
  std::vector<float> ape;   // [m][coff*d]
  std::vector<float> norm;  // [d]
  int ratio = 0, d = 0, coff = 1;
};

// Every WeightView member here (and in CompressorWeights) must be listed by Model::views(): weight overrides
// (Runtime::override_weight) find the views to replace through it.
struct BlockWeights {
  int ratio = 0;
  bool hash = false;
  std::vector<float> attn_norm, ffn_norm, sinks, q_norm, kv_norm;
  WeightView hc_attn_fn, hc_ffn_fn;  // [24 rows, hc*D]
  std::vector<float> hc_attn_base, hc_attn_scale, hc_ffn_base, hc_ffn_scale;
  WeightView wq_a, wq_b, wkv, wo_a, wo_b;
  CompressorWeights comp, idx_comp;
  WeightView idx_wq_b, idx_proj;
  WeightView gate;                   // [E rows, D]
  std::vector<float> bias;           // [E] (non-hash)
  const int32_t* tid2eid = nullptr;  // [V][K] (hash)
  WeightView w1, w2, w3;             // stacked experts: w1/w3 [E*I rows, D], w2 [E*D rows, I]
  WeightView sw1, sw2, sw3;          // shared expert
  // MTP block only
  WeightView eh_proj;  // [D rows, 2D cols]: [enorm(e) | hnorm(h)]
  std::vector<float> enorm, hnorm, mtp_norm;
};

class Model {
 public:
  explicit Model(const std::string& path);
  const ModelConfig& cfg() const { return cfg_; }
  const GgufFile& file() const { return *file_; }
  const BlockWeights& block(int i) const { return blocks_[static_cast<size_t>(i)]; }
  int n_blocks() const { return static_cast<int>(blocks_.size()); }
  bool has_mtp() const { return cfg_.n_mtp > 0; }
  // Every loaded WeightView (embed, head, hc_head_fn, each block's matrices, compressor/indexer views, eh_proj), as
  // mutable pointers for Runtime::override_weight; the blocks are never resized after construction, so they stay valid.
  std::vector<WeightView*> views();
  WeightView embed, head, hc_head_fn;
  std::vector<float> out_norm, hc_head_base, hc_head_scale;
  std::string arch;
  bool mtp_only = false;  // an MTP sidecar GGUF: only the blocks >= n_layers are loaded

 private:
  std::unique_ptr<GgufFile> file_;
  ModelConfig cfg_;
  std::vector<BlockWeights> blocks_;
};

// Decode a whole (small) tensor of any supported type to f32.
std::vector<float> tensor_to_f32(const GgufTensor& t);

}  // namespace dsv4
