// RMSNorm, partial interleaved RoPE with the YaRN ramp (DeepSeek-V4's inference/model.py), the QAT simulation helpers of
// DeepSeek-V4's inference/model.py (FP8 e4m3 / FP4 e2m1 fake-quant with power-of-two block scales) and the normalised
// Walsh-Hadamard transform (DeepSeek-V4's inference/model.py).  Arithmetic order follows the PyTorch reference in fp32.
#include <algorithm>
#include <cmath>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

void rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) {
  float ss = 0.f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w ? w[i] * (x[i] * r) : x[i] * r;
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
  for (int64_t i = 0; i < rd / 2; ++i) {
    const float ang = p * freqs[i];
    const float c = std::cos(ang), s = inverse ? -std::sin(ang) : std::sin(ang);
    const float a = r[2 * i], b = r[2 * i + 1];
    r[2 * i] = a * c - b * s;
    r[2 * i + 1] = a * s + b * c;
  }
}

namespace {
// 2^ceil(log2(x)) for positive normal x, exactly (the reference's frexp form).
float pow2_ceil(float x) {
  int e;
  float m = std::frexp(x, &e);
  if (m == 0.5f) e -= 1;
  return std::ldexp(1.0f, e);
}
}  // namespace

float e4m3_round(float x) {
  float a = std::fabs(x);
  if (a == 0.f) return x;
  float step;
  if (a < 0.015625f) {  // 2^-6: subnormal range, step 2^-9
    step = 0.001953125f;
  } else {
    int e;
    std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): binary exponent e-1, 3 mantissa bits
    step = std::ldexp(1.0f, e - 4);
  }
  float q = std::nearbyint(a / step) * step;
  return std::copysign(q, x);
}

float e2m1_round(float x) {
  float a = std::fabs(x), q;
  // nearest of {0, .5, 1, 1.5, 2, 3, 4, 6}; ties go to the even code (mantissa bit 0)
  if (a <= 0.25f)
    q = 0.f;
  else if (a < 0.75f)
    q = 0.5f;
  else if (a <= 1.25f)
    q = 1.f;
  else if (a < 1.75f)
    q = 1.5f;
  else if (a <= 2.5f)
    q = 2.f;
  else if (a < 3.5f)
    q = 3.f;
  else if (a <= 5.f)
    q = 4.f;
  else
    q = 6.f;
  return std::copysign(q, x);
}

void fp8_fake_quant(float* x, int64_t n, int64_t block) {
  for (int64_t b = 0; b < n; b += block) {
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float s = pow2_ceil(std::max(amax, 1e-4f) * (1.0f / 448.0f));
    for (int64_t i = 0; i < block; ++i) {
      float v = std::min(448.f, std::max(-448.f, x[b + i] / s));
      x[b + i] = e4m3_round(v) * s;
    }
  }
}

void fp4_fake_quant(float* x, int64_t n, int64_t block) {
  const float floor_amax = 6.0f * std::ldexp(1.0f, -126);
  for (int64_t b = 0; b < n; b += block) {
    float amax = 0.f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b + i]));
    const float s = pow2_ceil(std::max(amax, floor_amax) * (1.0f / 6.0f));
    for (int64_t i = 0; i < block; ++i) {
      float v = std::min(6.f, std::max(-6.f, x[b + i] / s));
      x[b + i] = e2m1_round(v) * s;
    }
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
