// MoE routing (DeepSeek-V4's inference/model.py): sqrt-softplus scores, bias used for selection only, hash routing via
// tid2eid, normalised weights x routed scale; and the clamped SwiGLU expert (routing weight applied
// before the down projection, as the reference); the MoE sub-layer over a chunk, routed tokens grouped
// by expert so each active expert's rows are read once per chunk.  The router's score, top-k (the order of a stable
// descending sort) and weights and the SwiGLU element are runtime/ops_shared.h, the kernels' too.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "runtime/ops_cpu/layer.h"
#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

Routing route(const float* logits, int64_t E, int K, const float* bias, const int32_t* hash_row, float route_scale,
              bool norm) {
  std::vector<float> score(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) score[static_cast<size_t>(e)] = route_score(logits[e]);
  Routing r;
  r.idx.resize(static_cast<size_t>(K));
  r.w.resize(static_cast<size_t>(K));
  r.margin = INFINITY;
  if (hash_row) {
    for (int k = 0; k < K; ++k) r.idx[static_cast<size_t>(k)] = hash_row[k];
  } else {
    // one choice more than K gives the margin (the K-th minus the (K+1)-th biased score)
    const int K1 = K < E ? K + 1 : K;
    std::vector<float> sel(static_cast<size_t>(E)), val(static_cast<size_t>(K1));
    std::vector<int32_t> pick(static_cast<size_t>(K1));
    for (int64_t e = 0; e < E; ++e) sel[static_cast<size_t>(e)] = route_biased(score[static_cast<size_t>(e)], bias, e);
    route_topk(sel.data(), E, K1, pick.data(), val.data());
    for (int k = 0; k < K; ++k) r.idx[static_cast<size_t>(k)] = pick[static_cast<size_t>(k)];
    if (K < E) r.margin = val[static_cast<size_t>(K - 1)] - val[static_cast<size_t>(K)];
  }
  route_weights(score.data(), r.idx.data(), K, route_scale, norm, r.w.data());
  return r;
}

namespace {
// g[t][i] <- wt[t] * silu(min(g, L)) * clamp(u, -L, L) (L = limit when > 0): the SwiGLU with clamp of
// one expert's T rows, routing weight applied before the down projection (as the reference).
void swiglu(float* g, const float* u, int64_t T, int64_t I, const float* wt, float limit) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < I; ++i) {
      const float h = swiglu_one(g[t * I + i], u[t * I + i], limit);
      g[t * I + i] = wt ? wt[t] * h : h;
    }
}
}  // namespace

void expert_ffn(const WeightView& w1, const WeightView& w3, const WeightView& w2, const float* x, int64_t T,
                const float* wt, float limit, float* y, const OpCtx& ctx, float* mid) {
  const int64_t I = w1.rows;
  std::vector<float> g(static_cast<size_t>(T * I)), u(static_cast<size_t>(T * I));
  linear_batch({{w1, x, T, g.data(), I}, {w3, x, T, u.data(), I}}, ctx);
  swiglu(g.data(), u.data(), T, I, wt, limit);
  if (mid) std::copy(g.begin(), g.end(), mid);
  linear(w2, g.data(), T, y, ctx);
}

