// Runtime (model + threads + numerics options) and Session (one sequence's state: per-layer KV caches
// and compressor states, kv_cache.h) with the forward pass over chunks of any length (prefill, chunked
// prefill, decode and batched decode of several sessions are one code path): embedding, mHC around the attention and MoE sub-layers
// (ops_cpu/layer.h), head, MTP draft block; optional named taps for parity tests; save/restore of the
// state to a file (session_state.cpp).
// Threading: a Runtime is immutable after construction (its pool takes concurrent callers) and may be
// shared by any number of sessions on any threads, except for weight overrides (override_weight /
// clear_overrides), which refuse to run while any session call is running and vice versa; a Session is one
// sequence and refuses a second concurrent call (SessionBusy) instead of serialising it, because interleaved
// tokens would be garbage.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/ops_cpu/layer.h"
#include "runtime/ops_cpu/ops.h"
#include "runtime/taps.h"
#include "runtime/thread_pool.h"

namespace dsv4 {

struct RuntimeOptions {
  int threads = 0;     // 0 = all hardware threads
  bool exact = false;  // f32 activations against dequantized weight rows (reference math)
  bool qat = true;     // the QAT simulation (DeepSeek-V4's inference/model.py) of KV / indexer (as the official model)
  // The MTP block's output head (vocab x dim, the largest tensor a draft reads): a copy in this type when it
  // takes fewer bytes than the file's head, made on the first draft; -1 = the file's head.  Drafts are
  // checked by the target model, so they need no exactness; exact mode always uses the file's head.
  int draft_head = static_cast<int>(QType::Q8_0);
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
  // The head the MTP block drafts with (options().draft_head); the copy is made on first use (again after a
  // weight override or clear_overrides), thread-safe.
  const WeightView& draft_head() const;

  // Weight overrides (`dsv4-gguf sensitivity`: a probe's tensors at a low type without writing a model file).
  // override_weight replaces every WeightView named `name` of the main model (a 2-D/3-D matrix: embed, head,
  // hc_*_fn, a block's attention/MoE/compressor/indexer matrices, the stacked experts) by `nbytes` bytes of
  // `type`: rows and cols unchanged, row_bytes from `type`; the bytes are copied and owned by the runtime until
  // clear_overrides, which puts every original view back.  Overriding a name again replaces the earlier
  // override (clear_overrides still restores the file's weights).  Refused with std::invalid_argument, the
  // runtime unchanged: an unknown name, a tensor that is not a weight matrix (1-D tensors are decoded to f32 at
  // load), the MTP block's tensors (sidecar or inline; only the main model's weights), a type the kernels do not
  // multiply, a row length not a multiple of the type's block, a byte count other than rows x row_bytes, a
  // runtime whose weights were uploaded to a CUDA device (overrides are CPU only).  No session call may run
  // during the swap: override_weight / clear_overrides throw SessionBusy while one runs, and a session call
  // started during a swap throws SessionBusy.  Sessions read the new weights from their next call on; what they
  // cached before (KV rows, compressor states) was computed with the old weights, so reset them.  What is
  // derived from the weights follows: the MTP draft-head copy is made again on the next draft, and
  // fingerprint() mixes in every override (name, type, sampled bytes), so a session state saved under an
  // override does not load into the plain model (StateError) nor the reverse.
  void override_weight(const std::string& name, QType type, const uint8_t* data, size_t nbytes);
  void clear_overrides();
  // Names currently overridden, sorted.
  std::vector<std::string> overridden() const;
  // Called by CudaModel's constructor (bindings): weights copied to a device are not swapped by overrides, so
  // override_weight is refused from then on; throws std::invalid_argument while overrides are active.
  void note_device_upload() const;

