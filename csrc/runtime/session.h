// Runtime (model + threads + numerics options) and Session (one sequence's state: per-layer window
// ring buffer, compressed KV, indexer KV and compressor running states; spec §5.8, §11) with the full
// forward pass over chunks of any length (prefill, chunked prefill, decode are one code path),
// optional named taps for parity tests, and save/restore of the state to a file.
// Threading: a Runtime is immutable after construction (its pool takes concurrent callers) and may be
// shared by any number of sessions on any threads; a Session is one sequence and refuses a second
// concurrent call (SessionBusy) instead of serialising it, because interleaved tokens would be garbage.
// MTP draft decoding is not implemented here yet (the MTP block's weights are loaded and validated).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/model.h"
#include "runtime/ops_cpu/ops.h"
#include "runtime/thread_pool.h"

namespace dsv4 {

// KV storage.  FP8: the leading `n_fp8` dims of a row as e4m3 with one E8M0 scale byte per `fp8_block`
// (the QAT grid, so storage is lossless for QAT'd rows), the remaining (rope) dims as bf16, rows padded to
// 4 bytes: 448 + 7 + 128 + 1 = 584 B per main entry and 128 + 4 = 132 B per indexer entry (spec §5.8, §11).
enum class KvDtype : int { F32 = 0, BF16 = 1, FP8 = 2 };

struct RuntimeOptions {
  int threads = 0;    // 0 = all hardware threads
  bool exact = false; // f32 activations against dequantized weight rows (reference math)
  bool qat = true;    // spec §9.2 QAT simulation of KV / indexer (as the official model)
};

class Runtime {
 public:
  // mtp_path: optional MTP sidecar GGUF (mtp-OUT.gguf); a main file with inline nextn blocks also works.
  Runtime(const std::string& path, const RuntimeOptions& opts, const std::string& mtp_path = "");
  const Model& model() const { return model_; }
  const Model* mtp() const { return mtp_ ? mtp_.get() : (model_.has_mtp() ? &model_ : nullptr); }
  const RuntimeOptions& options() const { return opts_; }
  OpCtx ctx() const;
  const std::vector<float>& freqs(int ratio) const { return ratio ? freqs_comp_ : freqs_win_; }
  ThreadPool& pool() const { return *pool_; }
  // 64-bit FNV-1a over the tensor directory (names, types, shapes) and a sample of every tensor's bytes
  // (first and last 64), MTP model included: what a session state file is tied to.  Computed on first
  // use (touches one page per tensor), thread-safe.
  uint64_t fingerprint() const;
  // GgufFile::populate for the model and its MTP file; bytes populated.
  size_t prefetch() const;

