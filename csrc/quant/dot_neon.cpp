// NEON dots of the hot weight types (aarch64 only; quant.cpp dispatches, every other type stays on _ref):
// Q8_0, Q4_0, MXFP4 (against Q8_0 activations) and Q4_K, Q6_K (against Q8_K), bit-exact with dot_ref.cpp.
// Two copies of dot_neon_impl.inc: the baseline one (vmull_s8 + pairwise adds, any ARMv8-A) and one using the
// SDOT instruction, compiled for armv8.2-a+dotprod by function attribute only, so nothing else in the library can
// use those instructions; dispatch picks it where cpu_has_dotprod().  No multi-row or tiled kernels here.
#include <arm_neon.h>

#include <cstdint>

#include "quant/kernels.h"
#include "quant/kquant_impl.h"
#include "quant/tables.h"

#if defined(__clang__)
#define DSV4_DOTPROD_TARGET __attribute__((target("dotprod")))
#else
#define DSV4_DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

namespace dsv4 {

namespace neon_base {
// acc[k] + sum of a[4k..4k+3] * b[4k..4k+3]: 8 widening products per half, pairs, then pairs of pairs.
inline int32x4_t sdot4(int32x4_t acc, int8x16_t a, int8x16_t b) {
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_high_s8(a, b);
  return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
}
#define DSV4_NEON_FN
#include "quant/dot_neon_impl.inc"
#undef DSV4_NEON_FN
}  // namespace neon_base

namespace neon_dotprod {
DSV4_DOTPROD_TARGET inline int32x4_t sdot4(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }
#define DSV4_NEON_FN DSV4_DOTPROD_TARGET
#include "quant/dot_neon_impl.inc"
#undef DSV4_NEON_FN
}  // namespace neon_dotprod

#define DSV4_NEON_DOT(T)                                                                                        \
  float vec_dot_##T##_neon(int64_t n, const void* w, const void* a) { return neon_base::vec_dot_##T(n, w, a); } \
  float vec_dot_##T##_neon_dotprod(int64_t n, const void* w, const void* a) {                                   \
    return neon_dotprod::vec_dot_##T(n, w, a);                                                                  \
  }
DSV4_NEON_DOT(q8_0)
DSV4_NEON_DOT(q4_0)
DSV4_NEON_DOT(mxfp4)
DSV4_NEON_DOT(q4_k)
DSV4_NEON_DOT(q6_k)
#undef DSV4_NEON_DOT

}  // namespace dsv4
