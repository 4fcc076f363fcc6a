// One softmax over window + compressed keys with a per-head sink in the denominator (spec §5.6).
// Keys are the shared latent K = V rows; the running max is over keys only (as the official kernel).
#include <cmath>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void sparse_attention(const float* q, int64_t H, int64_t hd, const std::vector<const float*>& keys, const float* sinks,
                      float scale, float* out) {
  const size_t n = keys.size();
  std::vector<float> z(n);
  for (int64_t h = 0; h < H; ++h) {
    const float* qh = q + h * hd;
    float mx = -INFINITY;
    for (size_t e = 0; e < n; ++e) {
      z[e] = dot_f32(qh, keys[e], hd) * scale;
      mx = std::max(mx, z[e]);
    }
    float den = 0.f;
    for (size_t e = 0; e < n; ++e) den += (z[e] = std::exp(z[e] - mx));
    den += std::exp(sinks[h] - mx);
    float* oh = out + h * hd;
    for (int64_t d = 0; d < hd; ++d) oh[d] = 0.f;
    for (size_t e = 0; e < n; ++e) {
      const float p = z[e];
      const float* k = keys[e];
      for (int64_t d = 0; d < hd; ++d) oh[d] += p * k[d];
    }
    for (int64_t d = 0; d < hd; ++d) oh[d] /= den;
  }
}

}  // namespace dsv4
