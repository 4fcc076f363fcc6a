// Decoding of the DeepSeek-V4 release number formats to float32 (DeepSeek-V4's Hugging Face release: FP8 E4M3 with E8M0 block scales, FP4 E2M1 experts):
//   E4M3 (float8_e4m3fn, FP8 weights), E8M0 (float8_e8m0fnu, block scales: 2^(b-127), 255 = NaN),
//   E2M1 (FP4 pairs packed in one byte: element 2k in the low nibble, 2k+1 in the high nibble).
// Each kernel has a scalar *_ref and an *_avx2 path; results are bit-identical (IEEE f32 multiply,
// no fast-math).  Requantisation to GGUF block formats is not here (see csrc/quant/).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/cpu_features.h"

namespace dsv4 {

// OCP E2M1 code -> value; bit 3 is the sign.
extern const float kE2M1[16];

float e4m3_to_f32(uint8_t x);
float e8m0_to_f32(uint8_t x);

// Elementwise decodes.  decode_e2m1 reads n_bytes packed bytes and writes 2*n_bytes floats.
void decode_e4m3_ref(const uint8_t* in, float* out, size_t n);
void decode_e8m0_ref(const uint8_t* in, float* out, size_t n);
void decode_e2m1_ref(const uint8_t* in, float* out, size_t n_bytes);

// Block-scaled dequantisation of one row range [r0, r1) (row-major, `cols` logical columns).
// FP8: scale[(r/128) * ceil(cols/128) + c/128].  FP4: w has cols/2 bytes per row, scale cols/32.
void dequant_fp8_rows_ref(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1);
void dequant_fp4_rows_ref(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1);

#if defined(DSV4_X86)
void decode_e4m3_avx2(const uint8_t* in, float* out, size_t n);
void decode_e8m0_avx2(const uint8_t* in, float* out, size_t n);
void decode_e2m1_avx2(const uint8_t* in, float* out, size_t n_bytes);
void dequant_fp8_rows_avx2(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1);
void dequant_fp4_rows_avx2(const uint8_t* w, const uint8_t* scale, float* out, int64_t cols, int64_t r0, int64_t r1);
#endif

// Dispatchers (Impl::Auto picks AVX2 when available).  The dequant ones split rows over `threads`.
void decode_e4m3(const uint8_t* in, float* out, size_t n, Impl impl);
void decode_e8m0(const uint8_t* in, float* out, size_t n, Impl impl);
void decode_e2m1(const uint8_t* in, float* out, size_t n_bytes, Impl impl);
void dequant_fp8(const uint8_t* w, const uint8_t* scale, float* out, int64_t rows, int64_t cols, Impl impl,
                 int threads);
void dequant_fp4(const uint8_t* w, const uint8_t* scale, float* out, int64_t rows, int64_t cols, Impl impl,
                 int threads);

}  // namespace dsv4
