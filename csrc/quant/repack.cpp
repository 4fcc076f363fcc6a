// FP4 (DeepSeek/OCP pair packing) -> MXFP4 (ggml half-split packing) repack.
#include "quant/repack.h"

#include <stdexcept>
#include <string>

#include "core/parallel.h"
#include "quant/blocks.h"

namespace dsv4 {

void repack_fp4_to_mxfp4(const uint8_t* packed, const uint8_t* scale, uint8_t* out, int64_t rows, int64_t cols,
                         int threads) {
  if (cols <= 0 || cols % 32 != 0)
    throw std::invalid_argument("repack_fp4_to_mxfp4: row length " + std::to_string(cols) + " is not a multiple of 32");
  const int64_t nb = cols / 32;
  parallel_for(rows, threads, std::max<int64_t>(1, 65536 / cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* src = packed + r * (cols / 2);
      const uint8_t* sc = scale + r * nb;
      BlockMXFP4* dst = reinterpret_cast<BlockMXFP4*>(out + r * nb * static_cast<int64_t>(sizeof(BlockMXFP4)));
      for (int64_t b = 0; b < nb; ++b) {
        if (sc[b] == 0xFF)
          throw std::invalid_argument("repack_fp4_to_mxfp4: scale is NaN (E8M0 0xFF) at row " + std::to_string(r) +
                                      ", block " + std::to_string(b));
        const uint8_t* s = src + 16 * b;
        dst[b].e = sc[b];
        // source element i sits in byte i/2, nibble i&1; target byte j = elem j | elem j+16 << 4
        for (int j = 0; j < 16; ++j) {
          const int lo = (s[j / 2] >> (4 * (j & 1))) & 0xF;
          const int hi = (s[8 + j / 2] >> (4 * (j & 1))) & 0xF;
          dst[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
    }
  });
}

}  // namespace dsv4
