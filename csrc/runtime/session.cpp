// The DeepSeek-V4 forward pass (spec §3-§6) over a chunk of tokens, layer by layer: projections for
// all tokens of the chunk at once (weights read once per chunk), the compressor/indexer state
// machines token by token, attention per token in parallel, MoE grouped by expert (only the routed
// experts' rows are touched).  Also the session file format and the KV byte accounting.
#include "runtime/session.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include <sys/stat.h>
#include <unistd.h>

#include "core/fp_decode.h"
#include "quant/blocks.h"
#include "quant/quant.h"

namespace dsv4 {

// ------------------------------------------------------------------------------------------------
size_t Runtime::prefetch() const {
  return model_.file().populate() + (mtp_ ? mtp_->file().populate() : 0);
}

Runtime::Runtime(const std::string& path, const RuntimeOptions& opts, const std::string& mtp_path)
    : model_(path), opts_(opts) {
  if (model_.mtp_only)
    throw GgufError(path + ": this is an MTP sidecar (only nextn blocks); load the main GGUF and pass this file as mtp");
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
  freqs_win_ = rope_freqs(model_.cfg(), 0);
  freqs_comp_ = rope_freqs(model_.cfg(), 4);
}

namespace {
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;
uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * kFnvPrime;
  return h;
}
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
  return fp_;
}

OpCtx Runtime::ctx() const {
  OpCtx c;
  c.pool = pool_.get();
  c.exact = opts_.exact;
  return c;
}

// ------------------------------------------------------------------------------------------------
// bf16 conversions (round to nearest even) come from quant/blocks.h.

namespace {
// e4m3fn byte of a value already on the e4m3 grid (|x| <= 448).
uint8_t e4m3_bits(float q) {
  uint8_t sign = std::signbit(q) ? 0x80 : 0;
  float a = std::fabs(q);
  if (a == 0.f) return sign;
  int e;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): binary exponent e-1
  int E = e - 1 + 7;
  if (E <= 0) return static_cast<uint8_t>(sign | static_cast<int>(a / 0.001953125f));  // subnormal, step 2^-9
  int mant = static_cast<int>((a / std::ldexp(1.0f, e - 1) - 1.0f) * 8.0f);
  return static_cast<uint8_t>(sign | (E << 3) | mant);
}
float pow2_ceil_f(float x) {
  int e;
  float m = std::frexp(x, &e);
  if (m == 0.5f) e -= 1;
  return std::ldexp(1.0f, e);
}
}  // namespace

void KvRows::init(int64_t rows, int64_t dim, KvDtype dt, int64_t n_fp8, int64_t fp8_block) {
  dt_ = dt;
  rows_ = rows;
  dim_ = dim;
  n_fp8_ = n_fp8;
  fp8_block_ = fp8_block;
  f32_.clear();
  bf16_.clear();
  u8_.clear();
  stored_ = 0;
  if (dt == KvDtype::F32) row_bytes_ = static_cast<size_t>(dim) * 4;
  else if (dt == KvDtype::BF16) row_bytes_ = static_cast<size_t>(dim) * 2;
  else row_bytes_ = (static_cast<size_t>(n_fp8 + n_fp8 / fp8_block + 2 * (dim - n_fp8)) + 3) / 4 * 4;
  reserve(std::min<int64_t>(rows, 128));  // the rest grows on demand: a 1M-token context is not committed up front
}

void KvRows::reserve(int64_t n) {
  n = std::min(n, rows_);
  if (n <= stored_) return;
  const int64_t want = std::min(rows_, std::max(n, 2 * stored_));
  if (dt_ == KvDtype::F32) f32_.resize(static_cast<size_t>(want * dim_), 0.f);
  else if (dt_ == KvDtype::BF16) bf16_.resize(static_cast<size_t>(want * dim_), 0);
  else u8_.resize(static_cast<size_t>(want) * row_bytes_, 0);
  stored_ = want;
}

void KvRows::write(int64_t r, const float* x) {
  if (r < 0 || r >= rows_) throw std::out_of_range("KV cache row " + std::to_string(r) + " outside capacity " + std::to_string(rows_));
  reserve(r + 1);
  if (dt_ == KvDtype::F32) {
    std::memcpy(&f32_[static_cast<size_t>(r * dim_)], x, static_cast<size_t>(dim_) * 4);
  } else if (dt_ == KvDtype::BF16) {
    for (int64_t i = 0; i < dim_; ++i) bf16_[static_cast<size_t>(r * dim_ + i)] = f32_to_bf16(x[i]);
  } else {
    uint8_t* row = &u8_[static_cast<size_t>(r) * row_bytes_];
    uint8_t* scales = row + n_fp8_;
    for (int64_t b = 0; b < n_fp8_; b += fp8_block_) {
      float amax = 0.f;
      for (int64_t i = 0; i < fp8_block_; ++i) amax = std::max(amax, std::fabs(x[b + i]));
      const float s = pow2_ceil_f(std::max(amax, 1e-4f) * (1.0f / 448.0f));  // same scale as fp8_fake_quant
      int e;
      std::frexp(s, &e);
      scales[b / fp8_block_] = static_cast<uint8_t>(e - 1 + 127);
      for (int64_t i = 0; i < fp8_block_; ++i)
        row[b + i] = e4m3_bits(e4m3_round(std::min(448.f, std::max(-448.f, x[b + i] / s))));
    }
    uint8_t* tail = scales + n_fp8_ / fp8_block_;
    for (int64_t i = n_fp8_; i < dim_; ++i) {
      uint16_t h = f32_to_bf16(x[i]);
      std::memcpy(tail + 2 * (i - n_fp8_), &h, 2);
    }
  }
}

