// The DeepSeek-V4 forward pass (DeepSeek-V4's inference/model.py) over a chunk of tokens, layer by layer: embedding, mHC
// mixing around the attention and MoE sub-layers (ops_cpu/attention.cpp, ops_cpu/moe.cpp), the output
// head and the MTP draft block; the Runtime (weights fingerprint, prefetch, weight overrides) and the KV byte
// accounting.
// The session file is in session_state.cpp, KV row storage in kv_cache.cpp.
#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <new>
#include <numeric>
#include <stdexcept>

#include "core/fp_decode.h"
#include "runtime/fnv.h"
#include "runtime/ops_cpu/layer.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace dsv4 {

// ------------------------------------------------------------------------------------------------
size_t Runtime::prefetch() const { return model_.file().populate() + (mtp_ ? mtp_->file().populate() : 0); }

Runtime::Runtime(const std::string& path, const RuntimeOptions& opts, const std::string& mtp_path)
    : model_(path), opts_(opts) {
  if (model_.mtp_only)
    throw GgufError(path +
                    ": this is an MTP sidecar (only nextn blocks); load the main GGUF and pass this file as mtp");
  if (!mtp_path.empty()) {
    mtp_ = std::make_unique<Model>(mtp_path);
    const ModelConfig &a = model_.cfg(), &b = mtp_->cfg();
    if (b.n_mtp <= 0 || b.dim != a.dim || b.vocab != a.vocab || b.n_layers != a.n_layers || b.head_dim != a.head_dim)
      throw GgufError(mtp_path + ": not an MTP sidecar of " + path + " (nextn blocks " + std::to_string(b.n_mtp) +
                      ", dim " + std::to_string(b.dim) + " vs " + std::to_string(a.dim) + ", layers " +
                      std::to_string(b.n_layers) + " vs " + std::to_string(a.n_layers) + ")");
  }
  int n = opts.threads > 0 ? opts.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  opts_.threads = n;
  pool_ = std::make_unique<ThreadPool>(n);
  impl_ = resolve_impl(Impl::Auto);
  freqs_win_ = rope_freqs(model_.cfg(), 0);
  freqs_comp_ = rope_freqs(model_.cfg(), 4);
}

namespace {
uint64_t fingerprint_model(uint64_t h, const Model& m) {
  // std::map: sorted by name, so the order (and the value) does not depend on the file's tensor order
  for (const auto& [name, t] : m.file().tensors()) {
    if (m.mtp_only && name.rfind("blk.", 0) != 0) continue;
    h = fnv1a(h, name.data(), name.size() + 1);
    h = fnv1a(h, &t.type, sizeof t.type);
    h = fnv1a(h, t.ne, sizeof t.ne);
    const size_t k = std::min<size_t>(64, t.nbytes);
    h = fnv1a(h, t.data, k);
    h = fnv1a(h, t.data + t.nbytes / 2 - std::min(t.nbytes / 2, k / 2), k);
    h = fnv1a(h, t.data + t.nbytes - k, k);
  }
  return h;
}
}  // namespace

uint64_t Runtime::fingerprint() const {
  std::call_once(fp_once_, [this] {
    uint64_t h = fingerprint_model(kFnvBasis, model_);
    if (mtp_) h = fingerprint_model(h, *mtp_);
    fp_ = h;
  });
  // Overrides are part of the weights a state was computed with: sampled as the file's tensors are.
  uint64_t h = fp_;
  for (const auto& [name, o] : overrides_) {
    h = fnv1a(h, name.data(), name.size() + 1);
    h = fnv1a(h, &o.type, sizeof o.type);
    const uint8_t* d = o.bytes.get();
    const size_t k = std::min<size_t>(64, o.nbytes);
    h = fnv1a(h, d, k);
    h = fnv1a(h, d + o.nbytes / 2 - std::min(o.nbytes / 2, k / 2), k);
    h = fnv1a(h, d + o.nbytes - k, k);
  }
  return h;
}

