// Code books shared by the quant kernels: the IQ4_NL non-linear values, the doubled E2M1 values of
// MXFP4, and the IQ2_XXS lattice (grid, grid->index map, neighbour lists for off-grid points).
// The IQ2_XXS grid comes from the gguf package (see gen_iq2xxs_grid.py); the derived tables are
// built once on first use, thread-safely.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4 {

extern const int8_t kValuesIQ4NL[16];
extern const int8_t kValuesMXFP4[16];

struct Iq2xxsTables {
  uint64_t grid_values[256];  // dequant grid: bytes in {0x08, 0x19, 0x2b} (ggml iq2xxs_grid)
  uint64_t grid_odd[256];     // quantizer grid: bytes 2*l+1 in {1, 3, 5}
  uint8_t ksigns[128];        // 7 sign bits + an 8th making the parity even
  // map[u] for a packed 8x2-bit point u: grid index >= 0, or -(offset+1) into `neighbours`, where
  // neighbours[offset] = count and the next `count` entries are the candidate grid indices.
  std::vector<int32_t> map;
  std::vector<uint16_t> neighbours;
  // grid_odd bytes 0-3 and 4-7 of each candidate at its offset in `neighbours` (neighbour_words)
  std::vector<uint32_t> nb_lo, nb_hi;
};

const Iq2xxsTables& iq2xxs_tables();

}  // namespace dsv4