void KvRows::read(int64_t r, float* out) const {
  if (dt_ == KvDtype::F32) {
    std::memcpy(out, &f32_[static_cast<size_t>(r * dim_)], static_cast<size_t>(dim_) * 4);
  } else if (dt_ == KvDtype::BF16) {
    for (int64_t i = 0; i < dim_; ++i) out[i] = bf16_to_f32(bf16_[static_cast<size_t>(r * dim_ + i)]);
  } else {
    const uint8_t* row = &u8_[static_cast<size_t>(r) * row_bytes_];
    const uint8_t* scales = row + n_fp8_;
    for (int64_t b = 0; b < n_fp8_; b += fp8_block_) {
      const float s = std::ldexp(1.0f, static_cast<int>(scales[b / fp8_block_]) - 127);
      for (int64_t i = 0; i < fp8_block_; ++i) out[b + i] = e4m3_to_f32(row[b + i]) * s;
    }
    const uint8_t* tail = scales + n_fp8_ / fp8_block_;
    for (int64_t i = n_fp8_; i < dim_; ++i) {
      uint16_t h;
      std::memcpy(&h, tail + 2 * (i - n_fp8_), 2);
      out[i] = bf16_to_f32(h);
    }
  }
}

std::vector<uint8_t> KvRows::raw(int64_t n) const {
  std::vector<uint8_t> out(static_cast<size_t>(n) * row_bytes());
  const void* src = dt_ == KvDtype::F32 ? static_cast<const void*>(f32_.data())
                    : dt_ == KvDtype::BF16 ? static_cast<const void*>(bf16_.data()) : static_cast<const void*>(u8_.data());
  // rows past the grown storage were never written: they stay zero (the storage grows on demand)
  const size_t have = static_cast<size_t>(std::min(n, stored_)) * row_bytes();
  if (have) std::memcpy(out.data(), src, have);
  return out;
}

void KvRows::set_raw(const uint8_t* p, int64_t n) {
  if (n > rows_) throw std::runtime_error("session state holds more KV rows than this session's context allows");
  reserve(n);
  void* dst = dt_ == KvDtype::F32 ? static_cast<void*>(f32_.data())
              : dt_ == KvDtype::BF16 ? static_cast<void*>(bf16_.data()) : static_cast<void*>(u8_.data());
  if (n > 0) std::memcpy(dst, p, static_cast<size_t>(n) * row_bytes());
}

// ------------------------------------------------------------------------------------------------
namespace {
// Largest context a session accepts: keeps every byte count (rows * row bytes) far from overflow.
constexpr int64_t kMaxCtx = int64_t{1} << 32;
}  // namespace

Session::Session(const Runtime& rt, int64_t ctx, KvDtype kv, bool use_mtp) : rt_(rt), ctx_(ctx), kv_(kv), use_mtp_(use_mtp) {
  if (ctx <= 0) throw std::invalid_argument("ctx must be positive, got " + std::to_string(ctx));
  if (ctx > kMaxCtx)
    throw std::invalid_argument("ctx " + std::to_string(ctx) + " exceeds the runtime's limit of " + std::to_string(kMaxCtx) +
                                " tokens; create the session with a smaller ctx");
  if (use_mtp && !rt.mtp())
    throw std::invalid_argument("this model has no MTP block; load it with its MTP sidecar GGUF (mtp-*.gguf)");
  reset_state();
  // spec §11: one compressed entry per m tokens (+ one indexer entry per 4 tokens in CSA layers)
  for (const LayerState& l : layers_) {
    if (l.comp.ratio) kv_per_token_ += static_cast<double>(l.comp_kv.row_bytes()) / l.comp.ratio;
    if (l.idx_comp.ratio) kv_per_token_ += static_cast<double>(l.idx_kv.row_bytes()) / 4;
    kv_total_ += l.window.bytes() + l.comp_kv.bytes() + l.idx_kv.bytes() + (l.comp.kv.size() + l.comp.score.size()) * 4 +
                 (l.idx_comp.kv.size() + l.idx_comp.score.size()) * 4;
  }
}

Session::Guard::Guard(const Session& s, const char* what) : s_(s) {
  if (s.busy_.exchange(true, std::memory_order_acquire))
    throw SessionBusy(std::string("Session.") + what +
                      ": this session is in use by another thread; a session is one sequence, so give each thread "
                      "its own session (sessions can share one loaded model)");
}

void Session::reset() {
  Guard g(*this, "reset");
  reset_state();
}

