// The IQ1_S / IQ1_M code book (2048 points of {-1, 0, +1}^8, shared by both types): the dequant grid,
// the quantizer's level grid, and the packed-point -> grid index map with neighbour lists for
// off-grid points.  The grid comes from the gguf package (gen_iq1s_grid.py); the derived tables are
// built once on first use, thread-safely.  Only the search tables live here, no kernel code.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4 {

constexpr int kIq1sGridSize = 2048;

struct Iq1sTables {
  uint64_t grid_values[kIq1sGridSize];  // dequant grid: int8 bytes in {-1, 0, +1} (ggml iq1s_grid)
  uint64_t grid_levels[kIq1sGridSize];  // quantizer grid: bytes = level in {0, 1, 2}
  // map[u] for a packed 8x2-bit point u (levels 0..2): grid index >= 0, or -(offset+1) into `neighbours`,
  // where neighbours[offset] = count and the next `count` entries are the candidate grid indices.
  // Points with a level-3 coordinate never occur and map to 0.
  std::vector<int32_t> map;
  std::vector<uint16_t> neighbours;
};

const Iq1sTables& iq1s_tables();

}  // namespace dsv4
