// Host-array wrappers of the runtime's CUDA ops (backend.h): allocate, copy in, launch, copy out, synchronise;
// the host runners (on_host: the kernels' per-thread code of logic.cuh / runtime/ops_shared.h executed on the
// CPU, warp and block reductions replayed in the device's order); and the CPU runtime's ops on the same arrays.
// Test and benchmark plumbing only; nothing here is on the runtime's hot path.
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/ops_cpu/ops.h"
#include "runtime/ops_cuda/backend.h"
#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"
#include "runtime/ops_cuda/plan.h"

namespace dsv4::cudaops {
void dequant_rows_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, float* out);  // linear.cu
void gemv_emulate_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y);
}  // namespace dsv4::cudaops

namespace dsv4::cuda {
namespace {
using cudaops::check;

void need_device() {
  if (device_count() == 0) throw std::runtime_error("no CUDA device is available");
}

// Device copy of a host array (or an uninitialised buffer of n elements when src is null).
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  Dev(const T* src, size_t count) : n(count) {
    check(cudaMalloc(&p, (n ? n : 1) * sizeof(T)), "cudaMalloc");
    if (src && n) check(cudaMemcpy(p, src, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  explicit Dev(size_t count) : Dev(nullptr, count) {}
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void get(T* dst) const {
    check(cudaDeviceSynchronize(), "kernel");
    if (n) check(cudaMemcpy(dst, p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  }
};

// An xor-shuffle reduction of common.cuh (warp_sum, warp_max) on the 32 lane values v, replayed: at each
// distance 16..1 every lane combines its value with its partner's; the lanes end equal.  Returns lane 0's.
template <class Op>
float warp_reduce_host(float* v, Op op) {
  for (int o = 16; o > 0; o >>= 1) {
    float nv[32];
    for (int l = 0; l < 32; ++l) nv[l] = op(v[l], v[l ^ o]);
    for (int l = 0; l < 32; ++l) v[l] = nv[l];
  }
  return v[0];
}
float add_host(float a, float b) { return a + b; }
float max_host(float a, float b) { return fmaxf(a, b); }

// block_sum (common.cuh) over `threads` per-thread values, replayed: every warp's xor tree, then one more tree
// over the warps' sums (zeros in the lanes past the last warp).
float block_sum_host(const float* part, int threads) {
  const int nw = threads / 32;
  float red[32], v[32];
  for (int w = 0; w < nw; ++w) {
    for (int l = 0; l < 32; ++l) v[l] = part[w * 32 + l];
    red[w] = warp_reduce_host(v, add_host);
  }
  for (int l = 0; l < 32; ++l) v[l] = l < nw ? red[l] : 0.f;
  return warp_reduce_host(v, add_host);
}

void check_fake_quant(int64_t n, int block) {
  if (block < 1 || block > 64 || n % block)
    throw std::invalid_argument("fake_quant: block must be in [1, 64] and divide n, got " + std::to_string(block));
}
void check_route(int64_t E, int K, const int32_t* tid2eid, int64_t V, const int32_t* tokens, int64_t T) {
  if (K < 1 || K > 32 || K > E) throw std::invalid_argument("route: need 1 <= K <= min(32, E)");
  if (tid2eid)
    for (int64_t t = 0; t < T; ++t)
      if (tokens[t] < 0 || tokens[t] >= V)
        throw std::invalid_argument("route: token " + std::to_string(tokens[t]) + " outside tid2eid's " +
                                    std::to_string(V) + " rows");
}
}  // namespace

void gemv(int qtype, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y, bool on_host) {
  if (on_host) return cudaops::gemv_emulate_host(qtype, w, rows, cols, x, n_vec, y);
  need_device();
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, n_vec, 1);
  Dev<uint8_t> dw(w, c.row_bytes * static_cast<size_t>(rows));
  Dev<float> dx(x, static_cast<size_t>(n_vec * cols)), dy(static_cast<size_t>(n_vec * rows));
  cudaops::gemv(qtype, dw.p, rows, cols, dx.p, n_vec, dy.p, rows, nullptr);
  dy.get(y);
}

void moe_gemv(int qtype, const uint8_t* w, int64_t n_experts, int64_t rows, int64_t cols, const int32_t* ids,
              int n_slots, const float* x, float* y) {
  need_device();
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, 1, n_slots);
  for (int i = 0; i < n_slots; ++i)
    if (ids[i] >= n_experts)
      throw std::invalid_argument("moe_gemv: expert id " + std::to_string(ids[i]) + " >= " + std::to_string(n_experts));
  Dev<uint8_t> dw(w, c.row_bytes * static_cast<size_t>(rows * n_experts));
  Dev<int32_t> di(ids, static_cast<size_t>(n_slots));
  Dev<float> dx(x, static_cast<size_t>(n_slots * cols)), dy(static_cast<size_t>(n_slots * rows));
  check(cudaMemset(dy.p, 0, dy.n * 4), "cudaMemset");
  cudaops::moe_gemv(qtype, dw.p, rows, cols, di.p, n_slots, dx.p, cols, dy.p, rows, nullptr);
  dy.get(y);
}

void dequant_rows_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, float* out) {
  cudaops::dequant_rows_host(qtype, w, rows, cols, out);
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, bool on_host) {
  if (on_host) {  // rms_norm_kernel, block per row
    float part[cudaops::kNormThreads];
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * n;
      for (int t = 0; t < cudaops::kNormThreads; ++t) part[t] = cudaops::sumsq_partial(xr, n, t, cudaops::kNormThreads);
      const float rr = rms_scale(block_sum_host(part, cudaops::kNormThreads), n, eps);
      for (int64_t i = 0; i < n; ++i) y[r * n + i] = rms_apply(xr[i], w, i, rr);
    }
    return;
  }
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n)), dw(w, w ? static_cast<size_t>(n) : 0),
      dy(static_cast<size_t>(rows * n));
  cudaops::rms_norm(dx.p, w ? dw.p : nullptr, dy.p, rows, n, eps, nullptr);
  dy.get(y);
}

void rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
               bool inverse, bool on_host) {
  if (on_host) {  // rope_tail_kernel, thread per (row, pair)
    for (int64_t i = 0; i < rows * (rd / 2); ++i)
      cudaops::rope_tail_thread(x, n, rd, pos0, rows_per_pos, freqs, inverse, i);
    return;
  }
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n)), df(freqs, static_cast<size_t>(rd / 2));
  cudaops::rope_tail(dx.p, rows, n, rd, pos0, rows_per_pos, df.p, inverse, nullptr);
  dx.get(x);
}

void fake_quant(float* x, int64_t rows, int64_t n, int block, bool fp4, bool on_host) {
  check_fake_quant(n, block);
  if (on_host) {  // fake_quant_kernel, warp per block: lane l holds elements l and l + 32
    const int64_t groups = n / block;
    for (int64_t gw = 0; gw < rows * groups; ++gw) {
      float* g = x + (gw / groups) * n + (gw % groups) * block;
      float v0[32], v1[32], a[32];
      for (int l = 0; l < 32; ++l) {
        v0[l] = l < block ? g[l] : 0.f;
        v1[l] = l + 32 < block ? g[l + 32] : 0.f;
        a[l] = fmaxf(fabsf(v0[l]), fabsf(v1[l]));
      }
      const float s = cudaops::fake_quant_scale(warp_reduce_host(a, max_host), fp4);
      for (int l = 0; l < 32; ++l) {
        if (l < block) g[l] = cudaops::fake_quant_value(v0[l], s, fp4);
        if (l + 32 < block) g[l + 32] = cudaops::fake_quant_value(v1[l], s, fp4);
      }
    }
    return;
  }
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n));
  if (fp4)
    cudaops::fp4_fake_quant(dx.p, rows, n, block, nullptr);
  else
    cudaops::fp8_fake_quant(dx.p, rows, n, n, block, nullptr);
  dx.get(x);
}

void hadamard(float* x, int64_t rows, int64_t n) {
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n));
  cudaops::hadamard(dx.p, rows, n, nullptr);
  dx.get(x);
}

void hc_coeffs(const float* mixes, int64_t T, const float* scale, const float* base, int hc, int iters, float eps,
               float* pre, float* post, float* comb, bool on_host) {
  const int nmix = (2 + hc) * hc;
  if (hc > 4) throw std::invalid_argument("hc_coeffs: hc must be <= 4");
  if (on_host) {
    for (int64_t t = 0; t < T; ++t)
      cudaops::hc_coeffs_one(mixes + t * nmix, scale, base, hc, iters, eps, pre + t * hc, post + t * hc,
                             comb + t * hc * hc);
    return;
  }
  need_device();
  Dev<float> dm(mixes, static_cast<size_t>(T * nmix)), ds(scale, 3), db(base, static_cast<size_t>(nmix));
  Dev<float> dpre(static_cast<size_t>(T * hc)), dpost(static_cast<size_t>(T * hc)),
      dcomb(static_cast<size_t>(T * hc * hc));
  cudaops::hc_coeffs(dm.p, T, ds.p, db.p, hc, iters, eps, dpre.p, dpost.p, dcomb.p, nullptr);
  dpre.get(pre);
  dpost.get(post);
  dcomb.get(comb);
}