 private:
  friend class Session;  // Session::Guard counts running session calls against a weight swap
  struct Override {
    std::shared_ptr<uint8_t> bytes;  // 64-byte aligned, nbytes long
    size_t nbytes = 0;
    QType type = QType::F32;
    std::vector<std::pair<WeightView*, WeightView>> originals;  // each view of the name and its file state
  };
  void begin_swap(const char* what);  // SessionBusy while a session call or another swap runs
  void drop_draft_head();
  mutable std::mutex draft_mu_;
  mutable bool draft_made_ = false;
  mutable std::vector<uint8_t> draft_data_;
  mutable WeightView draft_head_;
  mutable std::once_flag fp_once_;
  mutable uint64_t fp_ = 0;
  std::map<std::string, Override> overrides_;
  mutable std::atomic<int> running_{0};  // session calls in progress (Session::Guard)
  std::atomic<bool> swapping_{false};    // an override_weight / clear_overrides in progress
  mutable std::atomic<bool> uploaded_{false};
  Model model_;
  std::unique_ptr<Model> mtp_;
  RuntimeOptions opts_;
  std::unique_ptr<ThreadPool> pool_;
  Impl impl_ = Impl::Auto;  // the kernel level, resolved once (DSV4_KERNELS etc. are read here, not per product)
  std::vector<float> freqs_win_, freqs_comp_;
};

// A second call on a Session while one is running on another thread (a Python RuntimeError).
struct SessionBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A session state file that cannot be restored into this session (another model, dtype, truncated,
// corrupt); the session is left unchanged.  A Python ValueError.
struct StateError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Session {
 public:
  // use_mtp: keep the main model's pre-hc_head streams so that mtp_forward can run the draft block.
  Session(const Runtime& rt, int64_t ctx, KvDtype kv, bool use_mtp = false);
  // Consume tokens at positions pos()..; returns logits [n_out][vocab] (n_out = T if all_logits else 1).
  Logits forward(const int32_t* tokens, int64_t T, bool all_logits);
  // Batched decode: session i consumes tokens[i] at its own position, all of them in one forward pass (every
  // weight matrix streamed once for the batch); returns logits [n][vocab], row i bit-identical to what
  // sessions[i]->forward(&tokens[i], 1, false) gives, and each session's state afterwards too (undo journal
  // and pending MTP streams included).  Everything is checked before any state changes: an empty batch, a
  // null, a session of another Runtime, one given twice, one with taps set, a bad token (invalid_argument /
  // out_of_range), a full context (length_error), a session busy on another thread (SessionBusy).
  static Logits forward_batch(const std::vector<Session*>& sessions, const int32_t* tokens);
  // MTP draft block (DeepSeek-V4's inference/model.py) on the oldest `T` pending main streams, stream i paired with tokens[i]
  // (the token after that stream's position); returns draft logits [n_out][vocab].
  Logits mtp_forward(const int32_t* tokens, int64_t T, bool all_logits);
  // The MTP block applied to its own output (drafts 2..k of a speculative step): consumes the output stream of
  // the last MTP position with `token` (the previous draft) at the next MTP position; returns draft logits
  // [vocab].  These positions are provisional: the next mtp_forward or mtp_discard undoes them exactly.
  Logits mtp_self(int32_t token);
  void mtp_discard();
  // Accessors are safe while another thread runs forward (atomics / values fixed at construction).
  int64_t mtp_pos() const { return mtp_pos_.load(); }
  int64_t mtp_pending() const { return pending_rows_.load(); }
  int64_t pos() const { return pos_.load(); }
  int64_t ctx() const { return ctx_; }
  void reset();
  // Speculative decoding: checkpoint() starts an undo journal at pos() (kv_cache.h Journal); rollback(n)
  // returns the session to its first n tokens (checkpoint pos <= n <= pos()) exactly, without replaying
  // anything: window rows, compressor states and entry counts of every layer, pending MTP streams.  A
  // chunk longer than the attention window drops the checkpoint (its rows are not all kept); reset/load too.
  void checkpoint();
  void rollback(int64_t n);
  int64_t checkpoint_pos() const { return ckpt_.load(); }
  void save(const std::string& path) const;
  void load(const std::string& path);
  // Analytic bytes per token of the compressed caches (DeepSeek-V4's KV layout) and the allocated total.
  double kv_bytes_per_token() const { return kv_per_token_; }
  size_t kv_bytes_total() const { return kv_total_; }
  // Taps: fnmatch-style patterns ('*' and '?'), e.g. "layers.*.q"; cleared by set_taps / take_taps.
  void set_taps(const std::vector<std::string>& patterns);
  std::map<std::string, std::pair<std::vector<float>, int64_t>> take_taps();  // name -> (data, row width)

 private:
  // One block over the rows of X ([N][hc*D], N = the sum of seqs[i].T; tokens [N]); seqs name each
  // sequence's state (this session's own for forward, the batch's sessions' for forward_batch).
  void block_forward(const Model& M, int l, const std::vector<SeqRows>& seqs, std::vector<float>& X,
                     const int32_t* tokens, int64_t N, const std::string& pre);
  Logits head(const Model& M, const WeightView& W, const float* X, int64_t n_out, const std::vector<float>& norm,
              const std::string& pre);
  void check_tokens(const Model& M, const int32_t* tokens, int64_t T) const;
  void reset_state();
  // Held by every public call that reads or writes the state; try-locked (SessionBusy when taken).
  class Guard {
   public:
    Guard(const Session& s, const char* what);
    ~Guard();

   private:
    const Session& s_;
  };
  mutable std::atomic<bool> busy_{false};

  const Runtime& rt_;
  int64_t ctx_;
  KvDtype kv_;
  std::atomic<int64_t> pos_{0};
  std::atomic<int64_t> ckpt_{-1};  // checkpoint position, -1 = none
  std::vector<LayerState> layers_;
  bool use_mtp_ = false;
  LayerState mtp_state_;
  std::atomic<int64_t> mtp_pos_{0};
  std::vector<float> pending_;         // [rows][hc*D] main streams not yet consumed by mtp_forward
  std::vector<float> mtp_last_;        // [hc*D] output streams of the last MTP position (mtp_self's input)
  std::vector<float> mtp_last_saved_;  // mtp_last_ before the first provisional mtp_self step
  int64_t mtp_self_from_ = -1;         // mtp_pos before the provisional mtp_self steps, -1 = none
  void mtp_discard_locked();
  // The MTP block's window KV rows for T positions from p0 whose output is not needed (X: their input streams).
  void mtp_kv_rows(const Model& M, const float* X, int64_t T, int64_t p0);
  std::atomic<int64_t> pending_rows_{0};  // pending_.size() / (hc*D), readable from other threads
  double kv_per_token_ = 0;
  size_t kv_total_ = 0;
  Taps taps_;
};

}  // namespace dsv4
