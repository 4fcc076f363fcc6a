// Manifold-constrained hyper-connections (DeepSeek-V4's inference/model.py): mixing coefficients with Sinkhorn-Knopp in the
// exact order of the reference (row softmax + eps, column norm, then iters-1 row/column passes),
// stream collapse (pre) and expansion (post + comb consumed transposed).  sigmoid and the RMS factor are
// runtime/ops_shared.h (the kernels' too).
#include <algorithm>
#include <cmath>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void hc_coeffs(const float* m, const float* scale, const float* base, int hc, int iters, float eps, float* pre,
               float* post, float* comb) {
  for (int j = 0; j < hc; ++j) {
    pre[j] = sigmoid(m[j] * scale[0] + base[j]) + eps;
    post[j] = 2.0f * sigmoid(m[hc + j] * scale[1] + base[hc + j]);
  }
  for (int j = 0; j < hc; ++j) {
    float* row = comb + j * hc;
    float mx = -INFINITY;
    for (int k = 0; k < hc; ++k) {
      row[k] = m[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
      mx = std::max(mx, row[k]);
    }
    float s = 0.f;
    for (int k = 0; k < hc; ++k) s += (row[k] = std::exp(row[k] - mx));
    for (int k = 0; k < hc; ++k) row[k] = row[k] / s + eps;
  }
  auto cols = [&] {
    for (int k = 0; k < hc; ++k) {
      float s = 0.f;
      for (int j = 0; j < hc; ++j) s += comb[j * hc + k];
      for (int j = 0; j < hc; ++j) comb[j * hc + k] /= (s + eps);
    }
  };
  auto rows = [&] {
    for (int j = 0; j < hc; ++j) {
      float s = 0.f;
      for (int k = 0; k < hc; ++k) s += comb[j * hc + k];
      for (int k = 0; k < hc; ++k) comb[j * hc + k] /= (s + eps);
    }
  };
  cols();
  for (int it = 1; it < iters; ++it) {
    rows();
    cols();
  }
}

void hc_mixes(const WeightView& fn, const float* x, int64_t T, float norm_eps, float* mixes, const OpCtx& ctx) {
  linear(fn, x, T, mixes, ctx);
  const int64_t n = fn.cols;
  // each token's sum of squares in element order, as rms_norm; up to 4 tokens' chains interleaved (the same
  // additions per token, so the same bits, in a quarter of the latency-bound time)
  for (int64_t t0 = 0; t0 < T; t0 += 4) {
    const int64_t nt = std::min<int64_t>(4, T - t0);
    float ss[4] = {0.f, 0.f, 0.f, 0.f};
    const float* xt = x + t0 * n;
    if (nt == 4) {
      for (int64_t i = 0; i < n; ++i)
        for (int k = 0; k < 4; ++k) ss[k] += xt[k * n + i] * xt[k * n + i];
    } else {
      for (int64_t k = 0; k < nt; ++k)
        for (int64_t i = 0; i < n; ++i) ss[k] += xt[k * n + i] * xt[k * n + i];
    }
    for (int64_t k = 0; k < nt; ++k) {
      const float r = rms_scale(ss[k], n, norm_eps);
      for (int64_t o = 0; o < fn.rows; ++o) mixes[(t0 + k) * fn.rows + o] *= r;
    }
  }
}

// hc_collapse and hc_expand run the element loop innermost (vectorized), each element still summing its products
// in stream order from 0: y[d] = sum_j pre[j] * x[j][d], out[k][d] = post[k] * f[d] + sum_j comb[j][k] * x[j][d].
void hc_collapse(const float* x, const float* pre, int hc, int64_t D, float* y) {
  for (int64_t d = 0; d < D; ++d) y[d] = 0.f;
  for (int j = 0; j < hc; ++j) {
    const float pj = pre[j], *xj = x + j * D;
    for (int64_t d = 0; d < D; ++d) y[d] += pj * xj[d];
  }
}

void hc_expand(const float* f, const float* x, const float* post, const float* comb, int hc, int64_t D, float* out) {
  for (int k = 0; k < hc; ++k) {
    float* o = out + k * D;
    for (int64_t d = 0; d < D; ++d) o[d] = 0.f;
    for (int j = 0; j < hc; ++j) {
      const float c = comb[j * hc + k], *xj = x + j * D;
      for (int64_t d = 0; d < D; ++d) o[d] += c * xj[d];
    }
    const float pk = post[k];
    for (int64_t d = 0; d < D; ++d) o[d] = pk * f[d] + o[d];
  }
}

}  // namespace dsv4