void Session::reset_state() {
  const ModelConfig& c = rt_.model().cfg();
  pos_ = 0;
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
  mtp_state_ = LayerState();
  if (use_mtp_) mtp_state_.window.init(c.window, c.head_dim, kv_, c.nope_dim(), 64);
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
namespace {
bool glob(const char* p, const char* s) {
  if (!*p) return !*s;
  if (*p == '*') return glob(p + 1, s) || (*s && glob(p, s + 1));
  if (*s && (*p == '?' || *p == *s)) return glob(p + 1, s + 1);
  return false;
}
}  // namespace

void Session::set_taps(const std::vector<std::string>& patterns) {
  Guard g(*this, "set_taps");
  tap_patterns_ = patterns;
  taps_.clear();
}

bool Session::want(const std::string& name) const {
  for (const auto& p : tap_patterns_)
    if (glob(p.c_str(), name.c_str())) return true;
  return false;
}

void Session::tap(const std::string& name, const float* x, int64_t n, int64_t width) {
  if (!want(name)) return;
  auto& e = taps_[name];
  e.second = width;
  e.first.insert(e.first.end(), x, x + n);
}

std::map<std::string, std::pair<std::vector<float>, int64_t>> Session::take_taps() {
  Guard g(*this, "take_taps");
  auto out = std::move(taps_);
  taps_.clear();
  return out;
}

// ------------------------------------------------------------------------------------------------
std::vector<float> Session::forward(const int32_t* tokens, int64_t T, bool all_logits) {
  Guard g(*this, "forward");
  const Model& M = rt_.model();
  const ModelConfig& c = M.cfg();
  check_tokens(M, tokens, T);
  if (pos_ + T > ctx_)
    throw std::length_error("context overflow: the session holds " + std::to_string(pos_.load()) + " tokens and " +
                            std::to_string(T) + " more exceed its context of " + std::to_string(ctx_) +
                            "; create the session with a larger ctx");
  const bool taps = !tap_patterns_.empty();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  const int64_t p0 = pos_;
  std::vector<float> X(static_cast<size_t>(T * hcD));
  {
    std::vector<float> e(static_cast<size_t>(D));
    for (int64_t t = 0; t < T; ++t) {
      dequant_row(M.embed, tokens[t], e.data());
      for (int64_t j = 0; j < hc; ++j) std::memcpy(&X[static_cast<size_t>(t * hcD + j * D)], e.data(), static_cast<size_t>(D) * 4);
      if (taps) tap("embed", e.data(), D, D);
    }
  }
  for (int l = 0; l < static_cast<int>(c.n_layers); ++l)
    block_forward(M, l, layers_[static_cast<size_t>(l)], X, tokens, T, p0, "layers." + std::to_string(l) + ".");
  if (use_mtp_) {
    pending_.insert(pending_.end(), X.begin(), X.end());
    pending_rows_ = static_cast<int64_t>(pending_.size()) / hcD;
  }
  const int64_t n_out = all_logits ? T : 1;
  std::vector<float> logits = head(M, &X[static_cast<size_t>((T - n_out) * hcD)], n_out, M.out_norm, "");
  pos_ = p0 + T;
  return logits;
}

std::vector<float> Session::head(const Model& M, const float* X, int64_t n_out, const std::vector<float>& norm,
                                 const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const bool taps = !tap_patterns_.empty();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  const OpCtx ctx = rt_.ctx();
  std::vector<float> mixes(static_cast<size_t>(n_out * hc)), u(static_cast<size_t>(n_out * D));
  hc_mixes(M.hc_head_fn, X, n_out, c.norm_eps, mixes.data(), ctx);
  for (int64_t t = 0; t < n_out; ++t) {
    float pr[4];
    for (int j = 0; j < hc; ++j)
      pr[j] = 1.0f / (1.0f + std::exp(-(mixes[static_cast<size_t>(t * hc + j)] * M.hc_head_scale[0] + M.hc_head_base[static_cast<size_t>(j)]))) + c.hc_eps;
    float* ut = &u[static_cast<size_t>(t * D)];
    hc_collapse(X + t * hcD, pr, static_cast<int>(hc), D, ut);
    if (taps) tap(pre + "hc_head_out", ut, D, D);
    rms_norm(ut, norm.data(), ut, D, c.norm_eps);
  }
  std::vector<float> logits(static_cast<size_t>(n_out * c.vocab));
  linear(M.head, u.data(), n_out, logits.data(), ctx);
  if (taps) tap(pre + "logits", logits.data(), n_out * c.vocab, c.vocab);
  return logits;
}

std::vector<float> Session::mtp_forward(const int32_t* tokens, int64_t T, bool all_logits) {
  Guard g(*this, "mtp_forward");
  if (!use_mtp_) throw std::invalid_argument("create the session with mtp=True to run the MTP draft block");
  const Model& M = *rt_.mtp();
  const ModelConfig& c = M.cfg();
  check_tokens(M, tokens, T);
  if (T > mtp_pending())
    throw std::invalid_argument("mtp: " + std::to_string(T) + " tokens given but only " + std::to_string(mtp_pending()) +
                                " main-model positions are waiting (run prefill/decode first)");
  const int l = static_cast<int>(c.n_layers);
  const BlockWeights& b = M.block(l);
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D;
  // X0[t][j] = eh_proj . [enorm(embed(token_t)) | hnorm(h_t,j)]  (= e_proj e + h_proj h, spec §7)
  std::vector<float> in(static_cast<size_t>(T * hc * 2 * D)), X(static_cast<size_t>(T * hcD)), e(static_cast<size_t>(D));
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
  block_forward(M, l, mtp_state_, X, tokens, T, mtp_pos_.load(), "mtp.0.");
  const int64_t n_out = all_logits ? T : 1;
  std::vector<float> logits = head(M, &X[static_cast<size_t>((T - n_out) * hcD)], n_out, b.mtp_norm, "mtp.0.");
  pending_.erase(pending_.begin(), pending_.begin() + T * hcD);
  pending_rows_ = static_cast<int64_t>(pending_.size()) / hcD;
  mtp_pos_ += T;
  return logits;
}

void Session::block_forward(const Model& M, int l, LayerState& S, std::vector<float>& X, const int32_t* tokens, int64_t T,
                            int64_t p0, const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const BlockWeights& b = M.block(l);
  const OpCtx ctx = rt_.ctx();
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D, nmix = (2 + hc) * hc;
  const bool taps = !tap_patterns_.empty();
  std::vector<float> mixes(static_cast<size_t>(T * nmix)), h(static_cast<size_t>(T * D)), f(static_cast<size_t>(T * D));
  std::vector<float> post(static_cast<size_t>(T * hc)), comb(static_cast<size_t>(T * hc * hc));
  for (int sub = 0; sub < 2; ++sub) {
    const WeightView& fn = sub == 0 ? b.hc_attn_fn : b.hc_ffn_fn;
    const float* scale = (sub == 0 ? b.hc_attn_scale : b.hc_ffn_scale).data();
    const float* base = (sub == 0 ? b.hc_attn_base : b.hc_ffn_base).data();
    const float* norm = (sub == 0 ? b.attn_norm : b.ffn_norm).data();
    if (taps) tap(pre + (sub == 0 ? "hc_attn_x" : "hc_ffn_x"), X.data(), T * hcD, hcD);  // hc_*_fn input (imatrix)
    hc_mixes(fn, X.data(), T, c.norm_eps, mixes.data(), ctx);
    for (int64_t t = 0; t < T; ++t) {
      float pr[4];
      hc_coeffs(&mixes[static_cast<size_t>(t * nmix)], scale, base, static_cast<int>(hc), static_cast<int>(c.sinkhorn_iters),
                c.hc_eps, pr, &post[static_cast<size_t>(t * hc)], &comb[static_cast<size_t>(t * hc * hc)]);
      float* ht = &h[static_cast<size_t>(t * D)];
      hc_collapse(&X[static_cast<size_t>(t * hcD)], pr, static_cast<int>(hc), D, ht);
      rms_norm(ht, norm, ht, D, c.norm_eps);
      if (taps) {
        tap(pre + (sub == 0 ? "hc_attn_pre" : "hc_ffn_pre"), pr, hc, hc);
        tap(pre + (sub == 0 ? "hc_attn_comb" : "hc_ffn_comb"), &comb[static_cast<size_t>(t * hc * hc)], hc * hc, hc * hc);
        tap(pre + (sub == 0 ? "attn_in" : "ffn_in"), ht, D, D);
      }
    }
    if (sub == 0) {
      attention(M, l, S, h.data(), T, p0, f.data(), pre);
      if (taps) tap(pre + "attn_out", f.data(), T * D, D);
    } else {
      moe(M, l, h.data(), tokens, T, f.data(), pre);
      if (taps) tap(pre + "moe_out", f.data(), T * D, D);
    }
    std::vector<float> out(static_cast<size_t>(hcD));
    for (int64_t t = 0; t < T; ++t) {
      float* xt = &X[static_cast<size_t>(t * hcD)];
      hc_expand(&f[static_cast<size_t>(t * D)], xt, &post[static_cast<size_t>(t * hc)], &comb[static_cast<size_t>(t * hc * hc)],
                static_cast<int>(hc), D, out.data());
      std::memcpy(xt, out.data(), static_cast<size_t>(hcD) * 4);
    }
  }
  if (taps) tap(pre + "block_out", X.data(), T * hcD, hcD);
}

void Session::attention(const Model& M, int l, LayerState& S, const float* h, int64_t T, int64_t p0, float* out,
                        const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const BlockWeights& b = M.block(l);
  const OpCtx ctx = rt_.ctx();
  const bool qat = rt_.options().qat, taps = !tap_patterns_.empty();
  const int64_t D = c.dim, H = c.n_heads, hd = c.head_dim, rd = c.rope_dim, nd = hd - rd, Rq = c.q_lora_rank;
  const int64_t win = c.window, ratio = b.ratio;
  const float* freqs = rt_.freqs(static_cast<int>(ratio)).data();

  std::vector<float> qr(static_cast<size_t>(T * Rq)), q(static_cast<size_t>(T * H * hd)), kv(static_cast<size_t>(T * hd));
  linear(b.wq_a, h, T, qr.data(), ctx);
  for (int64_t t = 0; t < T; ++t) rms_norm(&qr[static_cast<size_t>(t * Rq)], b.q_norm.data(), &qr[static_cast<size_t>(t * Rq)], Rq, c.norm_eps);
  if (taps) tap(pre + "qr", qr.data(), T * Rq, Rq);  // input of wq_b and the indexer's wq_b
  linear(b.wq_b, qr.data(), T, q.data(), ctx);
  linear(b.wkv, h, T, kv.data(), ctx);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = p0 + t;
    for (int64_t hh = 0; hh < H; ++hh) {
      float* qh = &q[static_cast<size_t>((t * H + hh) * hd)];
      rms_norm(qh, nullptr, qh, hd, c.norm_eps);
      rope_tail(qh, hd, rd, p, freqs, false);
    }
    float* k = &kv[static_cast<size_t>(t * hd)];
    rms_norm(k, b.kv_norm.data(), k, hd, c.norm_eps);
    rope_tail(k, hd, rd, p, freqs, false);
    if (qat) fp8_fake_quant(k, nd, 64);
  }
  if (taps) {
    tap(pre + "q", q.data(), T * H * hd, H * hd);
    tap(pre + "kv", kv.data(), T * hd, hd);
  }

  // ---- compressed entries (indexer first, as the reference) ----
  std::vector<std::vector<int64_t>> sel(static_cast<size_t>(T));
  auto run_compressor = [&](const CompressorWeights& cw, CompressorState& st, KvRows& rows, int64_t& n_rows, bool rotate,
                            const char* tap_name) {
    const int64_t d = cw.d, w = cw.coff * d, m = cw.ratio;
    std::vector<float> a(static_cast<size_t>(T * w)), g(static_cast<size_t>(T * w)), e(static_cast<size_t>(d));
    linear(cw.wkv, h, T, a.data(), ctx);
    linear(cw.wgate, h, T, g.data(), ctx);
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = p0 + t;
      const float* ape = &cw.ape[static_cast<size_t>((p % m) * w)];
      float* gt = &g[static_cast<size_t>(t * w)];
      for (int64_t i = 0; i < w; ++i) gt[i] += ape[i];
      if (!compressor_step(st, &a[static_cast<size_t>(t * w)], gt, p, e.data())) continue;
      rms_norm(e.data(), cw.norm.data(), e.data(), d, c.norm_eps);
      rope_tail(e.data(), d, rd, p + 1 - m, freqs, false);
      if (rotate) {
        hadamard(e.data(), d);
        if (qat) fp4_fake_quant(e.data(), d, 32);
      } else if (qat) {
        fp8_fake_quant(e.data(), d - rd, 64);
      }
      rows.write(n_rows++, e.data());
      if (taps) tap(pre + tap_name, e.data(), d, d);
    }
  };
  if (ratio == 4) {
    const int64_t nI = c.idx_heads, dI = c.idx_dim;
    std::vector<float> iq(static_cast<size_t>(T * nI * dI)), iw(static_cast<size_t>(T * nI));
    linear(b.idx_wq_b, qr.data(), T, iq.data(), ctx);
    linear(b.idx_proj, h, T, iw.data(), ctx);
    const float wscale = static_cast<float>(std::pow(static_cast<double>(dI), -0.5) * std::pow(static_cast<double>(nI), -0.5));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t hh = 0; hh < nI; ++hh) {
        float* x = &iq[static_cast<size_t>((t * nI + hh) * dI)];
        rope_tail(x, dI, rd, p0 + t, freqs, false);
        hadamard(x, dI);
        if (qat) fp4_fake_quant(x, dI, 32);
      }
      for (int64_t hh = 0; hh < nI; ++hh) iw[static_cast<size_t>(t * nI + hh)] *= wscale;
    }
    run_compressor(b.idx_comp, S.idx_comp, S.idx_kv, S.n_idx, true, "idx_kv");
    const int64_t K = c.idx_topk;
    std::vector<float> margins(static_cast<size_t>(T), INFINITY);
    rt_.pool().parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> kbuf(static_cast<size_t>(dI));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n_vis = (p0 + t + 1) / 4;
        std::vector<float> score(static_cast<size_t>(n_vis));
        for (int64_t j = 0; j < n_vis; ++j) {
          S.idx_kv.read(j, kbuf.data());
          float s = 0.f;
          for (int64_t hh = 0; hh < nI; ++hh) {
            float dq = dot_f32(&iq[static_cast<size_t>((t * nI + hh) * dI)], kbuf.data(), dI);
            s += std::max(dq, 0.f) * iw[static_cast<size_t>(t * nI + hh)];
          }
          score[static_cast<size_t>(j)] = s;
        }
        std::vector<int64_t> order(static_cast<size_t>(n_vis));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t x, int64_t y) { return score[static_cast<size_t>(x)] > score[static_cast<size_t>(y)]; });
        const int64_t k = std::min(K, n_vis);
        if (n_vis > K) margins[static_cast<size_t>(t)] = score[static_cast<size_t>(order[static_cast<size_t>(K - 1)])] - score[static_cast<size_t>(order[static_cast<size_t>(K)])];
        sel[static_cast<size_t>(t)].assign(order.begin(), order.begin() + k);
        std::sort(sel[static_cast<size_t>(t)].begin(), sel[static_cast<size_t>(t)].end());
      }
    });
    if (taps) {
      std::vector<float> ids(static_cast<size_t>(T * K), -1.f);
      for (int64_t t = 0; t < T; ++t)
        for (size_t i = 0; i < sel[static_cast<size_t>(t)].size(); ++i) ids[static_cast<size_t>(t * K) + i] = static_cast<float>(sel[static_cast<size_t>(t)][i]);
      tap(pre + "idx_topk", ids.data(), T * K, K);
      tap(pre + "idx_margin", margins.data(), T, 1);
    }
  }
  if (ratio) run_compressor(b.comp, S.comp, S.comp_kv, S.n_comp, false, "comp_kv");

  // ---- attention per token: window (ring rows before the chunk + this chunk's rows) + compressed ----
  std::vector<float> o(static_cast<size_t>(T * H * hd));
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  rt_.pool().parallel_for(T, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> keybuf;
    std::vector<const float*> keys;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t p = p0 + t;
      const int64_t first = std::max<int64_t>(0, p - win + 1);
      std::vector<int64_t> comp_ids;
      if (ratio == 128)
        for (int64_t j = 0; j < (p + 1) / 128; ++j) comp_ids.push_back(j);
      else if (ratio == 4)
        comp_ids = sel[static_cast<size_t>(t)];
      const int64_t n_keys = (p - first + 1) + static_cast<int64_t>(comp_ids.size());
      keybuf.resize(static_cast<size_t>(n_keys * hd));
      keys.clear();
      int64_t r = 0;
      for (int64_t qp = first; qp <= p; ++qp, ++r) {
        float* dst = &keybuf[static_cast<size_t>(r * hd)];
        if (qp < p0) S.window.read(qp % win, dst);
        else if (kv_ == KvDtype::F32) std::memcpy(dst, &kv[static_cast<size_t>((qp - p0) * hd)], static_cast<size_t>(hd) * 4);
        else {  // same rounding as the stored row
          KvRows tmp;
          tmp.init(1, hd, kv_, c.nope_dim(), 64);
          tmp.write(0, &kv[static_cast<size_t>((qp - p0) * hd)]);
          tmp.read(0, dst);
        }
      }
      for (int64_t j : comp_ids) S.comp_kv.read(j, &keybuf[static_cast<size_t>((r++) * hd)]);
      for (int64_t i = 0; i < n_keys; ++i) keys.push_back(&keybuf[static_cast<size_t>(i * hd)]);
      float* ot = &o[static_cast<size_t>(t * H * hd)];
      sparse_attention(&q[static_cast<size_t>(t * H * hd)], H, hd, keys, b.sinks.data(), scale, ot);
      for (int64_t hh = 0; hh < H; ++hh) rope_tail(ot + hh * hd, hd, rd, p, freqs, true);
    }
  });
  for (int64_t t = std::max<int64_t>(0, T - win); t < T; ++t) S.window.write((p0 + t) % win, &kv[static_cast<size_t>(t * hd)]);

  // ---- grouped low-rank output projection ----
  const int64_t G = c.o_groups, Ro = c.o_lora_rank, gs = H * hd / G;
  std::vector<float> z(static_cast<size_t>(T * G * Ro)), og(static_cast<size_t>(T * gs));
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t t = 0; t < T; ++t)
      std::memcpy(&og[static_cast<size_t>(t * gs)], &o[static_cast<size_t>(t * H * hd + g * gs)], static_cast<size_t>(gs) * 4);
    linear(b.wo_a.slice(g * Ro, Ro), og.data(), T, z.data() + g * Ro, G * Ro, ctx);
  }
  if (taps) {  // inputs of wo_a (one row per token and group) and wo_b
    tap(pre + "wo_a_in", o.data(), T * H * hd, gs);
    tap(pre + "wo_b_in", z.data(), T * G * Ro, G * Ro);
  }
  linear(b.wo_b, z.data(), T, out, ctx);
  (void)D;
}

