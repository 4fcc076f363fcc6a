// Attention (DeepSeek-V4's inference/model.py): the sub-layer over chunks of tokens of one or several sequences
// (query/KV projections and the grouped low-rank output projection over all rows at once; the indexer and the
// compressors token by token in position order per sequence, on its own state; attention per token in parallel), and the one-query sparse softmax over window + compressed keys with a per-head
// sink in the denominator (§5.6).  Keys are the shared latent K = V rows; the running max is over keys
// only (as the official kernel).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "runtime/ops_cpu/layer.h"
#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void sparse_attention(const float* q, int64_t H, int64_t hd, const std::vector<const float*>& keys, const float* sinks,
                      float scale, float* out) {
  // Heads in groups of kHeads against each key in turn, so a key row is read once per group from L1
  // rather than once per head from L2/L3 (all heads share the latent keys).  Every head still forms its
  // scores and accumulates its output over the keys in key order, so the bits do not depend on the
  // grouping.
  constexpr int64_t kHeads = 8;
  const size_t n = keys.size();
  std::vector<float> z(static_cast<size_t>(kHeads) * n);
  for (int64_t h0 = 0; h0 < H; h0 += kHeads) {
    const int64_t nh = std::min(kHeads, H - h0);
    for (size_t e = 0; e < n; ++e)
      for (int64_t j = 0; j < nh; ++j)
        z[static_cast<size_t>(j) * n + e] = dot_f32(q + (h0 + j) * hd, keys[e], hd) * scale;
    float den[kHeads];
    for (int64_t j = 0; j < nh; ++j) {
      float* zj = &z[static_cast<size_t>(j) * n];
      float mx = -INFINITY;
      for (size_t e = 0; e < n; ++e) mx = std::max(mx, zj[e]);
      float d = 0.f;
      for (size_t e = 0; e < n; ++e) d += (zj[e] = std::exp(zj[e] - mx));
      den[j] = d + std::exp(sinks[h0 + j] - mx);
      std::fill(out + (h0 + j) * hd, out + (h0 + j + 1) * hd, 0.f);
    }
    for (size_t e = 0; e < n; ++e)
      for (int64_t j = 0; j < nh; ++j) axpy_f32(out + (h0 + j) * hd, z[static_cast<size_t>(j) * n + e], keys[e], hd);
    for (int64_t j = 0; j < nh; ++j) {
      float* oh = out + (h0 + j) * hd;
      for (int64_t d = 0; d < hd; ++d) oh[d] /= den[j];
    }
  }
}

// The KV row of each token: norm, RoPE and (QAT) FP8 rounding of the wkv projection, in place.
static void finish_kv(const LayerCtx& lc, float* kv, int64_t T, int64_t p0) {
  const ModelConfig& c = lc.cfg;
  const int64_t hd = c.head_dim, rd = c.rope_dim;
  for (int64_t t = 0; t < T; ++t) {
    float* k = &kv[static_cast<size_t>(t * hd)];
    rms_norm(k, lc.b.kv_norm.data(), k, hd, c.norm_eps);
    rope_tail(k, hd, rd, p0 + t, lc.freqs, false);
    if (lc.qat) fp8_fake_quant(k, hd - rd, 64);
  }
}

// The chunk's last `window` rows into the ring; the journal keeps each row a token overwrites.
static void write_window(LayerState& S, const float* kv, int64_t T, int64_t p0, int64_t win, int64_t hd) {
  for (int64_t t = std::max<int64_t>(0, T - win); t < T; ++t) {
    if (S.journal.on(p0 + t)) S.journal.rows.push_back({p0 + t, S.window.row_raw((p0 + t) % win)});
    S.window.write((p0 + t) % win, &kv[static_cast<size_t>(t * hd)]);
  }
}

void attention_kv_rows(const LayerCtx& lc, LayerState& S, const float* h, int64_t T, int64_t p0) {
  if (lc.b.ratio != 0) throw std::logic_error("attention_kv_rows: a compressed layer needs the whole attention pass");
  const int64_t hd = lc.cfg.head_dim;
  std::vector<float> kv(static_cast<size_t>(T * hd));
  linear(lc.b.wkv, h, T, kv.data(), lc.ops);  // the same bits as attention_layer's batched projection
  finish_kv(lc, kv.data(), T, p0);
  write_window(S, kv.data(), T, p0, lc.cfg.window, hd);
}

