// Host-side entry points of the CUDA target: device discovery, the E4M3 decode (fp_decode.cu), and the runtime's
// CUDA ops on host arrays (ops_host.cu; tests, benchmarks).  The runtime's device-resident path is cuda_session.h.
// Compiled only when DSV4_HAVE_CUDA; every function throws std::runtime_error on a CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv4::cuda {

int device_count();  // 0 when there is no driver or no device (never throws)
std::string device_name(int device);
int runtime_version();  // CUDA runtime version the target was built against
// Decode n E4M3 bytes (host memory) to float32 (host memory) on device 0.
void decode_e4m3(const uint8_t* in, float* out, size_t n);

// ---- runtime ops on host arrays (ops_host.cu): copy in, run the ops_cuda kernel on device 0, copy out.  For
// parity tests and benchmarks; the runtime itself keeps data on the device.  Each throws std::runtime_error when
// no device is present.  Shapes as the launchers in ops_cuda.h.
// on_host (no device needed): the kernel's per-thread code (logic.cuh, dequant.cuh, runtime/ops_shared.h) run on
// the CPU, thread by thread, with its warp and block reductions replayed in the device's order.
void gemv(int qtype, const uint8_t* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y,
          bool on_host = false);
// w: stacked experts [n_experts * rows][row bytes]; x [n_slots][cols]; y [n_slots][rows]
void moe_gemv(int qtype, const uint8_t* w, int64_t n_experts, int64_t rows, int64_t cols, const int32_t* ids,
              int n_slots, const float* x, float* y);
// Host execution of the in-kernel decoders (no device needed).
void dequant_rows_host(int qtype, const uint8_t* w, int64_t rows, int64_t cols, float* out);
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, bool on_host = false);
void rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
               bool inverse, bool on_host = false);
void fake_quant(float* x, int64_t rows, int64_t n, int block, bool fp4, bool on_host = false);
void hadamard(float* x, int64_t rows, int64_t n);
void hc_coeffs(const float* mixes, int64_t T, const float* scale, const float* base, int hc, int iters, float eps,
               float* pre, float* post, float* comb, bool on_host = false);
// tid2eid [V][K] or nullptr; tokens [T] (hash layers only)
void route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid, int64_t V,
           const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, bool on_host = false);
void swiglu(const float* g, const float* u, const float* wt, int64_t T, int64_t I, float limit, float* h,
            bool on_host = false);
// window [win][hd] ring (slot = pos % win), comp [n_comp][hd], ids [n_ids] (negative = skip)
void sparse_attention(const float* q, int64_t H, int64_t hd, const float* window, int64_t win, int64_t p,
                      const float* comp, int64_t n_comp, const int32_t* ids, int64_t n_ids, const float* sinks,
                      float scale, float* out);
// Fresh compressor state, tokens at positions pos0..pos0+T-1 (a, g [T][coff*d], g already + ape); pooled
// entries [n_emitted][d] are appended to `out` (capacity T / m + 1 rows); returns n_emitted.
int64_t compressor_run(int m, int d, const float* a, const float* g, int64_t T, int64_t pos0, float* out,
                       bool on_host = false);
// Top-k ids of score[0..n) as the indexer's (descending, ties to the lower id; returned ascending, -1 padded).
void topk(const float* score, int64_t n, int64_t k, int32_t* out, bool on_host = false);
// Indexer scores of one query over n keys, then top-k ids (ascending, -1 padded) into out [k].
void indexer_topk(const float* q, const float* w, int64_t nh, int64_t dI, const float* keys, int64_t n, int64_t k,
                  float* scores, int32_t* out);

// ---- the CPU runtime's ops (ops_cpu/) on the same host arrays and shapes: the references that the host runners
// above are compared with (same bits where the arithmetic is shared: RoPE, fake-quant, the router).
void cpu_rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);
void cpu_rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos,
                   const float* freqs, bool inverse);
void cpu_fake_quant(float* x, int64_t rows, int64_t n, int block, bool fp4);
// margin [T]: the K-th minus the (K+1)-th biased score (inf for hash routing or K == E)
void cpu_route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid, int64_t V,
               const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, float* margin);

// ---- device-resident timing (benchmarks/cuda_bench.py): the weight is copied to the device once, then
// `iters` launches are timed with CUDA events after 3 warm-ups; mean seconds per launch.
// ids: [iters][n_slots] expert ids, one set per launch (so a decode-sized MoE GEMV does not hit L2).
double time_moe_gemv(int qtype, const uint8_t* w, int64_t n_experts, int64_t rows, int64_t cols, const int32_t* ids,
                     int n_slots, int iters);
double time_gemv(int qtype, const uint8_t* w, int64_t rows, int64_t cols, int n_vec, int iters);
double time_copy(size_t bytes, int iters);  // device-to-device cudaMemcpy of `bytes` (the bandwidth ceiling)

}  // namespace dsv4::cuda