 private:
  mutable std::once_flag fp_once_;
  mutable uint64_t fp_ = 0;
  Model model_;
  std::unique_ptr<Model> mtp_;
  RuntimeOptions opts_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<float> freqs_win_, freqs_comp_;
};

// Row store of a KV cache in its storage dtype.
// A second call on a Session while one is running on another thread (a Python RuntimeError).
struct SessionBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A session state file that cannot be restored into this session (another model, dtype, truncated,
// corrupt); the session is left unchanged.  A Python ValueError.
struct StateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class KvRows {
 public:
  void init(int64_t rows, int64_t dim, KvDtype dt, int64_t n_fp8 = 0, int64_t fp8_block = 64);
  void write(int64_t r, const float* x);
  void read(int64_t r, float* out) const;
  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  // Bytes of the full capacity (what the cache holds at the session's context length).
  size_t bytes() const { return static_cast<size_t>(rows_) * row_bytes_; }
  void reserve(int64_t n_rows);
  std::vector<uint8_t> raw(int64_t n_rows) const;
  void set_raw(const uint8_t* p, int64_t n_rows);
  size_t row_bytes() const { return row_bytes_; }

 private:
  KvDtype dt_ = KvDtype::F32;
  int64_t rows_ = 0, dim_ = 0, n_fp8_ = 0, fp8_block_ = 64, stored_ = 0;
  size_t row_bytes_ = 0;
  std::vector<uint8_t> u8_;
  std::vector<float> f32_;
  std::vector<uint16_t> bf16_;
};

struct LayerState {
  KvRows window, comp_kv, idx_kv;
  int64_t n_comp = 0, n_idx = 0;
  CompressorState comp, idx_comp;
};

class Session {
 public:
  // use_mtp: keep the main model's pre-hc_head streams so that mtp_forward can run the draft block.
  Session(const Runtime& rt, int64_t ctx, KvDtype kv, bool use_mtp = false);
  // Consume tokens at positions pos()..; returns logits [n_out][vocab] (n_out = T if all_logits else 1).
  std::vector<float> forward(const int32_t* tokens, int64_t T, bool all_logits);
  // MTP draft block (spec §7) on the oldest `T` pending main streams, stream i paired with tokens[i]
  // (the token after that stream's position); returns draft logits [n_out][vocab].
  std::vector<float> mtp_forward(const int32_t* tokens, int64_t T, bool all_logits);
  // Accessors are safe while another thread runs forward (atomics / values fixed at construction).
  int64_t mtp_pos() const { return mtp_pos_.load(); }
  int64_t mtp_pending() const { return pending_rows_.load(); }
  int64_t pos() const { return pos_.load(); }
  int64_t ctx() const { return ctx_; }
  void reset();
  void save(const std::string& path) const;
  void load(const std::string& path);
  // Analytic bytes per token of the compressed caches (spec §11) and the allocated total.
  double kv_bytes_per_token() const { return kv_per_token_; }
  size_t kv_bytes_total() const { return kv_total_; }
  // Taps: fnmatch-style patterns ('*' and '?'), e.g. "layers.*.q"; cleared by set_taps / take_taps.
  void set_taps(const std::vector<std::string>& patterns);
  std::map<std::string, std::pair<std::vector<float>, int64_t>> take_taps();  // name -> (data, row width)

 private:
  void block_forward(const Model& M, int l, LayerState& S, std::vector<float>& X, const int32_t* tokens, int64_t T,
                     int64_t p0, const std::string& pre);
  void attention(const Model& M, int l, LayerState& S, const float* h, int64_t T, int64_t p0, float* out,
                 const std::string& pre);
  void moe(const Model& M, int l, const float* h, const int32_t* tokens, int64_t T, float* out, const std::string& pre);
  std::vector<float> head(const Model& M, const float* X, int64_t n_out, const std::vector<float>& norm,
                          const std::string& pre);
  void check_tokens(const Model& M, const int32_t* tokens, int64_t T) const;
  bool want(const std::string& name) const;
  void reset_state();
  // Held by every public call that reads or writes the state; try-locked (SessionBusy when taken).
  class Guard {
   public:
    Guard(const Session& s, const char* what);
    ~Guard() { s_.busy_.store(false, std::memory_order_release); }
   private:
    const Session& s_;
  };
  mutable std::atomic<bool> busy_{false};
  void tap(const std::string& name, const float* x, int64_t n, int64_t width);

  const Runtime& rt_;
  int64_t ctx_;
  KvDtype kv_;
  std::atomic<int64_t> pos_{0};
  std::vector<LayerState> layers_;
  bool use_mtp_ = false;
  LayerState mtp_state_;
  std::atomic<int64_t> mtp_pos_{0};
  std::vector<float> pending_;  // [rows][hc*D] main streams not yet consumed by mtp_forward
  std::atomic<int64_t> pending_rows_{0};  // pending_.size() / (hc*D), readable from other threads
  double kv_per_token_ = 0;
  size_t kv_total_ = 0;
  std::vector<std::string> tap_patterns_;
  std::map<std::string, std::pair<std::vector<float>, int64_t>> taps_;
};

}  // namespace dsv4