void Session::moe(const Model& M, int l, const float* h, const int32_t* tokens, int64_t T, float* out,
                  const std::string& pre) {
  const ModelConfig& c = M.cfg();
  const BlockWeights& b = M.block(l);
  const OpCtx ctx = rt_.ctx();
  const int64_t D = c.dim, E = c.n_experts, K = c.n_used, I = c.moe_inter;
  const bool taps = !tap_patterns_.empty();
  std::vector<float> logits(static_cast<size_t>(T * E));
  linear(b.gate, h, T, logits.data(), ctx);
  std::vector<Routing> R(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t)
    R[static_cast<size_t>(t)] = route(&logits[static_cast<size_t>(t * E)], E, static_cast<int>(K), b.bias.empty() ? nullptr : b.bias.data(),
                                      b.hash ? b.tid2eid + static_cast<int64_t>(tokens[t]) * K : nullptr, c.route_scale, c.norm_topk);
  if (taps) {
    std::vector<float> ids(static_cast<size_t>(T * K)), ws(static_cast<size_t>(T * K)), mg(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        ids[static_cast<size_t>(t * K + k)] = static_cast<float>(R[static_cast<size_t>(t)].idx[static_cast<size_t>(k)]);
        ws[static_cast<size_t>(t * K + k)] = R[static_cast<size_t>(t)].w[static_cast<size_t>(k)];
      }
      mg[static_cast<size_t>(t)] = R[static_cast<size_t>(t)].margin;
    }
    tap(pre + "router_idx", ids.data(), T * K, K);
    tap(pre + "router_w", ws.data(), T * K, K);
    tap(pre + "router_margin", mg.data(), T, 1);
  }
  // per (token, slot) outputs, grouped by expert so each expert's rows are read once per chunk
  std::vector<float> y(static_cast<size_t>(T * K * D));
  // W2 inputs per (token, slot), routing weight included (imatrix collection); only when tapped
  std::vector<float> mid(taps && want(pre + "exp_mid") ? static_cast<size_t>(T * K * I) : 0);
  for (int64_t e = 0; e < E; ++e) {
    std::vector<int64_t> slots;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k)
        if (R[static_cast<size_t>(t)].idx[static_cast<size_t>(k)] == e) slots.push_back(t * K + k);
    if (slots.empty()) continue;
    const int64_t n = static_cast<int64_t>(slots.size());
    std::vector<float> xe(static_cast<size_t>(n * D)), we(static_cast<size_t>(n)), ye(static_cast<size_t>(n * D));
    std::vector<float> me(mid.empty() ? 0 : static_cast<size_t>(n * I));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = slots[static_cast<size_t>(i)] / K, k = slots[static_cast<size_t>(i)] % K;
      std::memcpy(&xe[static_cast<size_t>(i * D)], h + t * D, static_cast<size_t>(D) * 4);
      we[static_cast<size_t>(i)] = R[static_cast<size_t>(t)].w[static_cast<size_t>(k)];
    }
    expert_ffn(b.w1.slice(e * I, I), b.w3.slice(e * I, I), b.w2.slice(e * D, D), xe.data(), n, we.data(),
               c.swiglu_exp[static_cast<size_t>(l)], ye.data(), ctx, me.empty() ? nullptr : me.data());
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&y[static_cast<size_t>(slots[static_cast<size_t>(i)] * D)], &ye[static_cast<size_t>(i * D)], static_cast<size_t>(D) * 4);
      if (!me.empty())
        std::memcpy(&mid[static_cast<size_t>(slots[static_cast<size_t>(i)] * I)], &me[static_cast<size_t>(i * I)], static_cast<size_t>(I) * 4);
    }
  }
  if (!mid.empty()) tap(pre + "exp_mid", mid.data(), T * K * I, I);  // row t*K+k: slot k of token t (router_idx)
  std::vector<float> sh(static_cast<size_t>(T * D));
  std::vector<float> shmid(taps && want(pre + "shexp_mid") ? static_cast<size_t>(T * b.sw1.rows) : 0);
  expert_ffn(b.sw1, b.sw3, b.sw2, h, T, nullptr, c.swiglu_shexp[static_cast<size_t>(l)], sh.data(), ctx,
             shmid.empty() ? nullptr : shmid.data());
  if (!shmid.empty()) tap(pre + "shexp_mid", shmid.data(), T * b.sw1.rows, b.sw1.rows);
  for (int64_t t = 0; t < T; ++t) {
    // sum in ascending expert id, then the shared expert (the reference's order)
    std::vector<int64_t> ks(static_cast<size_t>(K));
    std::iota(ks.begin(), ks.end(), 0);
    std::sort(ks.begin(), ks.end(), [&](int64_t a, int64_t bb) {
      return R[static_cast<size_t>(t)].idx[static_cast<size_t>(a)] < R[static_cast<size_t>(t)].idx[static_cast<size_t>(bb)];
    });
    float* ot = out + t * D;
    for (int64_t d = 0; d < D; ++d) ot[d] = 0.f;
    for (int64_t k : ks)
      for (int64_t d = 0; d < D; ++d) ot[d] += y[static_cast<size_t>((t * K + k) * D + d)];
    for (int64_t d = 0; d < D; ++d) ot[d] += sh[static_cast<size_t>(t * D + d)];
  }
}

