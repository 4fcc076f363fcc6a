// Host launchers of the CUDA ops (device pointers in, device pointers out, one stream), one .cu file per op
// family, named as the ops_cpu/ file it mirrors.  Kernels are named *_kernel in the .cu files; these plain names
// launch them.  All activations are f32; weights are ggml blocks decoded in-kernel (dequant.cuh).  Included by
// .cu files (it needs cuda_runtime.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace dsv4::cudaops {

// ---- linear.cu ----
// y[v * y_stride + r] = W[r, :] . x[v * cols + :] for v < n_vec (1..8), r < rows.
void gemv(int qtype, const void* w, int64_t rows, int64_t cols, const float* x, int n_vec, float* y, int64_t y_stride,
          cudaStream_t s);
// Routed experts: W is the stacked tensor [n_experts * rows, cols]; slot i uses expert ids[i] (device int32;
// negative = skip), input x + i * x_slot_stride (0: one shared input) and output y + i * y_slot_stride.
// Only the active experts' rows are read.
void moe_gemv(int qtype, const void* w, int64_t rows, int64_t cols, const int32_t* ids, int n_slots, const float* x,
              int64_t x_slot_stride, float* y, int64_t y_slot_stride, cudaStream_t s);
// out[i * cols + :] = dequantized row idx[i] of W (embedding lookup).
void dequant_rows(int qtype, const void* w, int64_t cols, const int32_t* idx, int n, float* out, cudaStream_t s);
void add_rows(float* y, const float* b, int64_t n, cudaStream_t s);  // y += b (n floats)
void scale(float* y, int64_t n, float a, cudaStream_t s);            // y *= a

// ---- norm_rope.cu ----
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps, cudaStream_t s);
// Rotate the last rd dims of each of `rows` rows of width n (row i at position pos0 + i / rows_per_pos).
void rope_tail(float* x, int64_t rows, int64_t n, int64_t rd, int64_t pos0, int64_t rows_per_pos, const float* freqs,
               bool inverse, cudaStream_t s);
void fp8_fake_quant(float* x, int64_t rows, int64_t row_stride, int64_t n, int block, cudaStream_t s);
void fp4_fake_quant(float* x, int64_t rows, int64_t n, int block, cudaStream_t s);
void hadamard(float* x, int64_t rows, int64_t n, cudaStream_t s);  // n a power of two <= 1024

// ---- mhc.cu ----
// mixes[t][o] *= rsqrt(mean(x[t]^2) + eps), x [T][n], mixes [T][n_mix]
void hc_scale_mixes(const float* x, int64_t T, int64_t n, float eps, float* mixes, int n_mix, cudaStream_t s);
// Per token: pre/post/comb from the mixes (DeepSeek-V4's inference/model.py, Sinkhorn order of the reference).
void hc_coeffs(const float* mixes, int64_t T, const float* scale, const float* base, int hc, int iters, float eps,
               float* pre, float* post, float* comb, cudaStream_t s);
// Head collapse coefficients: pre[t][j] = sigmoid(mixes*scale[0] + base[j]) + eps.
void hc_head_pre(const float* mixes, int64_t T, const float* scale, const float* base, int hc, float eps, float* pre,
                 cudaStream_t s);
void hc_collapse(const float* x, const float* pre, int64_t T, int hc, int64_t D, float* y, cudaStream_t s);
void hc_expand(const float* f, float* x, const float* post, const float* comb, int64_t T, int hc, int64_t D,
               cudaStream_t s);  // in place on x [T][hc][D]

// ---- moe.cu ----
// Router (DeepSeek-V4's inference/model.py): logits [T][E] -> idx [T][K], w [T][K]; bias (may be null) for selection only; hash
// layers pass tid2eid [V][K] and tokens [T].
void route(const float* logits, int64_t T, int64_t E, int K, const float* bias, const int32_t* tid2eid,
           const int32_t* tokens, float route_scale, bool norm, int32_t* idx, float* w, cudaStream_t s);
// h[t][i] = wt[t] * silu(min(g, L)) * clamp(u, -L, L) (limit <= 0: no clamp; wt may be null).
void swiglu(const float* g, const float* u, const float* wt, int64_t T, int64_t I, float limit, float* h,
            cudaStream_t s);
// out[t] = sum over k in ascending expert id of y[t][k] + shared[t]
void moe_combine(const float* y, const int32_t* idx, const float* shared, int64_t T, int K, int64_t D, float* out,
                 cudaStream_t s);

// ---- attention.cu ----
// One query token p against window rows (ring [win][hd], positions max(0, p-win+1)..p at slot pos % win)
// and the compressed rows comp[ids[i]] (ids device int32, n_ids, negative = skip); one softmax with the
// per-head sink in the denominator (DeepSeek-V4's inference/model.py).  q [H][hd] -> out [H][hd].
void sparse_attention(const float* q, int64_t H, int64_t hd, const float* window, int64_t win, int64_t p,
                      const float* comp, const int32_t* ids, int64_t n_ids, const float* sinks, float scale, float* out,
                      cudaStream_t s);
// Indexer scores of one query: score[j] = sum_h w[h] * relu(q[h] . k[j]) for j < n; q [nh][dI], k [n][dI].
void indexer_scores(const float* q, const float* w, int64_t nh, int64_t dI, const float* k, int64_t n, float* score,
                    cudaStream_t s);
// Top-k of score[0..n) (descending, ties to the lower index; the stable order of the CPU runtime), returned
// as ascending ids in out[0..min(k, n)) (out[k'..k) = -1).  scratch: 2 * pow2ceil(n) * 8 bytes.
void topk_ids(const float* score, int64_t n, int64_t k, int32_t* out, void* scratch, cudaStream_t s);
size_t topk_scratch_bytes(int64_t n);

// ---- compressor.cu ----
// Compressor state machine for one token (DeepSeek-V4's inference/model.py): state kv/score [coff*m][coff*d] on the device;
// when pos completes a block, writes the pooled entry to out [d] and returns true (decided on the host).
bool compressor_step(float* st_kv, float* st_score, int m, int d, const float* a, const float* g, int64_t pos,
                     float* out, cudaStream_t s);

}  // namespace dsv4::cudaops
