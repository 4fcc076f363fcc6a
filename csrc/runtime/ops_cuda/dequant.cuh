// In-kernel dequantization of ggml weight blocks for the CUDA GEMV: 8 consecutive elements of one block
// at a time, as __host__ __device__ functions so that the host build (nvcc, no GPU) can check them
// bit-exactly against the CPU kernels (csrc/quant).  Supported: F32, F16, BF16, Q8_0, Q4_K, Q6_K, MXFP4
// (what the MXFP4_MOE and Q4_K_M recipes write).  Products are rounded separately (__fmul_rn) where the
// CPU reference is compiled without FMA contraction, so decoded values are bit-identical to it.
#pragma once

#include <cstdint>

#include "runtime/ops_shared.h"  // DSV4_HD

namespace dsv4::cudaops {

// ggml type ids (mirrors quant/qtypes.h QType; checked equal by a static_assert in linear.cu).
enum GType : int { kF32 = 0, kF16 = 1, kQ8_0 = 8, kQ4_K = 12, kQ6_K = 14, kBF16 = 30, kMXFP4 = 39 };

DSV4_HD float bits_to_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
#endif
}

DSV4_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

DSV4_HD float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// IEEE half -> float, exact for every code (as blocks.h fp16_to_f32).
DSV4_HD float half_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    const float v = static_cast<float>(man) * bits_to_f32(0x33800000u);  // man * 2^-24, exact
    return sign ? -v : v;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

DSV4_HD float bf16_to_f32v(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

DSV4_HD uint16_t ld_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Block geometry: elements and bytes per block.  The float types are handled as 32-element "blocks".
struct BlockGeom {
  int elems, bytes;
};
DSV4_HD BlockGeom block_geom(int t) {
  switch (t) {
    case kF32:
      return {32, 128};
    case kF16:
      return {32, 64};
    case kBF16:
      return {32, 64};
    case kQ8_0:
      return {32, 34};
    case kMXFP4:
      return {32, 17};
    case kQ4_K:
      return {256, 144};
    case kQ6_K:
      return {256, 210};
    default:
      return {0, 0};
  }
}

// Elements j .. j+7 (j a multiple of 8, inside the block) of the block at `b`.
template <int T>
DSV4_HD void dequant8(const uint8_t* b, int j, float* v);

// F32: 32 x f32 little-endian.
template <>
DSV4_HD void dequant8<kF32>(const uint8_t* b, int j, float* v) {
  for (int i = 0; i < 8; ++i) {
    const uint8_t* p = b + 4 * (j + i);
    v[i] = bits_to_f32(static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                       (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24));
  }
}
// F16: 32 x IEEE half.
template <>
DSV4_HD void dequant8<kF16>(const uint8_t* b, int j, float* v) {
  for (int i = 0; i < 8; ++i) v[i] = half_to_f32(ld_u16(b + 2 * (j + i)));
}
// BF16: 32 x bfloat16 (the high half of an f32).
template <>
DSV4_HD void dequant8<kBF16>(const uint8_t* b, int j, float* v) {
  for (int i = 0; i < 8; ++i) v[i] = bf16_to_f32v(ld_u16(b + 2 * (j + i)));
}
// Q8_0 (34 B / 32): [0:2] fp16 d | [2:34] int8 qs[32];  x = qs[j] * d
template <>
DSV4_HD void dequant8<kQ8_0>(const uint8_t* b, int j, float* v) {
  const float d = half_to_f32(ld_u16(b));
  for (int i = 0; i < 8; ++i) v[i] = mul_rn(static_cast<float>(static_cast<int8_t>(b[2 + j + i])), d);
}
// MXFP4 (17 B / 32): [0] E8M0 e | [1:17] qs[16]: byte i = code(x[i]) | code(x[i+16]) << 4;
// x = kvalues[code] * 2^(e-128) (kvalues are doubled E2M1 values)
template <>
DSV4_HD void dequant8<kMXFP4>(const uint8_t* b, int j, float* v) {
  const uint8_t e = b[0];
  const float d = bits_to_f32(e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23));
  const int shift = j >= 16 ? 4 : 0;
  const int base = j & 15;
  for (int i = 0; i < 8; ++i) {
    const int code = (b[1 + base + i] >> shift) & 0xF;
    // kValuesMXFP4 = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
    const int m = code & 7;
    const int mag = m < 5 ? m : (m == 5 ? 6 : (m == 6 ? 8 : 12));
    v[i] = mul_rn(d, static_cast<float>(code & 8 ? -mag : mag));
  }
}
// Q4_K (144 B / 256): [0:2] fp16 d | [2:4] fp16 dmin | [4:16] 8 (scale, min) 6-bit pairs
// (get_scale_min_k4) | [16:144] qs: per 64-chunk c, byte 32c+l = q[64c+l] | q[64c+32+l] << 4;
// x = (d*sc)*q - (dmin*m)
template <>
DSV4_HD void dequant8<kQ4_K>(const uint8_t* b, int j, float* v) {
  const float d = half_to_f32(ld_u16(b)), dmin = half_to_f32(ld_u16(b + 2));
  const uint8_t* sc = b + 4;
  const int sub = j / 32;  // 32-element sub-block: scale index
  uint8_t s, m;
  if (sub < 4) {
    s = sc[sub] & 63;
    m = sc[sub + 4] & 63;
  } else {
    s = static_cast<uint8_t>((sc[sub + 4] & 0xF) | ((sc[sub - 4] >> 6) << 4));
    m = static_cast<uint8_t>((sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4));
  }
  const float d1 = mul_rn(d, static_cast<float>(s)), m1 = mul_rn(dmin, static_cast<float>(m));
  const uint8_t* q = b + 16 + 32 * (sub / 2) + (j % 32);
  const int shift = (sub & 1) ? 4 : 0;
  for (int i = 0; i < 8; ++i) v[i] = sub_rn(mul_rn(d1, static_cast<float>((q[i] >> shift) & 0xF)), m1);
}
// Q6_K (210 B / 256): [0:128] ql | [128:192] qh | [192:208] int8 scales[16] | [208:210] fp16 d.
// Element e: half h = e/128, r = e%128, quarter k = r/32, l = r%32: low 4 bits = nibble (k>=2: high)
// of ql[64h + l + 32*(k&1)], high 2 bits = (qh[32h + l] >> 2k) & 3; x = d * sc[8h + l/16 + 2k] * (q - 32)
template <>
DSV4_HD void dequant8<kQ6_K>(const uint8_t* b, int j, float* v) {
  const float d = half_to_f32(ld_u16(b + 208));
  const int h = j / 128, r = j % 128, k = r / 32, l0 = r % 32;
  const uint8_t* ql = b + 64 * h + 32 * (k & 1);
  const uint8_t* qh = b + 128 + 32 * h;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192) + 8 * h + 2 * k;
  const int lshift = k >= 2 ? 4 : 0;
  for (int i = 0; i < 8; ++i) {
    const int l = l0 + i;
    const int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
    v[i] = mul_rn(mul_rn(d, static_cast<float>(sc[l / 16])), static_cast<float>(q));
  }
}