const WeightView& Runtime::draft_head() const {
  // A mutex and a flag rather than std::call_once: a weight override drops the copy (drop_draft_head).
  std::lock_guard<std::mutex> lock(draft_mu_);
  if (draft_made_) return draft_head_;
  const Model* m = mtp();
  if (!m) throw std::logic_error("draft_head: no MTP block");
  draft_head_ = m->head;
  const WeightView& h = m->head;
  const QType t = static_cast<QType>(opts_.draft_head);
  // the file's head when asked for, in exact mode, or when it is as small as the copy already
  if (opts_.exact || opts_.draft_head < 0 || quant_row_size(t, h.cols) >= h.row_bytes) {
    draft_made_ = true;
    return draft_head_;
  }
  const size_t rs = quant_row_size(t, h.cols);
  draft_data_.resize(rs * static_cast<size_t>(h.rows));
  const QuantizeRowFn q = quant_kernels(t, Impl::Auto).quantize;
  pool_->parallel_for(h.rows, 256, [&](int64_t b, int64_t e) {
    std::vector<float> row(static_cast<size_t>(h.cols));
    for (int64_t r = b; r < e; ++r) {
      dequant_row(h, r, row.data());
      q(row.data(), draft_data_.data() + static_cast<size_t>(r) * rs, h.cols, nullptr);
    }
  });
  draft_head_.type = t;
  draft_head_.row_bytes = rs;
  draft_head_.data = draft_data_.data();
  draft_head_.name = h.name + " (draft copy)";
  draft_made_ = true;
  return draft_head_;
}

void Runtime::drop_draft_head() {
  std::lock_guard<std::mutex> lock(draft_mu_);
  draft_made_ = false;
  draft_head_ = WeightView();
  std::vector<uint8_t>().swap(draft_data_);
}

// ------------------------------------------------------------------------------------------------
// Weight overrides.  The checks run before anything changes; the copy is made before the swap starts, so
// the swap itself (pointer flips, no allocation but the map node) is short.
namespace {
// N of a "blk.N." name, -1 for any other name.
int64_t block_of(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  size_t i = 4;
  int64_t n = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9' && n < (int64_t{1} << 40)) n = n * 10 + (name[i++] - '0');
  return i > 4 && i < name.size() && name[i] == '.' ? n : -1;
}

std::shared_ptr<uint8_t> aligned_bytes(size_t n) {
  constexpr std::align_val_t kAlign{64};
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(::operator new(std::max<size_t>(n, 1), kAlign)),
                                  [](uint8_t* p) { ::operator delete(p, kAlign); });
}
}  // namespace

void Runtime::override_weight(const std::string& name, QType type, const uint8_t* data, size_t nbytes) {
  const std::string at = "override_weight('" + name + "'): ";
  const std::string path = model_.file().path();
  if (uploaded_.load())
    throw std::invalid_argument(at +
                                "this model's weights were uploaded to a CUDA device (device='cuda'); weight "
                                "overrides are CPU only: load the model with device='cpu'");
  const int64_t blk = block_of(name);
  if (mtp_ && !model_.file().tensor(name) && mtp_->file().tensor(name))
    throw std::invalid_argument(at + "is a tensor of the MTP sidecar " + mtp_->file().path() +
                                "; only the main model's weights can be overridden");
  if (blk >= model_.cfg().n_layers && model_.file().tensor(name))
    throw std::invalid_argument(at + "belongs to the MTP block (block " + std::to_string(blk) +
                                " >= " + std::to_string(model_.cfg().n_layers) +
                                " main layers); only the main model's weights can be overridden");
  std::vector<WeightView*> views;
  for (WeightView* v : model_.views())
    if (v->name == name) views.push_back(v);
  if (views.empty()) {
    if (model_.file().tensor(name))
      throw std::invalid_argument(at +
                                  "is not a weight matrix of the runtime (1-D tensors, the compressor's ape and "
                                  "the hash-routing table are decoded at load); only 2-D/3-D weight matrices "
                                  "can be overridden");
    throw std::invalid_argument(at + "no tensor of this name in " + path);
  }
  const QTypeInfo* info = qtype_info(static_cast<int32_t>(type));
  if (!info || type == QType::Q8_K || type == QType::Q8_1)
    throw std::invalid_argument(at + "type " + ggml_type_name(static_cast<int32_t>(type)) + " (id " +
                                std::to_string(static_cast<int32_t>(type)) +
                                ") is not a weight type the runtime's kernels multiply");
  for (const WeightView* v : views) {
    if (v->cols % info->block_size)
      throw std::invalid_argument(at + "its rows of " + std::to_string(v->cols) + " elements are not a multiple of " +
                                  info->name + "'s block of " + std::to_string(info->block_size) +
                                  "; choose a type whose block divides the row length");
    const size_t rb = quant_row_size(type, v->cols), want = rb * static_cast<size_t>(v->rows);
    if (nbytes != want)
      throw std::invalid_argument(at + "got " + std::to_string(nbytes) + " bytes; " + info->name + " needs " +
                                  std::to_string(v->rows) + " rows x " + std::to_string(rb) +
                                  " bytes = " + std::to_string(want));
  }
  if (!data && nbytes) throw std::invalid_argument(at + "no data");
  Override o;
  o.bytes = aligned_bytes(nbytes);
  if (nbytes) std::memcpy(o.bytes.get(), data, nbytes);
  o.nbytes = nbytes;
  o.type = type;
  begin_swap("override_weight");
  try {
    auto it = overrides_.find(name);
    if (it == overrides_.end()) {
      for (WeightView* v : views) o.originals.emplace_back(v, *v);
      it = overrides_.emplace(name, std::move(o)).first;
    } else {
      o.originals = std::move(it->second.originals);  // the file's views, kept from the first override
      it->second = std::move(o);
    }
    for (WeightView* v : views) {
      v->type = type;
      v->row_bytes = quant_row_size(type, v->cols);
      v->data = it->second.bytes.get();
    }
    drop_draft_head();
  } catch (...) {
    swapping_.store(false);
    throw;
  }
  swapping_.store(false);
}

