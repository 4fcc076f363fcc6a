// CudaModel / CudaSession (cuda_session.h): weight upload from the plan, device state, and the forward
// pass as a sequence of ops_cuda launches on one stream.  Op order, precision and state handling follow
// session.cpp (the CPU runtime's exact mode: f32 activations against in-kernel dequantized weights), so
// the CPU runtime is the parity reference.  The only host round trip per token is the logits copy.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/cuda_session.h"
#include "runtime/ops_cuda/ops_cuda.h"
#include "runtime/ops_cuda/plan.h"

namespace dsv4 {

using cudaops::check;

namespace {
// Owning device allocation (cudaMalloc; freed in the destructor, errors there are ignored).
struct DevBuf {
  void* p = nullptr;
  size_t n = 0;
  DevBuf() = default;
  explicit DevBuf(size_t bytes) { alloc(bytes); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(o.p), n(o.n) {
    o.p = nullptr;
    o.n = 0;
  }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p, o.p);
    std::swap(n, o.n);
    return *this;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  void alloc(size_t bytes) {
    n = bytes;
    if (bytes) check(cudaMalloc(&p, bytes), "cudaMalloc");
  }
  float* f() const { return static_cast<float*>(p); }
  int32_t* i() const { return static_cast<int32_t*>(p); }
};
DevBuf fbuf(int64_t n) { return DevBuf(static_cast<size_t>(std::max<int64_t>(n, 1)) * 4); }
}  // namespace

struct CudaModelImpl {
  int device = 0;
  CudaUploadPlan plan;
  DevBuf arena, freqs_win, freqs_comp;
  std::vector<std::pair<const uint8_t*, size_t>> index;  // (host src, entry index), sorted by src
  cudaStream_t stream = nullptr;

