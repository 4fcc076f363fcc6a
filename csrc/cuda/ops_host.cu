// Host-array wrappers of the runtime's CUDA ops (cuda/backend.h): allocate, copy in, launch, copy out,
// synchronise.  Test and benchmark plumbing only; nothing here is on the runtime's hot path.
#include <cstring>
#include <stdexcept>
#include <vector>

#include "cuda/backend.h"
#include "runtime/ops_cuda/common.cuh"
#include "runtime/ops_cuda/logic.cuh"
#include "runtime/ops_cuda/ops_cuda.h"
#include "runtime/ops_cuda/plan.h"

namespace dsv4::cudaops {
void dequant_rows_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, float* out);  // gemv.cu
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

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n)), dw(w, w ? static_cast<size_t>(n) : 0),
      dy(static_cast<size_t>(rows * n));
  cudaops::rms_norm(dx.p, w ? dw.p : nullptr, dy.p, rows, n, eps, nullptr);
  dy.get(y);
}

void rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
               bool inverse) {
  need_device();
  Dev<float> dx(x, static_cast<size_t>(rows * n)), df(freqs, static_cast<size_t>(rd / 2));
  cudaops::rope_tail(dx.p, rows, n, rd, pos0, rows_per_pos, df.p, inverse, nullptr);
  dx.get(x);
}

void fake_quant(float* x, int64_t rows, int64_t n, int block, bool fp4) {
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
           const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w) {
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

void swiglu(const float* g, const float* u, const float* wt, int64_t T, int64_t I, float limit, float* h) {
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