void Runtime::clear_overrides() {
  if (overrides_.empty()) return;
  begin_swap("clear_overrides");
  // type, row bytes and data only: rows, cols and the name never change, so the checks of an override_weight
  // on another thread (before its swap) read nothing this writes
  for (auto& [name, o] : overrides_)
    for (auto& [v, orig] : o.originals) {
      v->type = orig.type;
      v->row_bytes = orig.row_bytes;
      v->data = orig.data;
    }
  overrides_.clear();
  drop_draft_head();
  swapping_.store(false);
}

std::vector<std::string> Runtime::overridden() const {
  std::vector<std::string> out;
  for (const auto& [name, o] : overrides_) out.push_back(name);
  return out;
}

void Runtime::note_device_upload() const {
  if (!overrides_.empty())
    throw std::invalid_argument(model_.file().path() + ": " + std::to_string(overrides_.size()) +
                                " weights are overridden (first '" + overrides_.begin()->first +
                                "'); clear the overrides before uploading the model to a CUDA device");
  uploaded_.store(true);
}

void Runtime::begin_swap(const char* what) {
  // seq_cst on both sides (here: swapping_ then running_; Session::Guard: running_ then swapping_), so a swap
  // and a session call never both go ahead.
  if (swapping_.exchange(true))
    throw SessionBusy(std::string(what) + ": another weight swap is running on this model on another thread");
  const int n = running_.load();
  if (n > 0) {
    swapping_.store(false);
    throw SessionBusy(std::string(what) + ": " + std::to_string(n) +
                      " session call(s) are running on this model; swap weights only while no session runs");
  }
}

OpCtx Runtime::ctx() const {
  OpCtx c;
  c.pool = pool_.get();
  c.exact = opts_.exact;
  c.impl = impl_;
  return c;
}
// ------------------------------------------------------------------------------------------------
namespace {
// Largest context a session accepts: keeps every byte count (rows * row bytes) far from overflow.
constexpr int64_t kMaxCtx = int64_t{1} << 32;
}  // namespace

Session::Session(const Runtime& rt, int64_t ctx, KvDtype kv, bool use_mtp)
    : rt_(rt), ctx_(ctx), kv_(kv), use_mtp_(use_mtp) {
  if (ctx <= 0) throw std::invalid_argument("ctx must be positive, got " + std::to_string(ctx));
  if (ctx > kMaxCtx)
    throw std::invalid_argument("ctx " + std::to_string(ctx) + " exceeds the runtime's limit of " +
                                std::to_string(kMaxCtx) + " tokens; create the session with a smaller ctx");
  if (use_mtp && !rt.mtp())
    throw std::invalid_argument("this model has no MTP block; load it with its MTP sidecar GGUF (mtp-*.gguf)");
  reset_state();
  // one compressed entry per m tokens (+ one indexer entry per 4 tokens in CSA layers)
  for (const LayerState& l : layers_) {
    if (l.comp.ratio) kv_per_token_ += static_cast<double>(l.comp_kv.row_bytes()) / l.comp.ratio;
    if (l.idx_comp.ratio) kv_per_token_ += static_cast<double>(l.idx_kv.row_bytes()) / 4;
    kv_total_ += l.window.bytes() + l.comp_kv.bytes() + l.idx_kv.bytes() +
                 (l.comp.kv.size() + l.comp.score.size()) * 4 + (l.idx_comp.kv.size() + l.idx_comp.score.size()) * 4;
  }
}