void attention_layer(const LayerCtx& lc, const std::vector<SeqRows>& seqs, const float* h, float* out) {
  const ModelConfig& c = lc.cfg;
  const BlockWeights& b = lc.b;
  const OpCtx& ctx = lc.ops;
  const bool qat = lc.qat, taps = lc.taps.active();
  const int64_t H = c.n_heads, hd = c.head_dim, rd = c.rope_dim, Rq = c.q_lora_rank;
  const int64_t win = c.window, ratio = b.ratio;
  const float* freqs = lc.freqs;
  // N rows in all; row r belongs to sequence seq_of[r], whose rows start at r0[seq].
  int64_t N = 0;
  std::vector<int64_t> r0(seqs.size()), seq_of;
  for (size_t i = 0; i < seqs.size(); ++i) {
    r0[i] = N;
    N += seqs[i].T;
    seq_of.insert(seq_of.end(), static_cast<size_t>(seqs[i].T), static_cast<int64_t>(i));
  }

  // ---- token-independent: every weight product of the N rows ----
  std::vector<float> qr(static_cast<size_t>(N * Rq)), q(static_cast<size_t>(N * H * hd)),
      kv(static_cast<size_t>(N * hd));
  // Every projection of h in one parallel job (linear_batch: same bits as one linear() each): the query
  // and KV latents, the compressors' kv/gate and the indexer's head weights.
  struct CompIn {
    std::vector<float> a, g;
  };
  CompIn comp_in, idx_in;
  const int64_t nI = c.idx_heads, dI = c.idx_dim;
  std::vector<float> iq, iw;
  {
    std::vector<LinearTask> tasks{{b.wq_a, h, N, qr.data(), Rq}, {b.wkv, h, N, kv.data(), hd}};
    auto comp_tasks = [&](const CompressorWeights& cw, CompIn& in) {
      const int64_t w = cw.coff * cw.d;
      in.a.resize(static_cast<size_t>(N * w));
      in.g.resize(static_cast<size_t>(N * w));
      tasks.push_back({cw.wkv, h, N, in.a.data(), w});
      tasks.push_back({cw.wgate, h, N, in.g.data(), w});
    };
    if (ratio) comp_tasks(b.comp, comp_in);
    if (ratio == 4) {
      comp_tasks(b.idx_comp, idx_in);
      iw.resize(static_cast<size_t>(N * nI));
      tasks.push_back({b.idx_proj, h, N, iw.data(), nI});
    }
    linear_batch(tasks, ctx);
  }
  for (int64_t t = 0; t < N; ++t)
    rms_norm(&qr[static_cast<size_t>(t * Rq)], b.q_norm.data(), &qr[static_cast<size_t>(t * Rq)], Rq, c.norm_eps);
  if (taps) lc.taps.add(lc.pre + "qr", qr.data(), N * Rq, Rq);  // input of wq_b and the indexer's wq_b
  if (ratio == 4) {
    iq.resize(static_cast<size_t>(N * nI * dI));
    linear_batch({{b.wq_b, qr.data(), N, q.data(), H * hd}, {b.idx_wq_b, qr.data(), N, iq.data(), nI * dI}}, ctx);
  } else {
    linear(b.wq_b, qr.data(), N, q.data(), ctx);
  }

  // ---- per sequence, in position order: RoPE, KV rows, compressed entries (indexer first, as the reference) ----
  auto run_compressor = [&](const CompressorWeights& cw, CompIn& in, int64_t R, int64_t T, int64_t p0, LayerState& S,
                            CompressorState& st, KvRows& rows, int64_t& n_rows, bool rotate, const char* tap_name) {
    const int64_t d = cw.d, w = cw.coff * d, m = cw.ratio;
    float *a = in.a.data() + R * w, *g = in.g.data() + R * w;
    std::vector<float> e(static_cast<size_t>(d));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t p = p0 + t;
      const float* ape = &cw.ape[static_cast<size_t>((p % m) * w)];
      float* gt = &g[static_cast<size_t>(t * w)];
      for (int64_t i = 0; i < w; ++i) gt[i] += ape[i];
      if ((p + 1) % m == 0 && S.journal.on(p))  // this token completes a block: keep the state it replaces
        S.journal.blocks.push_back({p, &st == &S.idx_comp, st, n_rows});
      if (!compressor_step(st, &a[static_cast<size_t>(t * w)], gt, p, e.data())) continue;
      rms_norm(e.data(), cw.norm.data(), e.data(), d, c.norm_eps);
      rope_tail(e.data(), d, rd, p + 1 - m, freqs, false);
      if (rotate) {
        hadamard(e.data(), d);
        if (qat) fp4_fake_quant(e.data(), d, 32);
      } else if (qat) {
        fp8_fake_quant(e.data(), d - rd, 64);
      }
      rows.write(n_rows++, e.data());
      if (taps) lc.taps.add(lc.pre + tap_name, e.data(), d, d);
    }
  };
  const float wscale =
      static_cast<float>(std::pow(static_cast<double>(dI), -0.5) * std::pow(static_cast<double>(nI), -0.5));
  // Each sequence writes only its own rows of q, kv, iq, iw and the compressor inputs and its own state, so a
  // batch of sequences runs them in parallel (with taps, in order: taps record in call order).
  auto per_seq = [&](size_t i) {
    LayerState& S = *seqs[i].S;
    const int64_t T = seqs[i].T, p0 = seqs[i].p0, R = r0[i];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t hh = 0; hh < H; ++hh) {
        float* qh = &q[static_cast<size_t>(((R + t) * H + hh) * hd)];
        rms_norm(qh, nullptr, qh, hd, c.norm_eps);
        rope_tail(qh, hd, rd, p0 + t, freqs, false);
      }
    finish_kv(lc, &kv[static_cast<size_t>(R * hd)], T, p0);
    if (taps) {
      lc.taps.add(lc.pre + "q", &q[static_cast<size_t>(R * H * hd)], T * H * hd, H * hd);
      lc.taps.add(lc.pre + "kv", &kv[static_cast<size_t>(R * hd)], T * hd, hd);
    }
    if (ratio == 4) {
      for (int64_t t = R; t < R + T; ++t) {
        for (int64_t hh = 0; hh < nI; ++hh) {
          float* x = &iq[static_cast<size_t>((t * nI + hh) * dI)];
          rope_tail(x, dI, rd, p0 + t - R, freqs, false);
          hadamard(x, dI);
          if (qat) fp4_fake_quant(x, dI, 32);
        }
        for (int64_t hh = 0; hh < nI; ++hh) iw[static_cast<size_t>(t * nI + hh)] *= wscale;
      }
      run_compressor(b.idx_comp, idx_in, R, T, p0, S, S.idx_comp, S.idx_kv, S.n_idx, true, "idx_kv");
    }
    // the main compressor does not read the indexer's selection: it runs before the selection below
    if (ratio) run_compressor(b.comp, comp_in, R, T, p0, S, S.comp, S.comp_kv, S.n_comp, false, "comp_kv");
  };
  for_rows(static_cast<int64_t>(seqs.size()), taps, ctx, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) per_seq(static_cast<size_t>(i));
  });

  // ---- indexer top-k per row (every row of every sequence in one parallel job) ----
  std::vector<std::vector<int64_t>> sel(static_cast<size_t>(N));
  if (ratio == 4) {
    const int64_t K = c.idx_topk;
    std::vector<float> margins(static_cast<size_t>(N), INFINITY);
    ctx.pool->parallel_for(N, 1, [&](int64_t t0, int64_t t1) {
      std::vector<float> kbuf(static_cast<size_t>(dI));
      for (int64_t t = t0; t < t1; ++t) {
        const size_t si = static_cast<size_t>(seq_of[static_cast<size_t>(t)]);
        const LayerState& S = *seqs[si].S;
        const int64_t n_vis = (seqs[si].p0 + t - r0[si] + 1) / 4;
        std::vector<float> score(static_cast<size_t>(n_vis));
        for (int64_t j = 0; j < n_vis; ++j) {
          const float* kj = S.idx_kv.f32_row(j);
          if (!kj) {
            S.idx_kv.read(j, kbuf.data());
            kj = kbuf.data();
          }
          float s = 0.f;
          for (int64_t hh = 0; hh < nI; ++hh) {
            float dq = dot_f32(&iq[static_cast<size_t>((t * nI + hh) * dI)], kj, dI);
            s += std::max(dq, 0.f) * iw[static_cast<size_t>(t * nI + hh)];
          }
          score[static_cast<size_t>(j)] = s;
        }
        std::vector<int64_t> order(static_cast<size_t>(n_vis));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) {
          return score[static_cast<size_t>(x)] > score[static_cast<size_t>(y)];
        });
        const int64_t k = std::min(K, n_vis);
        if (n_vis > K)
          margins[static_cast<size_t>(t)] = score[static_cast<size_t>(order[static_cast<size_t>(K - 1)])] -
                                            score[static_cast<size_t>(order[static_cast<size_t>(K)])];
        sel[static_cast<size_t>(t)].assign(order.begin(), order.begin() + k);
        std::sort(sel[static_cast<size_t>(t)].begin(), sel[static_cast<size_t>(t)].end());
      }
    });
    if (taps) {
      std::vector<float> ids(static_cast<size_t>(N * K), -1.f);
      for (int64_t t = 0; t < N; ++t)
        for (size_t i = 0; i < sel[static_cast<size_t>(t)].size(); ++i)
          ids[static_cast<size_t>(t * K) + i] = static_cast<float>(sel[static_cast<size_t>(t)][i]);
      lc.taps.add(lc.pre + "idx_topk", ids.data(), N * K, K);
      lc.taps.add(lc.pre + "idx_margin", margins.data(), N, 1);
    }
  }

  // ---- attention per row: window (ring rows before the sequence's chunk + its chunk rows) + compressed ----
  std::vector<float> o(static_cast<size_t>(N * H * hd));
  const float scale = static_cast<float>(std::pow(static_cast<double>(hd), -0.5));
  ctx.pool->parallel_for(N, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> keybuf;
    std::vector<const float*> keys;
    for (int64_t t = t0; t < t1; ++t) {
      const size_t si = static_cast<size_t>(seq_of[static_cast<size_t>(t)]);
      const LayerState& S = *seqs[si].S;
      const int64_t p0 = seqs[si].p0, p = p0 + t - r0[si];
      const float* kvs = &kv[static_cast<size_t>(r0[si] * hd)];  // the sequence's chunk rows
      const int64_t first = std::max<int64_t>(0, p - win + 1);
      std::vector<int64_t> comp_ids;
      if (ratio == 128)
        for (int64_t j = 0; j < (p + 1) / 128; ++j) comp_ids.push_back(j);
      else if (ratio == 4)
        comp_ids = sel[static_cast<size_t>(t)];
      const int64_t n_keys = (p - first + 1) + static_cast<int64_t>(comp_ids.size());
      keybuf.resize(static_cast<size_t>(n_keys * hd));
      keys.clear();
      int64_t r = 0;
      // f32 storage: the keys are the stored rows and this chunk's rows themselves (no copy); other
      // dtypes decode into keybuf.  Pointers are taken after keybuf has its final size.
      std::vector<const float*> direct(static_cast<size_t>(n_keys), nullptr);
      for (int64_t qp = first; qp <= p; ++qp, ++r) {
        float* dst = &keybuf[static_cast<size_t>(r * hd)];
        if (qp < p0) {
          if (!(direct[static_cast<size_t>(r)] = S.window.f32_row(qp % win))) S.window.read(qp % win, dst);
        } else if (seqs[si].kv == KvDtype::F32) {
          direct[static_cast<size_t>(r)] = &kvs[static_cast<size_t>((qp - p0) * hd)];
        } else {  // same rounding as the stored row
          KvRows tmp;
          tmp.init(1, hd, seqs[si].kv, c.nope_dim(), 64);
          tmp.write(0, &kvs[static_cast<size_t>((qp - p0) * hd)]);
          tmp.read(0, dst);
        }
      }
      for (int64_t j : comp_ids) {
        if (!(direct[static_cast<size_t>(r)] = S.comp_kv.f32_row(j)))
          S.comp_kv.read(j, &keybuf[static_cast<size_t>(r * hd)]);
        ++r;
      }
      for (int64_t i = 0; i < n_keys; ++i)
        keys.push_back(direct[static_cast<size_t>(i)] ? direct[static_cast<size_t>(i)]
                                                      : &keybuf[static_cast<size_t>(i * hd)]);
      float* ot = &o[static_cast<size_t>(t * H * hd)];
      sparse_attention(&q[static_cast<size_t>(t * H * hd)], H, hd, keys, b.sinks.data(), scale, ot);
      for (int64_t hh = 0; hh < H; ++hh) rope_tail(ot + hh * hd, hd, rd, p, freqs, true);
    }
  });
  for (size_t i = 0; i < seqs.size(); ++i)
    write_window(*seqs[i].S, &kv[static_cast<size_t>(r0[i] * hd)], seqs[i].T, seqs[i].p0, win, hd);

  // ---- token-independent: grouped low-rank output projection ----
  const int64_t G = c.o_groups, Ro = c.o_lora_rank, gs = H * hd / G;
  std::vector<float> z(static_cast<size_t>(N * G * Ro)), og(static_cast<size_t>(G * N * gs));
  std::vector<LinearTask> tasks;
  for (int64_t g = 0; g < G; ++g) {
    float* ogg = &og[static_cast<size_t>(g * N * gs)];
    for (int64_t t = 0; t < N; ++t)
      std::memcpy(&ogg[static_cast<size_t>(t * gs)], &o[static_cast<size_t>(t * H * hd + g * gs)],
                  static_cast<size_t>(gs) * 4);
    tasks.push_back({b.wo_a.slice(g * Ro, Ro), ogg, N, z.data() + g * Ro, G * Ro});
  }
  linear_batch(tasks, ctx);
  if (taps) {  // inputs of wo_a (one row per token and group) and wo_b
    lc.taps.add(lc.pre + "wo_a_in", o.data(), N * H * hd, gs);
    lc.taps.add(lc.pre + "wo_b_in", z.data(), N * G * Ro, G * Ro);
  }
  linear(b.wo_b, z.data(), N, out, ctx);
}

}  // namespace dsv4
