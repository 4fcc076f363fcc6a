// NEON f32 dot products and axpy for the runtime's exact path (aarch64 only; dispatched from linear.cpp):
// f32 . f32 and BF16 weight rows . f32 with the (exact) widening fused into the loads.  The 8 x 8-lane
// accumulators of dot_f32_ref are held as pairs of float32x4_t (acc[q] = lanes 4q..4q+3 of the 32), fused
// multiply-adds, the same reduction tree and an unfused tail, so every result equals dot_f32_ref's bits.
// No prefetching or multi-row tiles: this is the bit-exact baseline for ARM, not a tuned kernel.
#include <arm_neon.h>

#include <cstdint>

namespace dsv4 {

namespace {

// load(i): 4 values of the weight row from element i as f32; one(i): element i as f32.
template <class Load4, class Load1>
inline float dot_impl(Load4 load, Load1 one, const float* b, int64_t n) {
  float32x4_t acc[8];
  for (auto& v : acc) v = vdupq_n_f32(0.f);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int q = 0; q < 8; ++q) acc[q] = vfmaq_f32(acc[q], load(i + 4 * q), vld1q_f32(b + i + 4 * q));
  for (; i + 8 <= n; i += 8) {
    acc[0] = vfmaq_f32(acc[0], load(i), vld1q_f32(b + i));
    acc[1] = vfmaq_f32(acc[1], load(i + 4), vld1q_f32(b + i + 4));
  }
  // s[j] = (acc[j] + acc[8+j]) + (acc[16+j] + acc[24+j]): lanes 0..3 in s_lo, 4..7 in s_hi
  const float32x4_t s_lo = vaddq_f32(vaddq_f32(acc[0], acc[2]), vaddq_f32(acc[4], acc[6]));
  const float32x4_t s_hi = vaddq_f32(vaddq_f32(acc[1], acc[3]), vaddq_f32(acc[5], acc[7]));
  const float32x4_t h = vaddq_f32(s_lo, s_hi);  // h[j] = s[j] + s[4+j]
  const float h02 = vgetq_lane_f32(h, 0) + vgetq_lane_f32(h, 2);
  const float h13 = vgetq_lane_f32(h, 1) + vgetq_lane_f32(h, 3);
  float r = h02 + h13;
  for (; i < n; ++i) {  // product then sum, never fused (the core is built with -ffp-contract=off)
    const float p = one(i) * b[i];
    r += p;
  }
  return r;
}

inline float32x4_t bf16x4(const uint16_t* a) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(a), 16)); }

}  // namespace

float dot_f32_neon(const float* a, const float* b, int64_t n) {
  return dot_impl([a](int64_t i) { return vld1q_f32(a + i); }, [a](int64_t i) { return a[i]; }, b, n);
}

float dot_bf16_f32_neon(const uint16_t* a, const float* b, int64_t n) {
  return dot_impl(
      [a](int64_t i) { return bf16x4(a + i); },
      [a](int64_t i) { return vgetq_lane_f32(vreinterpretq_f32_u32(vdupq_n_u32(uint32_t{a[i]} << 16)), 0); }, b, n);
}

void axpy_f32_neon(float* y, float a, const float* x, int64_t n) {
  const float32x4_t av = vdupq_n_f32(a);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(y + i), vmulq_f32(av, vld1q_f32(x + i))));
  for (; i < n; ++i) {
    const float p = a * x[i];
    y[i] += p;
  }
}

}  // namespace dsv4