Session::Guard::Guard(const Session& s, const char* what) : s_(s) {
  if (s.busy_.exchange(true, std::memory_order_acquire))
    throw SessionBusy(std::string("Session.") + what +
                      ": this session is in use by another thread; a session is one sequence, so give each thread "
                      "its own session (sessions can share one loaded model)");
  s.rt_.running_.fetch_add(1);  // seq_cst: see Runtime::begin_swap
  if (s.rt_.swapping_.load()) {
    s.rt_.running_.fetch_sub(1);
    s.busy_.store(false, std::memory_order_release);
    throw SessionBusy(std::string("Session.") + what +
                      ": the model's weights are being swapped (override_weight / clear_overrides) on another "
                      "thread; run sessions before or after the swap");
  }
}

Session::Guard::~Guard() {
  s_.rt_.running_.fetch_sub(1);
  s_.busy_.store(false, std::memory_order_release);
}

void Session::reset() {
  Guard g(*this, "reset");
  reset_state();
}

void Session::reset_state() {
  const ModelConfig& c = rt_.model().cfg();
  pos_ = 0;
  ckpt_ = -1;
  layers_.clear();
  layers_.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    LayerState& s = layers_[static_cast<size_t>(l)];
    const int ratio = rt_.model().block(static_cast<int>(l)).ratio;
    s.window.init(c.window, c.head_dim, kv_, c.nope_dim(), 64);
    if (ratio) {
      s.comp_kv.init(ctx_ / ratio, c.head_dim, kv_, c.nope_dim(), 64);
      s.comp.init(ratio, static_cast<int>(c.head_dim));
    }
    if (ratio == 4) {
      s.idx_kv.init(ctx_ / 4, c.idx_dim, kv_, c.idx_dim, 32);
      s.idx_comp.init(4, static_cast<int>(c.idx_dim));
    }
  }
  mtp_pos_ = 0;
  pending_.clear();
  pending_rows_ = 0;
  mtp_last_.clear();
  mtp_last_saved_.clear();
  mtp_self_from_ = -1;
  mtp_state_ = LayerState();
  if (use_mtp_) mtp_state_.window.init(c.window, c.head_dim, kv_, c.nope_dim(), 64);
}

void Session::checkpoint() {
  Guard g(*this, "checkpoint");
  ckpt_ = pos_.load();
  for (LayerState& l : layers_) l.journal_from(ckpt_);
}

void Session::rollback(int64_t n) {
  Guard g(*this, "rollback");
  const int64_t pos = pos_.load(), ck = ckpt_.load();
  if (ck < 0)
    throw std::invalid_argument(
        "rollback: no checkpoint (call checkpoint() before the tokens to undo; a chunk "
        "longer than the attention window, reset or load drops it)");
  if (n < ck || n > pos)
    throw std::invalid_argument("rollback: " + std::to_string(n) + " tokens is outside the checkpoint range [" +
                                std::to_string(ck) + ", " + std::to_string(pos) + "]");
  mtp_discard_locked();  // provisional MTP draft positions go first
  const int64_t drop = pos - n;
  if (use_mtp_ && drop > pending_rows_.load())
    throw std::invalid_argument("rollback: the MTP block has already consumed positions past " + std::to_string(n) +
                                "; roll back before running it on rejected positions");
  for (LayerState& l : layers_) l.rollback(n);
  if (use_mtp_) {
    const ModelConfig& c = rt_.model().cfg();
    const int64_t hcD = c.hc * c.dim;
    pending_.resize(static_cast<size_t>((pending_rows_.load() - drop) * hcD));
    pending_rows_ = static_cast<int64_t>(pending_.size()) / hcD;
  }
  pos_ = n;
}

