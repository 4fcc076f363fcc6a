// ggml-compatible block structs (byte layouts as in ggml's ggml-common.h, sizes asserted) and the
// scalar rounding/conversion primitives every quant kernel shares.  These primitives fix the exact
// rounding (fp16 round-to-nearest-even, nearest_int = round-half-even via the 1.5*2^23 trick,
// roundf = half away from zero) so that our bytes match ggml's where the algorithm is the same.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace dsv4 {

constexpr int QK_K = 256;
constexpr int QK8_0 = 32;
constexpr int QK4_0 = 32;
constexpr int QK_MXFP4 = 32;

// Q8_0 (34 B / 32): [0:2] fp16 d | [2:34] int8 qs[32];  x = d * qs[j]
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block is 34 bytes");

// Q4_0 (18 B / 32): [0:2] fp16 d | [2:18] qs[16]: byte j = q[j] | q[j+16] << 4;  x = d * (q - 8)
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block is 18 bytes");

// Q4_1 (20 B / 32): [0:2] fp16 d | [2:4] fp16 m | [4:20] qs[16]: byte j = q[j] | q[j+16] << 4;  x = d * q + m
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block is 20 bytes");

// Q5_0 (22 B / 32): [0:2] fp16 d | [2:6] qh (bit j = 5th bit of value j, little-endian u32) |
// [6:22] qs[16] low nibbles as Q4_0;  x = d * (q - 16)
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block is 22 bytes");

// Q5_1 (24 B / 32): [0:2] fp16 d | [2:4] fp16 m | [4:8] qh as Q5_0 | [8:24] qs[16];  x = d * q + m
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block is 24 bytes");

// Q8_1 (36 B / 32, activations of Q4_1/Q5_1 only): [0:2] fp16 d | [2:4] fp16 s = d * sum(qs) |
// [4:36] int8 qs[32];  x = d * qs[j]  (s folds the weight's min m into the dot product)
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_1) == 36, "Q8_1 block is 36 bytes");

// IQ4_NL (18 B / 32): [0:2] fp16 d | [2:18] qs[16]: byte j = idx(v j) | idx(v j+16) << 4;
// x = d * kvalues_iq4nl[idx]
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIQ4_NL) == 18, "IQ4_NL block is 18 bytes");

// MXFP4 (17 B / 32): [0] E8M0 exponent e | [1:17] qs[16]: byte j = code(x[j]) | code(x[j+16]) << 4;
// x = kvalues_mxfp4[code] * 2^(e-128)  (kvalues are doubled E2M1 values, hence the -128)
struct BlockMXFP4 {
  uint8_t e;
  uint8_t qs[16];
};
static_assert(sizeof(BlockMXFP4) == 17, "MXFP4 block is 17 bytes");

// Q2_K (84 B / 256): [0:16] scales (lo nibble = 4-bit scale, hi = 4-bit min, per 16) |
// [16:80] qs[64] 2-bit codes (per 128-half: byte l holds values l, l+32, l+64, l+96) |
// [80:82] fp16 d | [82:84] fp16 dmin;  x = d*sc*q - dmin*m
struct BlockQ2_K {
  uint8_t scales[16];
  uint8_t qs[64];
  uint16_t d;
  uint16_t dmin;
};
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block is 84 bytes");

