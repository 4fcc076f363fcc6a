// Code books of IQ2_XS (512-point) and IQ2_S (1024-point) lattices: dequant grid, quantizer grid,
// grid->index map and neighbour lists for off-grid points, built once on first use, thread-safely.
// The grids come from the gguf package (gen_iq2s_grids.py); the sign table is IQ2_XXS's (tables.h).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4 {

struct Iq2GridTables {
  int size = 0;                       // grid points: 512 (IQ2_XS) or 1024 (IQ2_S)
  std::vector<uint64_t> grid_values;  // dequant grid: bytes in {0x08, 0x19, 0x2b} (ggml iq2xs_grid / iq2s_grid)
  std::vector<uint64_t> grid_odd;     // quantizer grid: bytes 2*l+1 in {1, 3, 5}
  // map[u] for a packed 8x2-bit point u: grid index >= 0, or -(offset+1) into `neighbours`, where
  // neighbours[offset] = count and the next `count` entries are the candidate grid indices.
  std::vector<int32_t> map;
  std::vector<uint16_t> neighbours;
  // grid_odd bytes 0-3 and 4-7 of each candidate at its offset in `neighbours` (neighbour_words)
  std::vector<uint32_t> nb_lo, nb_hi;
};

const Iq2GridTables& iq2xs_tables();
const Iq2GridTables& iq2s_tables();

}  // namespace dsv4