// ------------------------------------------------------------------------------------------------
// Session state file, version 2 (little-endian; a state restores only into the model it came from):
//   "DSV4SES1" u32 version=2 u32 0
//   u64 model fingerprint (Runtime::fingerprint), 13 x i64: vocab dim n_layers head_dim idx_dim window
//       kv_dtype ctx pos use_mtp qat exact mtp_pos
//   u64 payload bytes, then the payload: per layer window rows (full ring), comp_kv rows [pos/ratio],
//       idx_kv rows [pos/4], compressor kv + score, indexer compressor kv + score; with MTP the MTP
//       window ring and the pending streams [pos - mtp_pos][hc*D]
//   u64 checksum: 4-lane FNV-style hash of every byte before it
// Every size in the payload follows from the header and this session's model, so the loader knows the
// exact file size before it reads a row; the whole file is parsed and checked into temporaries, and
// the session changes only after the checksum matched.
namespace {
constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'E', 'S', '1'};
constexpr uint32_t kVersion = 2;
constexpr int kHeaderFields = 13;
constexpr size_t kHeaderBytes = 8 + 4 + 4 + 8 + 8 * kHeaderFields + 8;
const char* const kHeaderNames[kHeaderFields] = {"vocab",    "dim",     "n_layers", "head_dim", "indexer dim",
                                                 "window",   "kv dtype", "ctx",     "pos",      "mtp",
                                                 "qat",      "exact",   "mtp_pos"};

