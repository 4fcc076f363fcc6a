// Session::save / Session::load: the session state file (format below).  Loading parses and checks
// the whole file into temporaries before the session changes, so a bad file leaves it as it was.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "runtime/fnv.h"
#include "runtime/session.h"

namespace dsv4 {

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
const char* const kHeaderNames[kHeaderFields] = {"vocab",  "dim",      "n_layers", "head_dim", "indexer dim",
                                                 "window", "kv dtype", "ctx",      "pos",      "mtp",
                                                 "qat",    "exact",    "mtp_pos"};

const char* kv_name(int64_t v) { return v == 0 ? "f32" : v == 1 ? "bf16" : v == 2 ? "fp8" : "unknown"; }

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
  if (mtp_window)
    n += mtp_window->row_bytes() * static_cast<uint64_t>(mtp_window->rows()) + static_cast<uint64_t>(pending * hcD) * 4;
  return n;
}
}  // namespace

void Session::save(const std::string& path) const {
  Guard g(*this, "save");
  if (mtp_self_from_ >= 0)
    throw std::invalid_argument(
        "save: the MTP block has provisional draft positions (mtp_self); call mtp_discard first");
  const ModelConfig& c = rt_.model().cfg();
  const int64_t pos = pos_, hcD = c.hc * c.dim, pending = pending_rows_;
  // a unique temp name: two sessions saving to one path never write the same temp file
  static std::atomic<uint64_t> serial{0};
  const std::string tmp =
      path + ".tmp." + std::to_string(static_cast<uint64_t>(::getpid())) + "." + std::to_string(serial++);
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
    const int64_t fields[kHeaderFields] = {c.vocab,
                                           c.dim,
                                           c.n_layers,
                                           c.head_dim,
                                           c.idx_dim,
                                           c.window,
                                           static_cast<int64_t>(kv_),
                                           ctx_,
                                           pos,
                                           use_mtp_ ? 1 : 0,
                                           rt_.options().qat ? 1 : 0,
                                           rt_.options().exact ? 1 : 0,
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
  if (::stat(path.c_str(), &st) != 0)
    throw StateError(path + ": cannot open session state (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw StateError(path + ": cannot read session state (not a regular file)");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw StateError(path + ": cannot open session state (" + std::strerror(errno) + ")");
  const std::streamoff end = f.tellg();
  f.seekg(0);
  if (end < 0 || !f) throw StateError(path + ": cannot read session state (not a regular file?)");
  const uint64_t file_size = static_cast<uint64_t>(end);
  const std::string bad = path + ": cannot restore this session state: ";
  if (file_size < kHeaderBytes)
    throw StateError(bad + "truncated session state file (" + std::to_string(file_size) +
                     " bytes, the header alone is " + std::to_string(kHeaderBytes) + ")");
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
      throw StateError(bad + "it was saved for another model or KV dtype (" + kHeaderNames[i] + " " +
                       std::to_string(h[i]) + ", this model has " + std::to_string(want[i]) +
                       "); restore it into a session of the model it was saved from");
  if (fp != rt_.fingerprint())
    throw StateError(bad + "it was saved for another model (weights fingerprint " + std::to_string(fp) +
                     ", this model " + std::to_string(rt_.fingerprint()) +
                     "); restore it into a session of the GGUF it was saved from (weight overrides are part of "
                     "the fingerprint: " +
                     std::to_string(rt_.overridden().size()) + " active here)");
  if (h[6] != want[6])
    throw StateError(bad + "it was saved with kv_dtype '" + kv_name(h[6]) +
                     "' (another model or KV dtype setting), this session uses '" + kv_name(want[6]) +
                     "'; create the session with kv_dtype='" + kv_name(h[6]) + "'");
  const int64_t pos = h[8], mtp_pos = h[12];
  if (h[9] != (use_mtp_ ? 1 : 0))
    throw StateError(bad + "it was saved " + std::string(use_mtp_ ? "without" : "with") +
                     " MTP; create the session with the same mtp setting");
  if (h[10] != (rt_.options().qat ? 1 : 0) || h[11] != (rt_.options().exact ? 1 : 0))
    throw StateError(bad + "it was computed with qat=" + std::to_string(h[10]) + " exact=" + std::to_string(h[11]) +
                     ", this runtime has qat=" + std::to_string(rt_.options().qat) +
                     " exact=" + std::to_string(rt_.options().exact) + "; load the model with the same options");
  if (pos < 0 || pos > ctx_)
    throw StateError(bad + "it holds " + std::to_string(pos) + " tokens (saved with ctx " + std::to_string(h[7]) +
                     "), more than this session's ctx " + std::to_string(ctx_) +
                     "; create the session with ctx >= " + std::to_string(pos));
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
    throw StateError(bad + "corrupt header (payload of " + std::to_string(n_payload) + " bytes, " +
                     std::to_string(expect) + " expected for " + std::to_string(pos) + " tokens)");
  if (file_size != kHeaderBytes + expect + 8)
    throw StateError(bad +
                     (file_size < kHeaderBytes + expect + 8 ? "truncated session state file ("
                                                            : "trailing bytes after the state (") +
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
  if (stored != sum) throw StateError(bad + "checksum mismatch, the file is corrupt; save the state again");
  layers_ = std::move(layers);
  mtp_state_ = std::move(mtp);
  pending_ = std::move(pend);
  pending_rows_ = pending;
  mtp_pos_ = mtp_pos;
  pos_ = pos;
  ckpt_ = -1;         // the new layers carry no journal
  mtp_last_.clear();  // not in the file: mtp_self needs an mtp_forward after a load
  mtp_last_saved_.clear();
  mtp_self_from_ = -1;
}

}  // namespace dsv4