// Q3_K (110 B / 256): [0:32] hmask (bit m of byte l = high bit of value 32m + l) | [32:96] qs[64]
// 2-bit low parts (as Q2_K) | [96:108] 16 6-bit signed scales (+32) packed: lo nibbles in bytes
// 0-7 (j<8: low nibble of byte j, else high nibble of byte j-8), 2-bit highs in bytes 8-11 at
// shift 2*(j/4) of byte 8 + j%4 | [108:110] fp16 d;  x = d*(sc-32)*(q - (hbit ? 0 : 4))
struct BlockQ3_K {
  uint8_t hmask[32];
  uint8_t qs[64];
  uint8_t scales[12];
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block is 110 bytes");

// Q4_K (144 B / 256): [0:2] fp16 d | [2:4] fp16 dmin | [4:16] 8 (scale, min) 6-bit pairs
// (get_scale_min_k4 packing) | [16:144] qs[128]: per 64-chunk c, byte 32c+l = q[64c+l] | q[64c+32+l]<<4
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block is 144 bytes");

// Q5_K (176 B / 256): as Q4_K plus [16:48] qh[32]: bit 2c of qh[l] = 5th bit of value 64c+l,
// bit 2c+1 = of value 64c+32+l; qs follows at [48:176]
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block is 176 bytes");

// Q6_K (210 B / 256): [0:128] ql (per 128-half h: ql[64h+l] = low4(v l) | low4(v l+64)<<4,
// ql[64h+32+l] = low4(v l+32) | low4(v l+96)<<4) | [128:192] qh (per half: 2-bit highs of
// values l, l+32, l+64, l+96 at shifts 0,2,4,6) | [192:208] int8 scales[16] | [208:210] fp16 d;
// x = d * sc * (q - 32)
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block is 210 bytes");

// Q8_K (292 B / 256, activations only): [0:4] f32 d | [4:260] int8 qs[256] | [260:292] int16
// bsums[16] (sum of each 16 qs, used to fold the K-quant mins into the dot product)
struct BlockQ8_K {
  float d;
  int8_t qs[256];
  int16_t bsums[16];
};
static_assert(sizeof(BlockQ8_K) == 292, "Q8_K block is 292 bytes");

// IQ4_XS (136 B / 256): [0:2] fp16 d | [2:4] u16 scales_h (2 high bits of the 6-bit scale of
// sub-block ib at shift 2*ib) | [4:8] scales_l (low nibbles, ib even low / odd high) |
// [8:136] qs[128] (per 32-sub-block: byte j = idx(v j) | idx(v j+16)<<4);
// x = d * (ls - 32) * kvalues_iq4nl[idx]
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[4];
  uint8_t qs[128];
};
static_assert(sizeof(BlockIQ4_XS) == 136, "IQ4_XS block is 136 bytes");

// IQ2_XXS (66 B / 256): [0:2] fp16 d | [2:66] 8 x (u32 a, u32 b) per 32-sub-block: the 4 bytes of
// a are iq2xxs_grid indices of the 4 groups of 8; b holds 4 x 7-bit ksigns indices (bits 7k..7k+6)
// and the 4-bit sub-block scale in bits 28-31;  x = d * (0.5 + s) * 0.25 * grid * sign
struct BlockIQ2_XXS {
  uint16_t d;
  uint16_t qs[32];
};
static_assert(sizeof(BlockIQ2_XXS) == 66, "IQ2_XXS block is 66 bytes");

// IQ1_S (50 B / 256): [0:2] fp16 d | [2:34] qs[32]: low 8 bits of the iq1s_grid index of each group of 8 |
// [34:50] u16 qh[8], one per 32-sub-block: bits 3l..3l+2 = high 3 bits of group l's index, bits 12-14 the
// 3-bit scale s, bit 15 the sign of the shift;  x = d * (2s + 1) * (grid + (bit 15 ? -0.125 : 0.125))
struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
};
static_assert(sizeof(BlockIQ1_S) == 50, "IQ1_S block is 50 bytes");

// IQ1_M (56 B / 256): [0:32] qs[32]: low 8 bits of the iq1s_grid index of each group of 8 | [32:48] qh[16],
// one per 16-value half: bits 0-2 / 4-6 = high 3 bits of its two groups' indices, bits 3 / 7 = their shift
// signs | [48:56] scales as u16 sc[4]: bits 0-11 = four 3-bit half scales s, bits 12-15 = one nibble of
// the fp16 super-block scale d (sc[0] lowest);  x = d * (2s + 1) * (grid + (sign ? -0.125 : 0.125))
struct BlockIQ1_M {
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];
};
static_assert(sizeof(BlockIQ1_M) == 56, "IQ1_M block is 56 bytes");