const char* kv_name(int64_t v) {
  return v == 0 ? "f32" : v == 1 ? "bf16" : v == 2 ? "fp8" : "unknown";
}

// Corruption check (not a cryptographic hash): four FNV-1a lanes over 8-byte words, streamed.
class StateHash {
 public:
  void update(const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
      const size_t k = std::min(n, sizeof buf_ - fill_);
      std::memcpy(buf_ + fill_, b, k);
      fill_ += k, b += k, n -= k;
      if (fill_ == sizeof buf_) block();
    }
  }
  uint64_t final() {
    const uint64_t total = bytes_ + fill_;
    std::memset(buf_ + fill_, 0, sizeof buf_ - fill_);
    block();
    uint64_t h = kFnvBasis;
    for (uint64_t v : lane_) h = fnv1a(h, &v, 8);
    return fnv1a(h, &total, 8);
  }

 private:
  void block() {
    for (int i = 0; i < 4; ++i) {
      uint64_t w;
      std::memcpy(&w, buf_ + 8 * i, 8);
      lane_[i] = (lane_[i] ^ w) * kFnvPrime;
    }
    bytes_ += fill_;
    fill_ = 0;
  }
  uint8_t buf_[32] = {};
  size_t fill_ = 0;
  uint64_t bytes_ = 0;
  uint64_t lane_[4] = {kFnvBasis, kFnvBasis ^ 1, kFnvBasis ^ 2, kFnvBasis ^ 3};
};