void route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid, int64_t V,
           const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, bool on_host) {
  check_route(E, K, tid2eid, V, tokens, T);
  if (on_host) {  // route_kernel, warp per token
    std::vector<float> score(static_cast<size_t>(E)), sel(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t e = 0; e < E; ++e) {
        score[static_cast<size_t>(e)] = route_score(logits[t * E + e]);
        sel[static_cast<size_t>(e)] = route_biased(score[static_cast<size_t>(e)], bias, e);
      }
      int32_t* it = idx + t * K;
      if (tid2eid) {
        for (int k = 0; k < K; ++k) it[k] = tid2eid[static_cast<int64_t>(tokens[t]) * K + k];
      } else {
        for (int k = 0; k < K; ++k) {
          float best[32];
          int bi[32];
          for (int l = 0; l < 32; ++l) cudaops::route_lane_best(sel.data(), E, l, &best[l], &bi[l]);
          for (int o = 16; o > 0; o >>= 1) {  // the shuffle merge: every lane looks at its xor partner's pick
            float nb[32];
            int ni[32];
            for (int l = 0; l < 32; ++l) {
              const bool take = ranks_before(best[l ^ o], bi[l ^ o], best[l], bi[l]);
              nb[l] = take ? best[l ^ o] : best[l];
              ni[l] = take ? bi[l ^ o] : bi[l];
            }
            for (int l = 0; l < 32; ++l) best[l] = nb[l], bi[l] = ni[l];
          }
          it[k] = bi[0];
          sel[static_cast<size_t>(bi[0])] = -INFINITY;
        }
      }
      route_weights(score.data(), it, K, route_scale, norm, w + t * K);
    }
    return;
  }
  need_device();
  Dev<float> dl(logits, static_cast<size_t>(T * E)), db(bias, bias ? static_cast<size_t>(E) : 0);
  Dev<int32_t> dt(tid2eid, tid2eid ? static_cast<size_t>(V * K) : 0),
      dtok(tokens, tid2eid ? static_cast<size_t>(T) : 0);
  Dev<int32_t> di(static_cast<size_t>(T * K));
  Dev<float> dw(static_cast<size_t>(T * K));
  cudaops::route(dl.p, T, E, K, bias ? db.p : nullptr, tid2eid ? dt.p : nullptr, tid2eid ? dtok.p : nullptr,
                 route_scale, norm, di.p, dw.p, nullptr);
  di.get(idx);
  dw.get(w);
}

void swiglu(const float* g, const float* u, const float* wt, int64_t T, int64_t I, float limit, float* h,
            bool on_host) {
  if (on_host) {  // swiglu_kernel, thread per element
    for (int64_t i = 0; i < T * I; ++i) h[i] = cudaops::swiglu_at(g, u, wt, I, limit, i);
    return;
  }
  need_device();
  Dev<float> dg(g, static_cast<size_t>(T * I)), du(u, static_cast<size_t>(T * I)),
      dwt(wt, wt ? static_cast<size_t>(T) : 0);
  Dev<float> dh(static_cast<size_t>(T * I));
  cudaops::swiglu(dg.p, du.p, wt ? dwt.p : nullptr, T, I, limit, dh.p, nullptr);
  dh.get(h);
}

void sparse_attention(const float* q, int64_t H, int64_t hd, const float* window, int64_t win, int64_t p,
                      const float* comp, int64_t n_comp, const int32_t* ids, int64_t n_ids, const float* sinks,
                      float scale, float* out) {
  need_device();
  Dev<float> dq(q, static_cast<size_t>(H * hd)), dwin(window, static_cast<size_t>(win * hd));
  Dev<float> dc(comp, static_cast<size_t>(n_comp * hd)), ds(sinks, static_cast<size_t>(H)),
      dout(static_cast<size_t>(H * hd));
  Dev<int32_t> di(ids, static_cast<size_t>(n_ids));
  cudaops::sparse_attention(dq.p, H, hd, dwin.p, win, p, dc.p, di.p, n_ids, ds.p, scale, dout.p, nullptr);
  dout.get(out);
}