void moe_layer(const LayerCtx& lc, const float* h, const int32_t* tokens, int64_t T, float* out) {
  const ModelConfig& c = lc.cfg;
  const BlockWeights& b = lc.b;
  const OpCtx& ctx = lc.ops;
  const int64_t D = c.dim, E = c.n_experts, K = c.n_used, I = c.moe_inter;
  const bool taps = lc.taps.active();
  std::vector<float> logits(static_cast<size_t>(T * E));
  linear(b.gate, h, T, logits.data(), ctx);
  std::vector<Routing> R(static_cast<size_t>(T));
  for_rows(T, false, ctx, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      R[static_cast<size_t>(t)] =
          route(&logits[static_cast<size_t>(t * E)], E, static_cast<int>(K), b.bias.empty() ? nullptr : b.bias.data(),
                b.hash ? b.tid2eid + static_cast<int64_t>(tokens[t]) * K : nullptr, c.route_scale, c.norm_topk);
  });
  if (taps) {
    std::vector<float> ids(static_cast<size_t>(T * K)), ws(static_cast<size_t>(T * K)), mg(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        ids[static_cast<size_t>(t * K + k)] = static_cast<float>(R[static_cast<size_t>(t)].idx[static_cast<size_t>(k)]);
        ws[static_cast<size_t>(t * K + k)] = R[static_cast<size_t>(t)].w[static_cast<size_t>(k)];
      }
      mg[static_cast<size_t>(t)] = R[static_cast<size_t>(t)].margin;
    }
    lc.taps.add(lc.pre + "router_idx", ids.data(), T * K, K);
    lc.taps.add(lc.pre + "router_w", ws.data(), T * K, K);
    lc.taps.add(lc.pre + "router_margin", mg.data(), T, 1);
  }
  // Every active routed expert and the shared expert run as one batch of gate/up products, then one
  // batch of down products: two parallel jobs per layer instead of three per expert (decode touches 6+1
  // experts per layer, each too small to keep both threads streaming on its own).
  struct Active {
    int64_t e, n;
    std::vector<int64_t> slots;
    std::vector<float> x, w, g, u, y;
  };
  std::vector<Active> act;
  {
    std::vector<std::vector<int64_t>> by_expert(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t k = 0; k < K; ++k)
        by_expert[static_cast<size_t>(R[static_cast<size_t>(t)].idx[static_cast<size_t>(k)])].push_back(t * K + k);
    for (int64_t e = 0; e < E; ++e) {
      if (by_expert[static_cast<size_t>(e)].empty()) continue;
      Active a;
      a.e = e;
      a.slots = std::move(by_expert[static_cast<size_t>(e)]);
      a.n = static_cast<int64_t>(a.slots.size());
      a.x.resize(static_cast<size_t>(a.n * D));
      a.w.resize(static_cast<size_t>(a.n));
      a.g.resize(static_cast<size_t>(a.n * I));
      a.u.resize(static_cast<size_t>(a.n * I));
      a.y.resize(static_cast<size_t>(a.n * D));
      for (int64_t i = 0; i < a.n; ++i) {
        const int64_t t = a.slots[static_cast<size_t>(i)] / K, k = a.slots[static_cast<size_t>(i)] % K;
        std::memcpy(&a.x[static_cast<size_t>(i * D)], h + t * D, static_cast<size_t>(D) * 4);
        a.w[static_cast<size_t>(i)] = R[static_cast<size_t>(t)].w[static_cast<size_t>(k)];
      }
      act.push_back(std::move(a));
    }
  }
  const int64_t Is = b.sw1.rows;
  std::vector<float> sg(static_cast<size_t>(T * Is)), su(static_cast<size_t>(T * Is)), sh(static_cast<size_t>(T * D));
  std::vector<LinearTask> tasks;
  for (Active& a : act) {
    tasks.push_back({b.w1.slice(a.e * I, I), a.x.data(), a.n, a.g.data(), I});
    tasks.push_back({b.w3.slice(a.e * I, I), a.x.data(), a.n, a.u.data(), I});
  }
  tasks.push_back({b.sw1, h, T, sg.data(), Is});
  tasks.push_back({b.sw3, h, T, su.data(), Is});
  linear_batch(tasks, ctx);
  const float lim = c.swiglu_exp[static_cast<size_t>(lc.layer)];
  // the SwiGLU of every active expert, then the shared one: independent, so split over the pool when there are
  // several tokens (each element computed as alone: the same bits)
  const int64_t n_act = static_cast<int64_t>(act.size());
  for_rows(n_act + 1, T <= 1, ctx, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (i < n_act) {
        Active& a = act[static_cast<size_t>(i)];
        swiglu(a.g.data(), a.u.data(), a.n, I, a.w.data(), lim);
      } else {
        swiglu(sg.data(), su.data(), T, Is, nullptr, c.swiglu_shexp[static_cast<size_t>(lc.layer)]);
      }
    }
  });
  tasks.clear();
  for (Active& a : act) tasks.push_back({b.w2.slice(a.e * D, D), a.g.data(), a.n, a.y.data(), D});
  tasks.push_back({b.sw2, sg.data(), T, sh.data(), D});
  linear_batch(tasks, ctx);
  // per (token, slot) outputs, and the W2 inputs (routing weight included) when tapped (imatrix)
  std::vector<float> y(static_cast<size_t>(T * K * D));
  std::vector<float> mid(taps && lc.taps.want(lc.pre + "exp_mid") ? static_cast<size_t>(T * K * I) : 0);
  for (const Active& a : act)
    for (int64_t i = 0; i < a.n; ++i) {
      const size_t slot = static_cast<size_t>(a.slots[static_cast<size_t>(i)]);
      std::memcpy(&y[slot * static_cast<size_t>(D)], &a.y[static_cast<size_t>(i * D)], static_cast<size_t>(D) * 4);
      if (!mid.empty())
        std::memcpy(&mid[slot * static_cast<size_t>(I)], &a.g[static_cast<size_t>(i * I)], static_cast<size_t>(I) * 4);
    }
  if (!mid.empty())
    lc.taps.add(lc.pre + "exp_mid", mid.data(), T * K * I, I);  // row t*K+k: slot k of token t (router_idx)
  if (taps && lc.taps.want(lc.pre + "shexp_mid")) lc.taps.add(lc.pre + "shexp_mid", sg.data(), T * Is, Is);
  for (int64_t t = 0; t < T; ++t) {
    // sum in ascending expert id, then the shared expert (the reference's order)
    std::vector<int64_t> ks(static_cast<size_t>(K));
    std::iota(ks.begin(), ks.end(), 0);
    std::sort(ks.begin(), ks.end(), [&](int64_t a, int64_t bb) {
      return R[static_cast<size_t>(t)].idx[static_cast<size_t>(a)] <
             R[static_cast<size_t>(t)].idx[static_cast<size_t>(bb)];
    });
    float* ot = out + t * D;
    for (int64_t d = 0; d < D; ++d) ot[d] = 0.f;
    for (int64_t k : ks)
      for (int64_t d = 0; d < D; ++d) ot[d] += y[static_cast<size_t>((t * K + k) * D + d)];
    for (int64_t d = 0; d < D; ++d) ot[d] += sh[static_cast<size_t>(t * D + d)];
  }
}

}  // namespace dsv4