// Payload bytes of a state at `pos` for sessions shaped like `layers` / `mtp_window`.
uint64_t payload_bytes(const std::vector<LayerState>& layers, int64_t pos, const KvRows* mtp_window, int64_t pending,
                       int64_t hcD) {
  uint64_t n = 0;
  for (const LayerState& s : layers) {
    n += s.window.row_bytes() * static_cast<uint64_t>(s.window.rows());
    if (s.comp.ratio) n += s.comp_kv.row_bytes() * static_cast<uint64_t>(pos / s.comp.ratio);
    if (s.idx_comp.ratio) n += s.idx_kv.row_bytes() * static_cast<uint64_t>(pos / 4);
    n += (s.comp.kv.size() + s.comp.score.size() + s.idx_comp.kv.size() + s.idx_comp.score.size()) * 4;
  }
  if (mtp_window) n += mtp_window->row_bytes() * static_cast<uint64_t>(mtp_window->rows()) + static_cast<uint64_t>(pending * hcD) * 4;
  return n;
}
}  // namespace

void Session::save(const std::string& path) const {
  Guard g(*this, "save");
  const ModelConfig& c = rt_.model().cfg();
  const int64_t pos = pos_, hcD = c.hc * c.dim, pending = pending_rows_;
  // a unique temp name: two sessions saving to one path never write the same temp file
  static std::atomic<uint64_t> serial{0};
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<uint64_t>(::getpid())) + "." + std::to_string(serial++);
  try {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error(path + ": cannot write session state (" + std::strerror(errno) + ")");
    StateHash hash;
    auto put = [&](const void* p, size_t n) {
      hash.update(p, n);
      f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
    };
    auto put64 = [&](uint64_t v) { put(&v, 8); };
    const uint32_t ver[2] = {kVersion, 0};
    put(kMagic, 8);
    put(ver, 8);
    put64(rt_.fingerprint());
    const int64_t fields[kHeaderFields] = {c.vocab, c.dim, c.n_layers, c.head_dim, c.idx_dim, c.window, static_cast<int64_t>(kv_),
                                          ctx_, pos, use_mtp_ ? 1 : 0, rt_.options().qat ? 1 : 0, rt_.options().exact ? 1 : 0,
                                          mtp_pos_.load()};
    put(fields, sizeof fields);
    put64(payload_bytes(layers_, pos, use_mtp_ ? &mtp_state_.window : nullptr, pending, hcD));
    for (const LayerState& s : layers_) {
      put(s.window.raw(s.window.rows()).data(), s.window.row_bytes() * static_cast<size_t>(s.window.rows()));
      if (s.comp.ratio) put(s.comp_kv.raw(s.n_comp).data(), s.comp_kv.row_bytes() * static_cast<size_t>(s.n_comp));
      if (s.idx_comp.ratio) put(s.idx_kv.raw(s.n_idx).data(), s.idx_kv.row_bytes() * static_cast<size_t>(s.n_idx));
      for (const CompressorState* st : {&s.comp, &s.idx_comp}) {
        put(st->kv.data(), st->kv.size() * 4);
        put(st->score.data(), st->score.size() * 4);
      }
    }
    if (use_mtp_) {
      put(mtp_state_.window.raw(mtp_state_.window.rows()).data(),
          mtp_state_.window.row_bytes() * static_cast<size_t>(mtp_state_.window.rows()));
      put(pending_.data(), pending_.size() * 4);
    }
    const uint64_t sum = hash.final();
    f.write(reinterpret_cast<const char*>(&sum), 8);
    f.flush();
    if (!f) throw std::runtime_error(path + ": write failed (disk full?)");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot move the session file into place (" + why + ")");
  }
}

