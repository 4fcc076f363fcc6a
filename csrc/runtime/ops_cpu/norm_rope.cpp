// RMSNorm, partial interleaved RoPE with the YaRN ramp (DeepSeek-V4's inference/model.py), the QAT simulation helpers of
// DeepSeek-V4's inference/model.py (FP8 e4m3 / FP4 e2m1 fake-quant with power-of-two block scales) and the normalised
// Walsh-Hadamard transform (DeepSeek-V4's inference/model.py).  Arithmetic order follows the PyTorch reference in fp32;
// the per-element math (rounding, block scales, norm factor, pair rotation) is runtime/ops_shared.h, the kernels' too.
#include <algorithm>
#include <cmath>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  float ss = 0.f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = rms_scale(ss, n, eps);
  for (int64_t i = 0; i < n; ++i) y[i] = rms_apply(x[i], w, i, r);
}

std::vector<float> rope_freqs(const ModelConfig& c, int ratio) {
  const int64_t dim = c.rope_dim;
  const float base = ratio == 0 ? c.rope_theta : c.compress_rope_theta;
  std::vector<float> f(static_cast<size_t>(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i)
    f[static_cast<size_t>(i)] = 1.0f / std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
  if (ratio == 0 || c.original_ctx <= 0) return f;
  auto corr = [&](double rot) {
    return dim * std::log(static_cast<double>(c.original_ctx) / (rot * 2 * M_PI)) /
           (2 * std::log(static_cast<double>(base)));
  };
  double low = std::max(std::floor(corr(c.beta_fast)), 0.0);
  double high = std::min(std::ceil(corr(c.beta_slow)), static_cast<double>(dim - 1));
  const float lo = static_cast<float>(low), hi = static_cast<float>(low == high ? high + 0.001 : high);
  for (int64_t i = 0; i < dim / 2; ++i) {
    float ramp = std::min(1.0f, std::max(0.0f, (static_cast<float>(i) - lo) / (hi - lo)));
    float smooth = 1.0f - ramp;
    float& v = f[static_cast<size_t>(i)];
    v = v / c.rope_factor * (1.0f - smooth) + v * smooth;
  }
  return f;
}

void rope_tail(float* x, int64_t n, int64_t rd, int64_t pos, const float* freqs, bool inverse) {
  float* r = x + (n - rd);
  const float p = static_cast<float>(pos);
  for (int64_t i = 0; i < rd / 2; ++i) rope_pair(r + 2 * i, p, freqs[i], inverse);
}

void fp8_fake_quant(float* x, int64_t n, int64_t block) {
  for (int64_t b = 0; b < n; b += block) {
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float s = fp8_block_scale(amax);
    for (int64_t i = 0; i < block; ++i) x[b + i] = fp8_fake_quant_one(x[b + i], s);
  }
}

void fp4_fake_quant(float* x, int64_t n, int64_t block) {
  for (int64_t b = 0; b < n; b += block) {
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float s = fp4_block_scale(amax);
    for (int64_t i = 0; i < block; ++i) x[b + i] = fp4_fake_quant_one(x[b + i], s);
  }
}

void hadamard(float* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2)
    for (int64_t i = 0; i < n; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  const float s = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

}  // namespace dsv4