  // Device address of host memory inside an uploaded tensor or vector (slices map by offset).
  const void* dev(const void* host) const {
    const uint8_t* h = static_cast<const uint8_t*>(host);
    auto it =
        std::upper_bound(index.begin(), index.end(), h,
                         [](const uint8_t* a, const std::pair<const uint8_t*, size_t>& b) { return a < b.first; });
    if (it != index.begin()) {
      --it;
      const CudaUploadEntry& e = plan.entries[it->second];
      if (h >= it->first && h < it->first + e.bytes) return static_cast<uint8_t*>(arena.p) + e.offset + (h - it->first);
    }
    throw std::logic_error("CUDA backend: host pointer is not part of the uploaded model");
  }
  const void* w(const WeightView& v) const { return dev(v.data); }
  const float* v(const std::vector<float>& x) const {
    return x.empty() ? nullptr : static_cast<const float*>(dev(x.data()));
  }
};

CudaModel::CudaModel(const Runtime& rt, int device) : rt_(rt), impl_(std::make_unique<CudaModelImpl>()) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    throw std::runtime_error("no CUDA device is available (cudaGetDeviceCount found none); load with device='cpu'");
  }
  if (device < 0 || device >= n)
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                                " present)");
  CudaModelImpl& I = *impl_;
  I.device = device;
  check(cudaSetDevice(device), "cudaSetDevice");
  I.plan = plan_cuda_upload(rt.model());
  size_t free_b = 0, total_b = 0;
  check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
  if (I.plan.total_bytes > free_b)
    throw std::runtime_error(rt.model().file().path() + ": weights need " + std::to_string(I.plan.total_bytes >> 20) +
                             " MiB on the device, " + std::to_string(free_b >> 20) + " MiB are free");
  I.arena.alloc(I.plan.total_bytes);
  for (size_t k = 0; k < I.plan.entries.size(); ++k) {
    const CudaUploadEntry& e = I.plan.entries[k];
    check(cudaMemcpy(static_cast<uint8_t*>(I.arena.p) + e.offset, e.src, e.bytes, cudaMemcpyHostToDevice),
          ("upload of " + e.name).c_str());
    I.index.emplace_back(static_cast<const uint8_t*>(e.src), k);
  }
  std::sort(I.index.begin(), I.index.end());
  for (auto [buf, src] : {std::pair<DevBuf*, const std::vector<float>*>{&I.freqs_win, &rt.freqs(0)},
                          std::pair<DevBuf*, const std::vector<float>*>{&I.freqs_comp, &rt.freqs(4)}}) {
    buf->alloc(src->size() * 4);
    check(cudaMemcpy(buf->p, src->data(), src->size() * 4, cudaMemcpyHostToDevice), "upload of rope freqs");
  }
  check(cudaStreamCreateWithFlags(&I.stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

CudaModel::~CudaModel() {
  if (impl_ && impl_->stream) cudaStreamDestroy(impl_->stream);
}

size_t CudaModel::device_bytes() const { return impl_->plan.total_bytes; }

// ------------------------------------------------------------------------------------------------
struct CudaLayer {
  DevBuf window, comp_kv, idx_kv, comp_kv_st, comp_sc_st, idx_kv_st, idx_sc_st;
  int64_t n_comp = 0, n_idx = 0;
};

struct CudaSessionImpl {
  std::vector<CudaLayer> layers;
  // scratch (one token)
  DevBuf X, h, f, mixes, pre, post, comb, qr, q, kv, o, z, iq, iw, a, g, score, sel, topk_scr, glog, ridx, rw, eg, eu,
      eh, ey, sg, su, sh, shy, logits, tok, iota, ape_tmp;
};

namespace {
void fill(DevBuf& b, float v, cudaStream_t s) {
  std::vector<float> h(b.n / 4, v);
  check(cudaMemcpyAsync(b.p, h.data(), b.n, cudaMemcpyHostToDevice, s), "state init");
  check(cudaStreamSynchronize(s), "state init");
}
}  // namespace

CudaSession::CudaSession(const CudaModel& m, int64_t ctx)
    : m_(m), ctx_(ctx), impl_(std::make_unique<CudaSessionImpl>()) {
  if (ctx <= 0) throw std::invalid_argument("ctx must be positive, got " + std::to_string(ctx));
  const ModelConfig& c = m.runtime().model().cfg();
  CudaSessionImpl& S = *impl_;
  const int64_t D = c.dim, hc = c.hc, H = c.n_heads, hd = c.head_dim;
  const int64_t E = c.n_experts, K = c.n_used, I = c.moe_inter;
  int64_t Is = 0, wmax = 1;
  for (int l = 0; l < c.n_layers; ++l) {
    const BlockWeights& b = m.runtime().model().block(l);
    Is = std::max(Is, b.sw1.rows);
    if (b.ratio) wmax = std::max<int64_t>(wmax, b.comp.coff * b.comp.d);
    if (b.ratio == 4) wmax = std::max<int64_t>(wmax, b.idx_comp.coff * b.idx_comp.d);
  }
  S.X = fbuf(hc * D);
  S.h = fbuf(D);
  S.f = fbuf(D);
  S.mixes = fbuf((2 + hc) * hc);
  S.pre = fbuf(hc);
  S.post = fbuf(hc);
  S.comb = fbuf(hc * hc);
  S.qr = fbuf(c.q_lora_rank);
  S.q = fbuf(H * hd);
  S.kv = fbuf(hd);
  S.o = fbuf(H * hd);
  S.z = fbuf(c.o_groups * c.o_lora_rank);
  S.iq = fbuf(c.idx_heads * c.idx_dim);
  S.iw = fbuf(c.idx_heads);
  S.a = fbuf(wmax);
  S.g = fbuf(wmax);
  S.score = fbuf(ctx / 4 + 1);
  S.sel = fbuf(std::max<int64_t>(c.idx_topk, 1));
  S.topk_scr = DevBuf(cudaops::topk_scratch_bytes(ctx / 4 + 1));
  S.glog = fbuf(E);
  S.ridx = fbuf(K);
  S.rw = fbuf(K);
  S.eg = fbuf(K * I);
  S.eu = fbuf(K * I);
  S.eh = fbuf(K * I);
  S.ey = fbuf(K * D);
  S.sg = fbuf(Is);
  S.su = fbuf(Is);
  S.sh = fbuf(Is);
  S.shy = fbuf(D);
  S.logits = fbuf(c.vocab);
  S.tok = fbuf(1);
  S.ape_tmp = fbuf(wmax);
  std::vector<int32_t> iota(static_cast<size_t>(ctx / 128 + 1));
  for (size_t i = 0; i < iota.size(); ++i) iota[i] = static_cast<int32_t>(i);
  S.iota = fbuf(static_cast<int64_t>(iota.size()));
  check(cudaMemcpy(S.iota.p, iota.data(), iota.size() * 4, cudaMemcpyHostToDevice), "iota");
  S.layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const BlockWeights& b = m.runtime().model().block(l);
    CudaLayer& L = S.layers[static_cast<size_t>(l)];
    L.window = fbuf(c.window * hd);
    if (b.ratio) {
      L.comp_kv = fbuf(ctx / b.ratio * hd);
      const int64_t w = b.comp.coff * b.comp.d;
      L.comp_kv_st = fbuf(b.comp.coff * b.ratio * w);
      L.comp_sc_st = fbuf(b.comp.coff * b.ratio * w);
    }
    if (b.ratio == 4) {
      L.idx_kv = fbuf(ctx / 4 * c.idx_dim);
      const int64_t w = b.idx_comp.coff * b.idx_comp.d;
      L.idx_kv_st = fbuf(b.idx_comp.coff * 4 * w);
      L.idx_sc_st = fbuf(b.idx_comp.coff * 4 * w);
    }
  }
  reset();
}

CudaSession::~CudaSession() = default;

void CudaSession::reset() {
  cudaStream_t s = m_.impl().stream;
  for (CudaLayer& L : impl_->layers) {
    L.n_comp = L.n_idx = 0;
    if (L.window.p) check(cudaMemsetAsync(L.window.p, 0, L.window.n, s), "reset");
    if (L.comp_kv_st.p) {
      check(cudaMemsetAsync(L.comp_kv_st.p, 0, L.comp_kv_st.n, s), "reset");
      fill(L.comp_sc_st, -INFINITY, s);
    }
    if (L.idx_kv_st.p) {
      check(cudaMemsetAsync(L.idx_kv_st.p, 0, L.idx_kv_st.n, s), "reset");
      fill(L.idx_sc_st, -INFINITY, s);
    }
  }
  check(cudaStreamSynchronize(s), "reset");
  pos_ = 0;
}

size_t CudaSession::device_bytes() const {
  size_t n = 0;
  for (const CudaLayer& L : impl_->layers)
    for (const DevBuf* b : {&L.window, &L.comp_kv, &L.idx_kv, &L.comp_kv_st, &L.comp_sc_st, &L.idx_kv_st, &L.idx_sc_st})
      n += b->n;
  return n;
}

std::vector<float> CudaSession::forward(const int32_t* tokens, int64_t T, bool all_logits) {
  const Runtime& rt = m_.runtime();
  const Model& M = rt.model();
  const ModelConfig& c = M.cfg();
  const CudaModelImpl& W = m_.impl();
  CudaSessionImpl& S = *impl_;
  cudaStream_t s = W.stream;
  if (T <= 0) throw std::invalid_argument("no tokens given");
  for (int64_t t = 0; t < T; ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab)
      throw std::out_of_range("token id " + std::to_string(tokens[t]) + " at index " + std::to_string(t) +
                              " is outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
  if (pos_ + T > ctx_)
    throw std::length_error("context overflow: the session holds " + std::to_string(pos_) + " tokens and " +
                            std::to_string(T) + " more exceed its context of " + std::to_string(ctx_) +
                            "; create the session with a larger ctx");
  check(cudaSetDevice(W.device), "cudaSetDevice");
  const bool qat = rt.options().qat;
  const int64_t D = c.dim, hc = c.hc, hcD = hc * D, nmix = (2 + hc) * hc, H = c.n_heads, hd = c.head_dim;
  const int64_t rd = c.rope_dim, nd = hd - rd, win = c.window, K = c.n_used, I = c.moe_inter;
  const int64_t G = c.o_groups, Ro = c.o_lora_rank, gs = H * hd / G;
  auto gemv = [&](const WeightView& w, const float* x, float* y) {
    cudaops::gemv(static_cast<int>(w.type), W.w(w), w.rows, w.cols, x, 1, y, 0, s);
  };
  const int64_t n_out = all_logits ? T : 1;
  std::vector<float> out(static_cast<size_t>(n_out * c.vocab));

  for (int64_t t = 0; t < T; ++t) {
    const int64_t p = pos_ + t;
    check(cudaMemcpyAsync(S.tok.p, &tokens[t], 4, cudaMemcpyHostToDevice, s), "token upload");
    cudaops::dequant_rows(static_cast<int>(M.embed.type), W.w(M.embed), D, S.tok.i(), 1, S.h.f(), s);
    for (int64_t j = 0; j < hc; ++j)
      check(cudaMemcpyAsync(S.X.f() + j * D, S.h.p, D * 4, cudaMemcpyDeviceToDevice, s), "stream copy");

    for (int l = 0; l < c.n_layers; ++l) {
      const BlockWeights& b = M.block(l);
      CudaLayer& L = S.layers[static_cast<size_t>(l)];
      const float* freqs = b.ratio ? W.freqs_comp.f() : W.freqs_win.f();
      for (int sub = 0; sub < 2; ++sub) {
        const WeightView& fn = sub == 0 ? b.hc_attn_fn : b.hc_ffn_fn;
        gemv(fn, S.X.f(), S.mixes.f());
        cudaops::hc_scale_mixes(S.X.f(), 1, hcD, c.norm_eps, S.mixes.f(), static_cast<int>(nmix), s);
        cudaops::hc_coeffs(S.mixes.f(), 1, W.v(sub == 0 ? b.hc_attn_scale : b.hc_ffn_scale),
                           W.v(sub == 0 ? b.hc_attn_base : b.hc_ffn_base), static_cast<int>(hc),
                           static_cast<int>(c.sinkhorn_iters), c.hc_eps, S.pre.f(), S.post.f(), S.comb.f(), s);
        cudaops::hc_collapse(S.X.f(), S.pre.f(), 1, static_cast<int>(hc), D, S.h.f(), s);
        cudaops::rms_norm(S.h.f(), W.v(sub == 0 ? b.attn_norm : b.ffn_norm), S.h.f(), 1, D, c.norm_eps, s);
        if (sub == 0) {
          // ---- attention (session.cpp Session::attention, one token) ----
          gemv(b.wq_a, S.h.f(), S.qr.f());
          cudaops::rms_norm(S.qr.f(), W.v(b.q_norm), S.qr.f(), 1, c.q_lora_rank, c.norm_eps, s);
          gemv(b.wq_b, S.qr.f(), S.q.f());
          cudaops::rms_norm(S.q.f(), nullptr, S.q.f(), H, hd, c.norm_eps, s);
          cudaops::rope_tail(S.q.f(), H, hd, rd, p, H, freqs, false, s);
          gemv(b.wkv, S.h.f(), S.kv.f());
          cudaops::rms_norm(S.kv.f(), W.v(b.kv_norm), S.kv.f(), 1, hd, c.norm_eps, s);
          cudaops::rope_tail(S.kv.f(), 1, hd, rd, p, 1, freqs, false, s);
          if (qat) cudaops::fp8_fake_quant(S.kv.f(), 1, hd, nd, 64, s);
          auto run_compressor = [&](const CompressorWeights& cw, DevBuf& st_kv, DevBuf& st_sc, DevBuf& rows,
                                    int64_t& n_rows, bool rotate) {
            const int64_t d = cw.d, w = cw.coff * d, m = cw.ratio;
            gemv(cw.wkv, S.h.f(), S.a.f());
            gemv(cw.wgate, S.h.f(), S.g.f());
            cudaops::add_rows(S.g.f(), W.v(cw.ape) + (p % m) * w, w, s);
            float* e = rows.f() + n_rows * d;
            if (!cudaops::compressor_step(st_kv.f(), st_sc.f(), static_cast<int>(m), static_cast<int>(d), S.a.f(),
                                          S.g.f(), p, e, s))
              return;
            cudaops::rms_norm(e, W.v(cw.norm), e, 1, d, c.norm_eps, s);
            cudaops::rope_tail(e, 1, d, rd, p + 1 - m, 1, freqs, false, s);
            if (rotate) {
              cudaops::hadamard(e, 1, d, s);
              if (qat) cudaops::fp4_fake_quant(e, 1, d, 32, s);
            } else if (qat) {
              cudaops::fp8_fake_quant(e, 1, d, d - rd, 64, s);
            }
            ++n_rows;
          };
          const int32_t* ids = nullptr;
          int64_t n_ids = 0;
          if (b.ratio == 4) {
            const int64_t nI = c.idx_heads, dI = c.idx_dim;
            gemv(b.idx_wq_b, S.qr.f(), S.iq.f());
            gemv(b.idx_proj, S.h.f(), S.iw.f());
            cudaops::rope_tail(S.iq.f(), nI, dI, rd, p, nI, freqs, false, s);
            cudaops::hadamard(S.iq.f(), nI, dI, s);
            if (qat) cudaops::fp4_fake_quant(S.iq.f(), nI, dI, 32, s);
            cudaops::scale(
                S.iw.f(), nI,
                static_cast<float>(std::pow(static_cast<double>(dI), -0.5) * std::pow(static_cast<double>(nI), -0.5)),
                s);
            run_compressor(b.idx_comp, L.idx_kv_st, L.idx_sc_st, L.idx_kv, L.n_idx, true);
            const int64_t n_vis = (p + 1) / 4;
            cudaops::indexer_scores(S.iq.f(), S.iw.f(), nI, dI, L.idx_kv.f(), n_vis, S.score.f(), s);
            cudaops::topk_ids(S.score.f(), n_vis, c.idx_topk, S.sel.i(), S.topk_scr.p, s);
            ids = S.sel.i();
            n_ids = c.idx_topk;
          }
          if (b.ratio) run_compressor(b.comp, L.comp_kv_st, L.comp_sc_st, L.comp_kv, L.n_comp, false);
          if (b.ratio == 128) {
            ids = S.iota.i();
            n_ids = (p + 1) / 128;
          }
          // the ring slot p % win holds position p - win, outside this query's window: write first
          check(cudaMemcpyAsync(L.window.f() + (p % win) * hd, S.kv.p, hd * 4, cudaMemcpyDeviceToDevice, s), "window");
          cudaops::sparse_attention(S.q.f(), H, hd, L.window.f(), win, p, L.comp_kv.f(), ids, n_ids, W.v(b.sinks),
                                    static_cast<float>(std::pow(static_cast<double>(hd), -0.5)), S.o.f(), s);
          cudaops::rope_tail(S.o.f(), H, hd, rd, p, H, freqs, true, s);
          for (int64_t gi = 0; gi < G; ++gi) {
            const WeightView wg = b.wo_a.slice(gi * Ro, Ro);
            cudaops::gemv(static_cast<int>(wg.type), W.w(wg), wg.rows, wg.cols, S.o.f() + gi * gs, 1, S.z.f() + gi * Ro,
                          0, s);
          }
          gemv(b.wo_b, S.z.f(), S.f.f());
        } else {
          // ---- MoE (session.cpp Session::moe, one token): only the K routed experts' rows are read ----
          gemv(b.gate, S.h.f(), S.glog.f());
          cudaops::route(S.glog.f(), 1, c.n_experts, static_cast<int>(K), W.v(b.bias),
                         b.hash ? static_cast<const int32_t*>(W.dev(b.tid2eid)) : nullptr, S.tok.i(), c.route_scale,
                         c.norm_topk, S.ridx.i(), S.rw.f(), s);
          cudaops::moe_gemv(static_cast<int>(b.w1.type), W.w(b.w1), I, D, S.ridx.i(), static_cast<int>(K), S.h.f(), 0,
                            S.eg.f(), I, s);
          cudaops::moe_gemv(static_cast<int>(b.w3.type), W.w(b.w3), I, D, S.ridx.i(), static_cast<int>(K), S.h.f(), 0,
                            S.eu.f(), I, s);
          cudaops::swiglu(S.eg.f(), S.eu.f(), S.rw.f(), K, I, c.swiglu_exp[static_cast<size_t>(l)], S.eh.f(), s);
          cudaops::moe_gemv(static_cast<int>(b.w2.type), W.w(b.w2), D, I, S.ridx.i(), static_cast<int>(K), S.eh.f(), I,
                            S.ey.f(), D, s);
          const int64_t Is = b.sw1.rows;
          gemv(b.sw1, S.h.f(), S.sg.f());
          gemv(b.sw3, S.h.f(), S.su.f());
          cudaops::swiglu(S.sg.f(), S.su.f(), nullptr, 1, Is, c.swiglu_shexp[static_cast<size_t>(l)], S.sh.f(), s);
          gemv(b.sw2, S.sh.f(), S.shy.f());
          cudaops::moe_combine(S.ey.f(), S.ridx.i(), S.shy.f(), 1, static_cast<int>(K), D, S.f.f(), s);
        }
        cudaops::hc_expand(S.f.f(), S.X.f(), S.post.f(), S.comb.f(), 1, static_cast<int>(hc), D, s);
      }
    }
    if (t >= T - n_out) {
      // ---- head (session.cpp Session::head) ----
      gemv(M.hc_head_fn, S.X.f(), S.mixes.f());
      cudaops::hc_scale_mixes(S.X.f(), 1, hcD, c.norm_eps, S.mixes.f(), static_cast<int>(hc), s);
      cudaops::hc_head_pre(S.mixes.f(), 1, W.v(M.hc_head_scale), W.v(M.hc_head_base), static_cast<int>(hc), c.hc_eps,
                           S.pre.f(), s);
      cudaops::hc_collapse(S.X.f(), S.pre.f(), 1, static_cast<int>(hc), D, S.h.f(), s);
      cudaops::rms_norm(S.h.f(), W.v(M.out_norm), S.h.f(), 1, D, c.norm_eps, s);
      gemv(M.head, S.h.f(), S.logits.f());
      float* dst = &out[static_cast<size_t>((t - (T - n_out)) * c.vocab)];
      check(cudaMemcpyAsync(dst, S.logits.p, static_cast<size_t>(c.vocab) * 4, cudaMemcpyDeviceToHost, s), "logits");
    }
    // the token id buffer is reused by the next step: finish this one first
    check(cudaStreamSynchronize(s), "forward step");
  }
  pos_ += T;
  return out;
}

}  // namespace dsv4
