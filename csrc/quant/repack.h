// Lossless repack of DeepSeek FP4 weights (E2M1 pairs: element 2k in the low nibble, E8M0 scale per
// 32) into ggml MXFP4 blocks (element j low / j+16 high, same scale byte).  Pure bit movement: no
// arithmetic on values, so dequant(MXFP4) == dequant(FP4) exactly.
#pragma once

#include <cstdint>

namespace dsv4 {

// packed: [rows, cols/2] bytes, scale: [rows, cols/32] E8M0 bytes -> out: [rows, cols/32 * 17] bytes.
// Throws std::invalid_argument on a NaN scale (0xFF), naming row and block.
void repack_fp4_to_mxfp4(const uint8_t* packed, const uint8_t* scale, uint8_t* out, int64_t rows, int64_t cols,
                         int threads);

}  // namespace dsv4
