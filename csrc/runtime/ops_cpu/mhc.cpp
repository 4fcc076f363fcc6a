// Manifold-constrained hyper-connections (DeepSeek-V4's inference/model.py): mixing coefficients with Sinkhorn-Knopp in the
// exact order of the reference (row softmax + eps, column norm, then iters-1 row/column passes),
// stream collapse (pre) and expansion (post + comb consumed transposed).  sigmoid and the RMS factor are
// runtime/ops_shared.h (the kernels' too).
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
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * n;
    float ss = 0.f;
    for (int64_t i = 0; i < n; ++i) ss += xt[i] * xt[i];
    const float r = rms_scale(ss, n, norm_eps);
    for (int64_t o = 0; o < fn.rows; ++o) mixes[t * fn.rows + o] *= r;
  }
}

void hc_collapse(const float* x, const float* pre, int hc, int64_t D, float* y) {
  for (int64_t d = 0; d < D; ++d) {
    float s = 0.f;
    for (int j = 0; j < hc; ++j) s += pre[j] * x[j * D + d];
    y[d] = s;
  }
}

void hc_expand(const float* f, const float* x, const float* post, const float* comb, int hc, int64_t D, float* out) {
  for (int k = 0; k < hc; ++k)
    for (int64_t d = 0; d < D; ++d) {
      float s = 0.f;
      for (int j = 0; j < hc; ++j) s += comb[j * hc + k] * x[j * D + d];
      out[k * D + d] = post[k] * f[d] + s;
    }
}

}  // namespace dsv4