int64_t compressor_run(int m, int d, const float* a, const float* g, int64_t T, int64_t pos0, float* out,
                       bool on_host) {
  if (m != 4 && m != 128) throw std::invalid_argument("compressor_run: ratio must be 4 or 128");
  const int coff = m == 4 ? 2 : 1, w = coff * d;
  std::vector<float> sc(static_cast<size_t>(coff * m * w), -INFINITY);
  if (on_host) {
    std::vector<float> kv(sc.size(), 0.f);
    int64_t n = 0;
    for (int64_t t = 0; t < T; ++t) {
      bool emitted = false;
      for (int c = 0; c < d; ++c)
        emitted =
            cudaops::compressor_channel(kv.data(), sc.data(), m, d, a + t * w, g + t * w, pos0 + t, c, out + n * d + c);
      if (emitted) ++n;
    }
    return n;
  }
  need_device();
  Dev<float> dkv(static_cast<size_t>(coff * m * w)), dsc(sc.data(), sc.size());
  check(cudaMemset(dkv.p, 0, dkv.n * 4), "cudaMemset");
  Dev<float> da(a, static_cast<size_t>(T * w)), dg(g, static_cast<size_t>(T * w)),
      dout(static_cast<size_t>((T / m + 1) * d));
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t)
    if (cudaops::compressor_step(dkv.p, dsc.p, m, d, da.p + t * w, dg.p + t * w, pos0 + t, dout.p + n * d, nullptr))
      ++n;
  std::vector<float> tmp(dout.n);
  dout.get(tmp.data());
  std::memcpy(out, tmp.data(), static_cast<size_t>(n * d) * 4);
  return n;
}

void topk(const float* score, int64_t n, int64_t k, int32_t* out, bool on_host) {
  if (k <= 0) return;
  if (!on_host) {
    need_device();
    Dev<float> ds(score, static_cast<size_t>(n));
    Dev<int32_t> dout(static_cast<size_t>(k));
    Dev<uint8_t> scratch(cudaops::topk_scratch_bytes(n));
    cudaops::topk_ids(ds.p, n, k, dout.p, scratch.p, nullptr);
    dout.get(out);
    return;
  }
  // the launch sequence of cudaops::topk_ids, each launch's threads run one after another (a bitonic stage's
  // compare-exchanges touch disjoint pairs, so the order inside a stage does not matter)
  int64_t N = 1;
  while (N < n) N <<= 1;
  std::vector<float> key(static_cast<size_t>(N));
  std::vector<int32_t> idx(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) {
    key[static_cast<size_t>(i)] = i < n ? score[i] : -INFINITY;
    idx[static_cast<size_t>(i)] = i < n ? static_cast<int32_t>(i) : 0x7fffffff;
  }
  auto sort = [&](int64_t len, int by_idx) {
    for (int64_t kk = 2; kk <= len; kk <<= 1)
      for (int64_t j = kk >> 1; j > 0; j >>= 1)
        for (int64_t i = 0; i < len; ++i) cudaops::bitonic_pair(key.data(), idx.data(), i, j, kk, by_idx);
  };
  const int64_t kk = k < n ? k : n;
  if (kk > 0) {
    sort(N, 0);
    int64_t K2 = 1;
    while (K2 < kk) K2 <<= 1;
    for (int64_t i = kk; i < K2; ++i) idx[static_cast<size_t>(i)] = 0x7fffffff;
    sort(K2, 1);
  }
  for (int64_t i = 0; i < k; ++i) out[i] = i < kk ? idx[static_cast<size_t>(i)] : -1;
}

void indexer_topk(const float* q, const float* w, int64_t nh, int64_t dI, const float* keys, int64_t n, int64_t k,
                  float* scores, int32_t* out) {
  need_device();
  Dev<float> dq(q, static_cast<size_t>(nh * dI)), dw(w, static_cast<size_t>(nh)), dk(keys, static_cast<size_t>(n * dI));
  Dev<float> dsc(static_cast<size_t>(n));
  Dev<int32_t> dout(static_cast<size_t>(k));
  Dev<uint8_t> scratch(cudaops::topk_scratch_bytes(n));
  cudaops::indexer_scores(dq.p, dw.p, nh, dI, dk.p, n, dsc.p, nullptr);
  cudaops::topk_ids(dsc.p, n, k, dout.p, scratch.p, nullptr);
  dsc.get(scores);
  dout.get(out);
}

void cpu_rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) dsv4::rms_norm(x + r * n, w, y + r * n, n, eps);
}

