// Compressor state machine (DeepSeek-V4's inference/model.py): softmax-gated per-channel pooling of m tokens, m = 4
// overlapping (the previous block's first-half channels + the current block's second-half channels)
// or m = 128.  Only the pooling lives here; normalisation, RoPE and QAT of the entry are done by the
// caller (session.cpp) because they differ between the main and the indexer compressor.
#include <cmath>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void CompressorState::init(int ratio_, int d_) {
  ratio = ratio_;
  d = d_;
  coff = ratio == 4 ? 2 : 1;
  const size_t n = static_cast<size_t>(coff * ratio) * static_cast<size_t>(coff * d);
  kv.assign(n, 0.f);
  score.assign(n, -INFINITY);
}

bool compressor_step(CompressorState& st, const float* a, const float* g, int64_t pos, float* out) {
  const int m = st.ratio, d = st.d, w = st.coff * d;
  const bool overlap = m == 4;
  const int off = overlap ? m : 0;
  const int slot = off + static_cast<int>(pos % m);
  for (int c = 0; c < w; ++c) {
    st.kv[static_cast<size_t>(slot * w + c)] = a[c];
    st.score[static_cast<size_t>(slot * w + c)] = g[c];
  }
  if ((pos + 1) % m != 0) return false;
  std::vector<float> sc(static_cast<size_t>(2 * m)), vv(static_cast<size_t>(2 * m));
  for (int c = 0; c < d; ++c) {
    int n = 0;
    if (overlap) {
      for (int i = 0; i < m; ++i, ++n) {
        sc[n] = st.score[static_cast<size_t>(i * w + c)];
        vv[n] = st.kv[static_cast<size_t>(i * w + c)];
      }
      for (int i = 0; i < m; ++i, ++n) {
        sc[n] = st.score[static_cast<size_t>((m + i) * w + d + c)];
        vv[n] = st.kv[static_cast<size_t>((m + i) * w + d + c)];
      }
    } else {
      for (int i = 0; i < m; ++i, ++n) {
        sc[n] = st.score[static_cast<size_t>(i * w + c)];
        vv[n] = st.kv[static_cast<size_t>(i * w + c)];
      }
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; ++i) mx = std::max(mx, sc[i]);
    float s = 0.f;
    for (int i = 0; i < n; ++i) s += (sc[i] = std::exp(sc[i] - mx));
    float acc = 0.f;
    for (int i = 0; i < n; ++i) acc += vv[i] * (sc[i] / s);
    out[c] = acc;
  }
  // advance: the completed block becomes the "previous block" (m = 4); the current slots are emptied
  if (overlap)
    for (size_t i = 0; i < static_cast<size_t>(m * w); ++i) {
      st.kv[i] = st.kv[static_cast<size_t>(m * w) + i];
      st.score[i] = st.score[static_cast<size_t>(m * w) + i];
    }
  for (size_t i = static_cast<size_t>(off * w); i < static_cast<size_t>((off + m) * w); ++i) {
    st.kv[i] = 0.f;
    st.score[i] = -INFINITY;
  }
  return true;
}

}  // namespace dsv4