// ---- the GEMV's per-lane work (linear.cu), here so that the host can execute it too ----
template <int T>
struct GemvGeom {
  static constexpr int elems = T == kQ4_K || T == kQ6_K ? 256 : 32;
  static constexpr int bytes = T == kF32                 ? 128
                               : T == kF16 || T == kBF16 ? 64
                               : T == kQ8_0              ? 34
                               : T == kMXFP4             ? 17
                               : T == kQ4_K              ? 144
                                                         : 210;
  static constexpr int sub = elems == 32 ? 32 : 8;  // blocks one pass of the 32 lanes decodes
  // sub-chunks staged per load phase: ~2 KB per warp in flight (latency x bandwidth needs ~25 KB per SM)
  static constexpr int stages = T == kMXFP4 ? 4 : T == kQ8_0 || T == kQ4_K ? 2 : 1;
  static constexpr int chunk = sub * stages;  // blocks staged per warp pass (plan.cpp agrees)
  static constexpr int lanes_per_block = 32 / sub;
  static constexpr int lane_elems = elems / lanes_per_block;  // per sub-chunk
};

DSV4_HD void load8(const float* p, float* v) {
#ifdef __CUDA_ARCH__
  const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p + 4));
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
#else
  for (int i = 0; i < 8; ++i) v[i] = p[i];
#endif
}

// Lane `lane`'s partial dots over one staged chunk: `sm` holds the chunk's `nb` blocks (block c0 of the
// row onwards), x the activations [n_vec][cols]; adds into acc[0..n_vec).
template <int T>
DSV4_HD void gemv_lane(const uint8_t* sm, int lane, int nb, int64_t c0, const float* x, int64_t cols, int n_vec,
                       float* acc) {
  using G = GemvGeom<T>;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int st = 0; st < G::stages; ++st) {
    const int lb = st * G::sub + lane / G::lanes_per_block;
    if (lb >= nb) continue;
    const int e0 = (lane % G::lanes_per_block) * G::lane_elems;
    const float* xb = x + (c0 + lb) * G::elems + e0;
#ifdef __CUDA_ARCH__
#pragma unroll 2
#endif
    for (int j = 0; j < G::lane_elems; j += 8) {
      float v[8];
      dequant8<T>(sm + lb * G::bytes, e0 + j, v);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (int t = 0; t < 8; ++t) {
        if (t < n_vec) {
          float a[8];
          load8(xb + t * cols + j, a);
          float s = acc[t];
          for (int i = 0; i < 8; ++i) s = fmaf(v[i], a[i], s);
          acc[t] = s;
        }
      }
    }
  }
}

}  // namespace dsv4::cudaops