void cpu_rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos,
                   const float* freqs, bool inverse) {
  for (int64_t r = 0; r < rows; ++r) dsv4::rope_tail(x + r * n, n, rd, pos0 + r / rows_per_pos, freqs, inverse);
}

void cpu_fake_quant(float* x, int64_t rows, int64_t n, int block, bool fp4) {
  check_fake_quant(n, block);
  for (int64_t r = 0; r < rows; ++r) (fp4 ? dsv4::fp4_fake_quant : dsv4::fp8_fake_quant)(x + r * n, n, block);
}

void cpu_route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid, int64_t V,
               const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, float* margin) {
  check_route(E, K, tid2eid, V, tokens, T);
  for (int64_t t = 0; t < T; ++t) {
    const Routing r = dsv4::route(logits + t * E, E, K, bias,
                                  tid2eid ? tid2eid + static_cast<int64_t>(tokens[t]) * K : nullptr, route_scale, norm);
    for (int k = 0; k < K; ++k) {
      idx[t * K + k] = r.idx[static_cast<size_t>(k)];
      w[t * K + k] = r.w[static_cast<size_t>(k)];
    }
    margin[t] = r.margin;
  }
}

namespace {
struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    check(cudaEventCreate(&a), "cudaEventCreate");
    check(cudaEventCreate(&b), "cudaEventCreate");
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  double seconds(int iters) const {
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0.f;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    return ms * 1e-3 / iters;
  }
};
}  // namespace

double time_moe_gemv(int qtype, const uint8_t* w, int64_t n_experts, int64_t rows, int64_t cols, const int32_t* ids,
                     int n_slots, int iters) {
  need_device();
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, 1, n_slots);
  Dev<uint8_t> dw(w, c.row_bytes * static_cast<size_t>(rows * n_experts));
  Dev<int32_t> di(ids, static_cast<size_t>(iters) * n_slots);
  std::vector<float> x(static_cast<size_t>(cols), 0.01f);
  Dev<float> dx(x.data(), x.size()), dy(static_cast<size_t>(n_slots * rows));
  for (int i = 0; i < 3; ++i)
    cudaops::moe_gemv(qtype, dw.p, rows, cols, di.p + (i % iters) * n_slots, n_slots, dx.p, 0, dy.p, rows, nullptr);
  Events ev;
  check(cudaEventRecord(ev.a), "cudaEventRecord");
  for (int i = 0; i < iters; ++i)
    cudaops::moe_gemv(qtype, dw.p, rows, cols, di.p + static_cast<int64_t>(i) * n_slots, n_slots, dx.p, 0, dy.p, rows,
                      nullptr);
  check(cudaEventRecord(ev.b), "cudaEventRecord");
  return ev.seconds(iters);
}

double time_gemv(int qtype, const uint8_t* w, int64_t rows, int64_t cols, int n_vec, int iters) {
  need_device();
  const CudaGemvConfig c = cuda_gemv_config(static_cast<QType>(qtype), rows, cols, n_vec, 1);
  Dev<uint8_t> dw(w, c.row_bytes * static_cast<size_t>(rows));
  std::vector<float> x(static_cast<size_t>(n_vec * cols), 0.01f);
  Dev<float> dx(x.data(), x.size()), dy(static_cast<size_t>(n_vec * rows));
  for (int i = 0; i < 3; ++i) cudaops::gemv(qtype, dw.p, rows, cols, dx.p, n_vec, dy.p, rows, nullptr);
  Events ev;
  check(cudaEventRecord(ev.a), "cudaEventRecord");
  for (int i = 0; i < iters; ++i) cudaops::gemv(qtype, dw.p, rows, cols, dx.p, n_vec, dy.p, rows, nullptr);
  check(cudaEventRecord(ev.b), "cudaEventRecord");
  return ev.seconds(iters);
}

double time_copy(size_t bytes, int iters) {
  need_device();
  Dev<uint8_t> a(bytes), b(bytes);
  check(cudaMemset(a.p, 1, bytes), "cudaMemset");
  for (int i = 0; i < 2; ++i) check(cudaMemcpy(b.p, a.p, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpy");
  Events ev;
  check(cudaEventRecord(ev.a), "cudaEventRecord");
  for (int i = 0; i < iters; ++i) check(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpyAsync");
  check(cudaEventRecord(ev.b), "cudaEventRecord");
  return ev.seconds(iters);
}

}  // namespace dsv4::cuda
