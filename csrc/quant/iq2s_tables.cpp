// Code-book construction for IQ2_XS and IQ2_S.  The neighbour lists reproduce ggml's iq2xs_init_impl
// exactly: for every off-grid point, all grid points in the `nwant` smallest squared-distance shells
// (2 for IQ2_XS, 1 for IQ2_S), ordered by (distance, index), because the quantizer's choice among
// candidates depends on that order.  Shells are found by counting instead of ggml's full sort (same order).
#include "quant/iq2s_tables.h"

#include <mutex>

#include "quant/grid_neighbours.h"

namespace dsv4 {

namespace {

const uint16_t kIq2xsPacked[512] = {
#include "quant/iq2xs_grid.inc"
};
const uint16_t kIq2sPacked[1024] = {
#include "quant/iq2s_grid.inc"
};

void build(Iq2GridTables& t, const uint16_t* packed, int size, int nwant) {
  static const uint8_t kMap[3] = {0x08, 0x19, 0x2b};
  t.size = size;
  t.grid_values.assign(size, 0);
  t.grid_odd.assign(size, 0);
  std::vector<uint8_t> coord(static_cast<size_t>(8) * size);  // coordinate-major odd values, for the distances
  for (int k = 0; k < size; ++k) {
    uint64_t gv = 0, go = 0;
    for (int i = 0; i < 8; ++i) {
      const int l = (packed[k] >> (2 * i)) & 3;
      gv |= static_cast<uint64_t>(kMap[l]) << (8 * i);
      go |= static_cast<uint64_t>(2 * l + 1) << (8 * i);
      coord[static_cast<size_t>(i) * size + k] = static_cast<uint8_t>(2 * l + 1);
    }
    t.grid_values[k] = gv;
    t.grid_odd[k] = go;
  }
  constexpr int kMapSize = 43692;  // largest packed point (all coordinates = 2) + 1
  t.map.assign(kMapSize, -1);
  for (int k = 0; k < size; ++k) t.map[packed[k]] = k;
  std::vector<int32_t> d2(size);
  for (int u = 0; u < kMapSize; ++u) {
    if (t.map[u] >= 0) continue;
    for (int k = 0; k < size; ++k) d2[k] = 0;
    for (int i = 0; i < 8; ++i) {
      const int p = 2 * ((u >> (2 * i)) & 3) + 1;
      const uint8_t* c = coord.data() + static_cast<size_t>(i) * size;
      for (int k = 0; k < size; ++k) d2[k] += (c[k] - p) * (c[k] - p);
    }
    t.map[u] = -(append_neighbours(d2.data(), size, nwant, t.neighbours) + 1);
  }
  t.nb_lo = neighbour_words(t.neighbours, t.grid_odd.data(), 0);
  t.nb_hi = neighbour_words(t.neighbours, t.grid_odd.data(), 32);
}

}  // namespace

const Iq2GridTables& iq2xs_tables() {
  static Iq2GridTables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    tables = new Iq2GridTables();
    build(*tables, kIq2xsPacked, 512, 2);
  });
  return *tables;
}

const Iq2GridTables& iq2s_tables() {
  static Iq2GridTables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    tables = new Iq2GridTables();
    build(*tables, kIq2sPacked, 1024, 1);
  });
  return *tables;
}

}  // namespace dsv4