// IQ2_XS (74 B / 256): [0:2] fp16 d | [2:66] u16 qs[32], one per group of 8: bits 0-8 iq2xs_grid index,
// bits 9-15 ksigns index | [66:74] scales[8]: 4-bit scale of 16-value half h of sub-block ib at nibble h
// of byte ib;  x = d * (0.5 + s) * 0.25 * grid * sign
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};
static_assert(sizeof(BlockIQ2_XS) == 74, "IQ2_XS block is 74 bytes");

// IQ2_S (82 B / 256): [0:2] fp16 d | [2:34] low 8 bits of the 32 iq2s_grid indices | [34:66] 32 sign
// bytes (bit j = sign of value j of the group) | [66:74] qh[8]: bits 8-9 of index 4*ib+l at shift 2l of
// byte ib | [74:82] scales[8] as IQ2_XS;  x = d * (0.5 + s) * 0.25 * grid * sign
struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t scales[8];
};
static_assert(sizeof(BlockIQ2_S) == 82, "IQ2_S block is 82 bytes");

// IQ3_XXS (98 B / 256): [0:2] fp16 d | [2:66] qs[64]: iq3xxs_grid indices, 8 per 32-sub-block (one per
// group of 4) | [66:98] 8 x u32: 4 x 7-bit ksigns indices (bits 7k..7k+6, groups of 8) and the 4-bit
// sub-block scale s in bits 28-31;  x = d * (0.5 + s) * 0.5 * grid * sign
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[96];
};
static_assert(sizeof(BlockIQ3_XXS) == 98, "IQ3_XXS block is 98 bytes");

// IQ3_S (110 B / 256): [0:2] fp16 d | [2:66] qs[64]: low 8 bits of the 9-bit iq3s_grid index of each
// group of 4 | [66:74] qh[8]: bit k of qh[ib] = bit 8 of index k of sub-block ib | [74:106] signs[32]:
// one bit per value | [106:110] scales[4]: 4-bit s, sub-block 2j low / 2j+1 high;  x = d * (1 + 2s) * grid * sign
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};
static_assert(sizeof(BlockIQ3_S) == 110, "IQ3_S block is 110 bytes");

// ---------------------------------------------------------------------------------------------
// Internal linkage on purpose: these helpers are compiled into both the reference and the -mavx2
// translation units, and an ODR-merged copy could hand AVX2 code to the reference path.
namespace {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half -> float (exact for every code, including subnormals, inf and NaN).
inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0) return bits_f32(sign);
    // subnormal: value = man * 2^-24, exactly representable
    float v = static_cast<float>(man) * bits_f32(0x33800000u);
    return (sign ? -v : v);
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
  return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

// float -> IEEE half, round to nearest even (same results as F16C _cvtss_sh and ggml's scalar path).
inline uint16_t f32_to_fp16(float f) {
  const uint32_t x = f32_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (ax < 0x38800000u) {
    // result is subnormal (or zero): quantum 2^-24; adding 0.5 makes the FPU round-to-even for us
    float v = bits_f32(ax) + 0.5f;
    return static_cast<uint16_t>(sign | (f32_bits(v) - 0x3f000000u));
  }
  const uint32_t odd = (ax >> 13) & 1u;
  ax += 0xfffu + odd;  // round mantissa to 10 bits, ties to even
  return static_cast<uint16_t>(sign | ((ax - (112u << 23)) >> 13));
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}
inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

// Round half to even for |f| <= 2^22 (ggml's nearest_int; relies on the default rounding mode).
inline int nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// 2^(e-128) = half the E8M0 scale (ggml's GGML_E8M0_TO_FP32_HALF); e < 2 gives subnormals.
inline float e8m0_to_f32_half(uint8_t e) {
  uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return bits_f32(bits);
}

constexpr float kGroupMaxEps = 1e-15f;

}  // namespace

}  // namespace dsv4