void Session::load(const std::string& path) {
  Guard g(*this, "load");
  const ModelConfig& c = rt_.model().cfg();
  const int64_t hcD = c.hc * c.dim;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw StateError(path + ": cannot open session state (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw StateError(path + ": cannot read session state (not a regular file)");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw StateError(path + ": cannot open session state (" + std::strerror(errno) + ")");
  const std::streamoff end = f.tellg();
  f.seekg(0);
  if (end < 0 || !f) throw StateError(path + ": cannot read session state (not a regular file?)");
  const uint64_t file_size = static_cast<uint64_t>(end);
  const std::string bad = path + ": cannot restore this session state: ";
  if (file_size < kHeaderBytes)
    throw StateError(bad + "truncated session state file (" + std::to_string(file_size) + " bytes, the header alone is " +
                     std::to_string(kHeaderBytes) + ")");
  StateHash hash;
  auto get = [&](void* p, size_t n) {
    f.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!f) throw StateError(bad + "truncated session state file (read error)");
    hash.update(p, n);
  };
  char magic[8];
  uint32_t ver[2];
  get(magic, 8);
  get(ver, 8);
  if (std::memcmp(magic, kMagic, 8) != 0) throw StateError(bad + "not a dsv4 session state file (bad magic)");
  if (ver[0] != kVersion)
    throw StateError(bad + "session state format version " + std::to_string(ver[0]) + ", this build reads version " +
                     std::to_string(kVersion) + "; save the state again with this version");
  uint64_t fp;
  get(&fp, 8);
  int64_t h[kHeaderFields];
  get(h, sizeof h);
  uint64_t n_payload;
  get(&n_payload, 8);
  // model identity first (the most useful message), then the session settings
  const int64_t want[7] = {c.vocab, c.dim, c.n_layers, c.head_dim, c.idx_dim, c.window, static_cast<int64_t>(kv_)};
  for (int i = 0; i < 6; ++i)
    if (h[i] != want[i])
      throw StateError(bad + "it was saved for another model or KV dtype (" + kHeaderNames[i] + " " + std::to_string(h[i]) +
                       ", this model has " + std::to_string(want[i]) + "); restore it into a session of the model it was saved from");
  if (fp != rt_.fingerprint())
    throw StateError(bad + "it was saved for another model (weights fingerprint " + std::to_string(fp) + ", this model " +
                     std::to_string(rt_.fingerprint()) + "); restore it into a session of the GGUF it was saved from");
  if (h[6] != want[6])
    throw StateError(bad + "it was saved with kv_dtype '" + kv_name(h[6]) + "' (another model or KV dtype setting), this session uses '" +
                     kv_name(want[6]) + "'; create the session with kv_dtype='" + kv_name(h[6]) + "'");
  const int64_t pos = h[8], mtp_pos = h[12];
  if (h[9] != (use_mtp_ ? 1 : 0))
    throw StateError(bad + "it was saved " + std::string(use_mtp_ ? "without" : "with") +
                     " MTP; create the session with the same mtp setting");
  if (h[10] != (rt_.options().qat ? 1 : 0) || h[11] != (rt_.options().exact ? 1 : 0))
    throw StateError(bad + "it was computed with qat=" + std::to_string(h[10]) + " exact=" + std::to_string(h[11]) +
                     ", this runtime has qat=" + std::to_string(rt_.options().qat) + " exact=" +
                     std::to_string(rt_.options().exact) + "; load the model with the same options");
  if (pos < 0 || pos > ctx_)
    throw StateError(bad + "it holds " + std::to_string(pos) + " tokens (saved with ctx " + std::to_string(h[7]) +
                     "), more than this session's ctx " + std::to_string(ctx_) + "; create the session with ctx >= " +
                     std::to_string(pos));
  if (mtp_pos < 0 || mtp_pos > pos || (!use_mtp_ && mtp_pos != 0))
    throw StateError(bad + "corrupt header (mtp_pos " + std::to_string(mtp_pos) + ", pos " + std::to_string(pos) + ")");
  // fresh temporaries shaped like this session; committed only when everything checked out
  std::vector<LayerState> layers(layers_.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerState& src = layers_[l];
    LayerState& s = layers[l];
    s.window.init(src.window.rows(), src.window.dim(), kv_, c.nope_dim(), 64);
    if (src.comp.ratio) {
      s.comp_kv.init(src.comp_kv.rows(), src.comp_kv.dim(), kv_, c.nope_dim(), 64);
      s.comp.init(src.comp.ratio, src.comp.d);
    }
    if (src.idx_comp.ratio) {
      s.idx_kv.init(src.idx_kv.rows(), src.idx_kv.dim(), kv_, c.idx_dim, 32);
      s.idx_comp.init(4, src.idx_comp.d);
    }
  }
  LayerState mtp;
  if (use_mtp_) mtp.window.init(c.window, c.head_dim, kv_, c.nope_dim(), 64);
  const int64_t pending = pos - mtp_pos;
  const uint64_t expect = payload_bytes(layers, pos, use_mtp_ ? &mtp.window : nullptr, pending, hcD);
  if (n_payload != expect)
    throw StateError(bad + "corrupt header (payload of " + std::to_string(n_payload) + " bytes, " + std::to_string(expect) +
                     " expected for " + std::to_string(pos) + " tokens)");
  if (file_size != kHeaderBytes + expect + 8)
    throw StateError(bad + (file_size < kHeaderBytes + expect + 8 ? "truncated session state file (" : "trailing bytes after the state (") +
                     std::to_string(file_size) + " bytes, expected " + std::to_string(kHeaderBytes + expect + 8) + ")");
  std::vector<uint8_t> buf;
  auto rows = [&](KvRows& r, int64_t n) {
    buf.resize(r.row_bytes() * static_cast<size_t>(n));
    get(buf.data(), buf.size());
    r.set_raw(buf.data(), n);
  };
  for (LayerState& s : layers) {
    rows(s.window, s.window.rows());
    if (s.comp.ratio) rows(s.comp_kv, s.n_comp = pos / s.comp.ratio);
    if (s.idx_comp.ratio) rows(s.idx_kv, s.n_idx = pos / 4);
    for (CompressorState* st : {&s.comp, &s.idx_comp}) {
      get(st->kv.data(), st->kv.size() * 4);
      get(st->score.data(), st->score.size() * 4);
    }
  }
  std::vector<float> pend;
  if (use_mtp_) {
    rows(mtp.window, mtp.window.rows());
    pend.resize(static_cast<size_t>(pending * hcD));
    get(pend.data(), pend.size() * 4);
  }
  const uint64_t sum = hash.final();
  uint64_t stored;
  f.read(reinterpret_cast<char*>(&stored), 8);
  if (!f) throw StateError(bad + "truncated session state file (no checksum)");
  if (stored != sum)
    throw StateError(bad + "checksum mismatch, the file is corrupt; save the state again");
  layers_ = std::move(layers);
  mtp_state_ = std::move(mtp);
  pending_ = std::move(pend);
  pending_rows_ = pending;
  mtp_pos_ = mtp_pos;
  pos_ = pos;
}

}  // namespace dsv4
