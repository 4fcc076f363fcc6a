// MoE routing (spec §6): sqrt-softplus scores, bias used for selection only, hash routing via
// tid2eid, normalised weights x routed scale; and the clamped SwiGLU expert (routing weight applied
// before the down projection, as the reference).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

Routing route(const float* logits, int64_t E, int K, const float* bias, const int32_t* hash_row, float route_scale,
              bool norm) {
  std::vector<float> score(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) {
    const float x = logits[e];
    const float sp = x > 20.f ? x : std::log1p(std::exp(x));
    score[static_cast<size_t>(e)] = std::sqrt(sp);
  }
  Routing r;
  r.idx.resize(static_cast<size_t>(K));
  r.w.resize(static_cast<size_t>(K));
  r.margin = INFINITY;
  if (hash_row) {
    for (int k = 0; k < K; ++k) r.idx[static_cast<size_t>(k)] = hash_row[k];
  } else {
    std::vector<float> sel(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) sel[static_cast<size_t>(e)] = score[static_cast<size_t>(e)] + bias[e];
    std::vector<int> order(static_cast<size_t>(E));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sel[static_cast<size_t>(a)] > sel[static_cast<size_t>(b)]; });
    for (int k = 0; k < K; ++k) r.idx[static_cast<size_t>(k)] = order[static_cast<size_t>(k)];
    if (K < E) r.margin = sel[static_cast<size_t>(order[static_cast<size_t>(K - 1)])] - sel[static_cast<size_t>(order[static_cast<size_t>(K)])];
  }
  float s = 0.f;
  for (int k = 0; k < K; ++k) s += (r.w[static_cast<size_t>(k)] = score[static_cast<size_t>(r.idx[static_cast<size_t>(k)])]);
  for (int k = 0; k < K; ++k) r.w[static_cast<size_t>(k)] = norm ? r.w[static_cast<size_t>(k)] / s * route_scale : r.w[static_cast<size_t>(k)] * route_scale;
  return r;
}

void expert_ffn(const WeightView& w1, const WeightView& w3, const WeightView& w2, const float* x, int64_t T,
                const float* wt, float limit, float* y, const OpCtx& ctx, float* mid) {
  const int64_t I = w1.rows;
  std::vector<float> g(static_cast<size_t>(T * I)), u(static_cast<size_t>(T * I));
  linear(w1, x, T, g.data(), ctx);
  linear(w3, x, T, u.data(), ctx);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < I; ++i) {
      float gv = g[static_cast<size_t>(t * I + i)], uv = u[static_cast<size_t>(t * I + i)];
      if (limit > 0) {
        uv = std::min(limit, std::max(-limit, uv));
        gv = std::min(gv, limit);
      }
      float h = gv / (1.0f + std::exp(-gv)) * uv;
      if (wt) h = wt[t] * h;
      g[static_cast<size_t>(t * I + i)] = h;
    }
  if (mid) std::copy(g.begin(), g.end(), mid);
  linear(w2, g.data(), T, y, ctx);
}

}  // namespace dsv4