void Session::check_tokens(const Model& M, const int32_t* tokens, int64_t T) const {
  const ModelConfig& c = M.cfg();
  if (T <= 0) throw std::invalid_argument("no tokens given");
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      throw std::out_of_range("token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                              " is outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
}

// ------------------------------------------------------------------------------------------------
void Session::set_taps(const std::vector<std::string>& patterns) {
  Guard g(*this, "set_taps");
  taps_.set(patterns);
}

std::map<std::string, std::pair<std::vector<float>, int64_t>> Session::take_taps() {
  Guard g(*this, "take_taps");
  return taps_.take();
}

// ------------------------------------------------------------------------------------------------
namespace {
// The streams [N][hc*D] of a chunk: each token's embedding row copied into its hc streams.
std::vector<float> embed_rows(const Model& M, const int32_t* tokens, int64_t N, Taps* taps) {
  const int64_t D = M.cfg().dim, hc = M.cfg().hc, hcD = hc * D;
  std::vector<float> X(static_cast<size_t>(N * hcD)), e(static_cast<size_t>(D));
  for (int64_t t = 0; t < N; ++t) {
    dequant_row(M.embed, tokens[t], e.data());
    for (int64_t j = 0; j < hc; ++j)
      std::memcpy(&X[static_cast<size_t>(t * hcD + j * D)], e.data(), static_cast<size_t>(D) * 4);
    if (taps) taps->add("embed", e.data(), D, D);
  }
  return X;
}
}  // namespace

Logits Session::forward(const int32_t* tokens, int64_t T, bool all_logits) {
  Guard g(*this, "forward");
  const Model& M = rt_.model();
  const ModelConfig& c = M.cfg();
  check_tokens(M, tokens, T);
  if (pos_ + T > ctx_)
    throw std::length_error("context overflow: the session holds " + std::to_string(pos_.load()) + " tokens and " +
                            std::to_string(T) + " more exceed its context of " + std::to_string(ctx_) +
                            "; create the session with a larger ctx");
  const bool taps = taps_.active();
  const int64_t hcD = c.hc * c.dim;
  const int64_t p0 = pos_;
  if (ckpt_ >= 0 && T > c.window) {  // the window ring keeps only the chunk's last rows: cannot be undone
    ckpt_ = -1;
    for (LayerState& l : layers_) l.journal_from(-1);
  }
  std::vector<float> X = embed_rows(M, tokens, T, taps ? &taps_ : nullptr);
  for (int l = 0; l < static_cast<int>(c.n_layers); ++l)
    block_forward(M, l, {{&layers_[static_cast<size_t>(l)], p0, T, kv_}}, X, tokens, T,
                  "layers." + std::to_string(l) + ".");
  if (use_mtp_) {
    pending_.insert(pending_.end(), X.begin(), X.end());
    pending_rows_ = static_cast<int64_t>(pending_.size()) / hcD;
  }
  const int64_t n_out = all_logits ? T : 1;
  Logits logits = head(M, M.head, &X[static_cast<size_t>((T - n_out) * hcD)], n_out, M.out_norm, "");
  pos_ = p0 + T;
  return logits;
}

Logits Session::forward_batch(const std::vector<Session*>& ss, const int32_t* tokens) {
  const int64_t n = static_cast<int64_t>(ss.size());
  if (n == 0) throw std::invalid_argument("forward_batch: no sessions given");
  for (int64_t i = 0; i < n; ++i) {
    const std::string at = "forward_batch: session " + std::to_string(i);
    if (!ss[static_cast<size_t>(i)]) throw std::invalid_argument(at + " is null");
    if (&ss[static_cast<size_t>(i)]->rt_ != &ss[0]->rt_)
      throw std::invalid_argument(at +
                                  " belongs to another loaded model than session 0; batch the sessions of one "
                                  "model together");
    for (int64_t j = 0; j < i; ++j)
      if (ss[static_cast<size_t>(j)] == ss[static_cast<size_t>(i)])
        throw std::invalid_argument(at + " is session " + std::to_string(j) +
                                    " again; a session is one sequence and takes one token per step");
  }
  // Every session is held (SessionBusy otherwise, the ones taken so far released) and checked before any
  // state changes, so a refused batch leaves every session as it was.
  std::deque<Guard> guards;
  for (Session* s : ss) guards.emplace_back(*s, "forward_batch");
  const Model& M = ss[0]->rt_.model();
  const ModelConfig& c = M.cfg();
  for (int64_t i = 0; i < n; ++i) {
    const Session& s = *ss[static_cast<size_t>(i)];
    const std::string at = "forward_batch: session " + std::to_string(i);
    if (tokens[i] < 0 || tokens[i] >= c.vocab)
      throw std::out_of_range(at + ": token id " + std::to_string(tokens[i]) + " is outside the vocabulary [0, " +
                              std::to_string(c.vocab) + ")");
    if (s.pos_ + 1 > s.ctx_)
      throw std::length_error(at + ": context overflow: the session holds " + std::to_string(s.pos_.load()) +
                              " tokens, its whole context of " + std::to_string(s.ctx_) +
                              "; create the session with a larger ctx");
    if (s.taps_.active())
      throw std::invalid_argument(at + " has taps set; taps record one sequence's rows: run it alone with forward");
  }
  const int64_t hcD = c.hc * c.dim;
  std::vector<float> X = embed_rows(M, tokens, n, nullptr);
  std::vector<SeqRows> seqs(static_cast<size_t>(n));
  // block_forward and head run on session 0 (its Runtime, its inactive taps) over the rows of all of them
  Session& s0 = *ss[0];
  for (int l = 0; l < static_cast<int>(c.n_layers); ++l) {
    for (int64_t i = 0; i < n; ++i) {
      Session& s = *ss[static_cast<size_t>(i)];
      seqs[static_cast<size_t>(i)] = {&s.layers_[static_cast<size_t>(l)], s.pos_.load(), 1, s.kv_};
    }
    s0.block_forward(M, l, seqs, X, tokens, n, "layers." + std::to_string(l) + ".");
  }
  for (int64_t i = 0; i < n; ++i) {
    Session& s = *ss[static_cast<size_t>(i)];
    if (s.use_mtp_) {  // the stream rows forward would keep for the MTP block
      s.pending_.insert(s.pending_.end(), X.begin() + i * hcD, X.begin() + (i + 1) * hcD);
      s.pending_rows_ = static_cast<int64_t>(s.pending_.size()) / hcD;
    }
  }
  Logits logits = s0.head(M, M.head, X.data(), n, M.out_norm, "");
  for (Session* s : ss) s->pos_ += 1;
  return logits;
}

Logits Session::head(const Model& M, const WeightView& W, const float* X, int64_t n_out, const std::vector<float>& norm,
                     const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const bool taps = taps_.active();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  const OpCtx ctx = rt_.ctx();
  std::vector<float> mixes(static_cast<size_t>(n_out * hc)), u(static_cast<size_t>(n_out * D));
  hc_mixes(M.hc_head_fn, X, n_out, c.norm_eps, mixes.data(), ctx);
  for (int64_t t = 0; t < n_out; ++t) {
    float pr[4];
    for (int j = 0; j < hc; ++j)
      pr[j] = 1.0f / (1.0f + std::exp(-(mixes[static_cast<size_t>(t * hc + j)] * M.hc_head_scale[0] +
                                        M.hc_head_base[static_cast<size_t>(j)]))) +
              c.hc_eps;
    float* ut = &u[static_cast<size_t>(t * D)];
    hc_collapse(X + t * hcD, pr, static_cast<int>(hc), D, ut);
    if (taps) taps_.add(pre + "hc_head_out", ut, D, D);
    rms_norm(ut, norm.data(), ut, D, c.norm_eps);
  }
  Logits logits(static_cast<size_t>(n_out * c.vocab));  // the product writes every element
  linear(W, u.data(), n_out, logits.data(), ctx);
  if (taps) taps_.add(pre + "logits", logits.data(), n_out * c.vocab, c.vocab);
  return logits;
}

Logits Session::mtp_forward(const int32_t* tokens, int64_t T, bool all_logits) {
  Guard g(*this, "mtp_forward");
  if (!use_mtp_) throw std::invalid_argument("create the session with mtp=True to run the MTP draft block");
  mtp_discard_locked();
  const Model& M = *rt_.mtp();
  const ModelConfig& c = M.cfg();
  check_tokens(M, tokens, T);
  if (T > mtp_pending())
    throw std::invalid_argument("mtp: " + std::to_string(T) + " tokens given but only " +
                                std::to_string(mtp_pending()) +
                                " main-model positions are waiting (run prefill/decode first)");
  const int l = static_cast<int>(c.n_layers);
  const BlockWeights& b = M.block(l);
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  // X0[t][j] = eh_proj . [enorm(embed(token_t)) | hnorm(h_t,j)]  (= e_proj e + h_proj h, DeepSeek-V4's inference/model.py)
  std::vector<float> in(static_cast<size_t>(T * hc * 2 * D)), X(static_cast<size_t>(T * hcD)),
      e(static_cast<size_t>(D));
  for (int64_t t = 0; t < T; ++t) {
    dequant_row(M.embed, tokens[t], e.data());
    rms_norm(e.data(), b.enorm.data(), e.data(), D, c.norm_eps);
    for (int64_t j = 0; j < hc; ++j) {
      float* row = &in[static_cast<size_t>((t * hc + j) * 2 * D)];
      std::memcpy(row, e.data(), static_cast<size_t>(D) * 4);
      rms_norm(&pending_[static_cast<size_t>(t * hcD + j * D)], b.hnorm.data(), row + D, D, c.norm_eps);
    }
  }
  linear(b.eh_proj, in.data(), T * hc, X.data(), rt_.ctx());
  const int64_t n_out = all_logits ? T : 1;
  // The positions before the last n_out: nobody reads their MTP output, only the window KV rows the block
  // (window-only attention) writes for them, so they skip the queries, attention, MoE and head (the same rows,
  // bit for bit).  With taps on, every position runs whole so that every tap is recorded.
  const int64_t p0 = mtp_pos_.load(), tk = taps_.active() ? 0 : T - n_out;
  if (tk > 0) {
    mtp_kv_rows(M, X.data(), tk, p0);
    X.erase(X.begin(), X.begin() + tk * hcD);
  }
  block_forward(M, l, {{&mtp_state_, p0 + tk, T - tk, kv_}}, X, tokens + tk, T - tk, "mtp.0.");
  Logits logits =
      head(M, rt_.draft_head(), &X[static_cast<size_t>((T - tk - n_out) * hcD)], n_out, b.mtp_norm, "mtp.0.");
  pending_.erase(pending_.begin(), pending_.begin() + T * hcD);
  pending_rows_ = static_cast<int64_t>(pending_.size()) / hcD;
  mtp_pos_ += T;
  mtp_last_.assign(X.end() - hcD, X.end());
  return logits;
}

void Session::mtp_kv_rows(const Model& M, const float* X, int64_t T, int64_t p0) {
  const ModelConfig& c = M.cfg();
  const int l = static_cast<int>(c.n_layers);
  const BlockWeights& b = M.block(l);
  const OpCtx ctx = rt_.ctx();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D, nmix = (2 + hc) * hc;
  std::vector<float> mixes(static_cast<size_t>(T * nmix)), h(static_cast<size_t>(T * D));
  std::vector<float> post(static_cast<size_t>(hc)), comb(static_cast<size_t>(hc * hc));
  hc_mixes(b.hc_attn_fn, X, T, c.norm_eps, mixes.data(), ctx);  // the attention input, as block_forward makes it
  for (int64_t t = 0; t < T; ++t) {
    float pr[4];
    hc_coeffs(&mixes[static_cast<size_t>(t * nmix)], b.hc_attn_scale.data(), b.hc_attn_base.data(),
              static_cast<int>(hc), static_cast<int>(c.sinkhorn_iters), c.hc_eps, pr, post.data(), comb.data());
    float* ht = &h[static_cast<size_t>(t * D)];
    hc_collapse(X + t * hcD, pr, static_cast<int>(hc), D, ht);
    rms_norm(ht, b.attn_norm.data(), ht, D, c.norm_eps);
  }
  const std::string pre = "mtp.0.";
  const LayerCtx lc{c, b, l, ctx, rt_.options().qat, rt_.freqs(b.ratio).data(), taps_, pre};
  attention_kv_rows(lc, mtp_state_, h.data(), T, p0);
}

Logits Session::mtp_self(int32_t token) {
  Guard g(*this, "mtp_self");
  if (!use_mtp_) throw std::invalid_argument("create the session with mtp=True to run the MTP draft block");
  if (mtp_last_.empty())
    throw std::invalid_argument("mtp_self: run mtp_forward first (the MTP block has no output to continue from)");
  const Model& M = *rt_.mtp();
  const ModelConfig& c = M.cfg();
  check_tokens(M, &token, 1);
  if (mtp_pos_ + 1 > ctx_) throw std::invalid_argument("mtp_self: the MTP block's positions would pass the context");
  if (mtp_self_from_ < 0) {  // first provisional step: journal the MTP layer from here
    mtp_self_from_ = mtp_pos_.load();
    mtp_last_saved_ = mtp_last_;
    mtp_state_.journal_from(mtp_self_from_);
  }
  const int l = static_cast<int>(c.n_layers);
  const BlockWeights& b = M.block(l);
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  std::vector<float> in(static_cast<size_t>(hc * 2 * D)), X(static_cast<size_t>(hcD)), e(static_cast<size_t>(D));
  dequant_row(M.embed, token, e.data());
  rms_norm(e.data(), b.enorm.data(), e.data(), D, c.norm_eps);
  for (int64_t j = 0; j < hc; ++j) {
    float* row = &in[static_cast<size_t>(j * 2 * D)];
    std::memcpy(row, e.data(), static_cast<size_t>(D) * 4);
    rms_norm(&mtp_last_[static_cast<size_t>(j * D)], b.hnorm.data(), row + D, D, c.norm_eps);
  }
  linear(b.eh_proj, in.data(), hc, X.data(), rt_.ctx());
  block_forward(M, l, {{&mtp_state_, mtp_pos_.load(), 1, kv_}}, X, &token, 1, "mtp.0.");
  Logits logits = head(M, rt_.draft_head(), X.data(), 1, b.mtp_norm, "mtp.0.");
  mtp_last_ = X;
  mtp_pos_ += 1;
  return logits;
}

void Session::mtp_discard() {
  Guard g(*this, "mtp_discard");
  mtp_discard_locked();
}

void Session::mtp_discard_locked() {
  if (mtp_self_from_ < 0) return;
  mtp_state_.rollback(mtp_self_from_);
  mtp_state_.journal_from(-1);
  mtp_pos_ = mtp_self_from_;
  mtp_last_ = mtp_last_saved_;
  mtp_self_from_ = -1;
}

void Session::block_forward(const Model& M, int l, const std::vector<SeqRows>& seqs, std::vector<float>& X,
                            const int32_t* tokens, int64_t T, const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const BlockWeights& b = M.block(l);
  const OpCtx ctx = rt_.ctx();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D, nmix = (2 + hc) * hc;
  const bool taps = taps_.active();
  std::vector<float> mixes(static_cast<size_t>(T * nmix)), h(static_cast<size_t>(T * D)), f(static_cast<size_t>(T * D));
  std::vector<float> post(static_cast<size_t>(T * hc)), comb(static_cast<size_t>(T * hc * hc));
  for (int sub = 0; sub < 2; ++sub) {
    const WeightView& fn = sub == 0 ? b.hc_attn_fn : b.hc_ffn_fn;
    const float* scale = (sub == 0 ? b.hc_attn_scale : b.hc_ffn_scale).data();
    const float* base = (sub == 0 ? b.hc_attn_base : b.hc_ffn_base).data();
    const float* norm = (sub == 0 ? b.attn_norm : b.ffn_norm).data();
    if (taps)
      taps_.add(pre + (sub == 0 ? "hc_attn_x" : "hc_ffn_x"), X.data(), T * hcD, hcD);  // hc_*_fn input (imatrix)
    hc_mixes(fn, X.data(), T, c.norm_eps, mixes.data(), ctx);
    // per token: Sinkhorn coefficients, collapse, norm (tokens independent; with taps in order, as they record)
    for_rows(T, taps, ctx, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float pr[4];
        hc_coeffs(&mixes[static_cast<size_t>(t * nmix)], scale, base, static_cast<int>(hc),
                  static_cast<int>(c.sinkhorn_iters), c.hc_eps, pr, &post[static_cast<size_t>(t * hc)],
                  &comb[static_cast<size_t>(t * hc * hc)]);
        float* ht = &h[static_cast<size_t>(t * D)];
        hc_collapse(&X[static_cast<size_t>(t * hcD)], pr, static_cast<int>(hc), D, ht);
        rms_norm(ht, norm, ht, D, c.norm_eps);
        if (taps) {
          taps_.add(pre + (sub == 0 ? "hc_attn_pre" : "hc_ffn_pre"), pr, hc, hc);
          taps_.add(pre + (sub == 0 ? "hc_attn_comb" : "hc_ffn_comb"), &comb[static_cast<size_t>(t * hc * hc)], hc * hc,
                    hc * hc);
          taps_.add(pre + (sub == 0 ? "attn_in" : "ffn_in"), ht, D, D);
        }
      }
    });
    const LayerCtx lc{c, b, l, ctx, rt_.options().qat, rt_.freqs(b.ratio).data(), taps_, pre};
    if (sub == 0) {
      attention_layer(lc, seqs, h.data(), f.data());
      if (taps) taps_.add(pre + "attn_out", f.data(), T * D, D);
    } else {
      moe_layer(lc, h.data(), tokens, T, f.data());
      if (taps) taps_.add(pre + "moe_out", f.data(), T * D, D);
    }
    for_rows(T, false, ctx, [&](int64_t t0, int64_t t1) {
      std::vector<float> out(static_cast<size_t>(hcD));
      for (int64_t t = t0; t < t1; ++t) {
        float* xt = &X[static_cast<size_t>(t * hcD)];
        hc_expand(&f[static_cast<size_t>(t * D)], xt, &post[static_cast<size_t>(t * hc)],
                  &comb[static_cast<size_t>(t * hc * hc)], static_cast<int>(hc), D, out.data());
        std::memcpy(xt, out.data(), static_cast<size_t>(hcD) * 4);
      }
    });
  }
  if (taps) taps_.add(pre + "block_out", X.data(), T * hcD, hcD);
}

}  // namespace dsv4
