// Code-book construction.  The neighbour lists reproduce ggml's iq2xs_init_impl for IQ2_XXS
// exactly (all grid points at the two smallest squared distances, ordered by (distance, index)),
// because the quantizer's choice among candidates depends on that order.
#include "quant/tables.h"

#include <mutex>

#include "quant/grid_neighbours.h"

namespace dsv4 {

const int8_t kValuesIQ4NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
const int8_t kValuesMXFP4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

namespace {

const uint16_t kIq2xxsPacked[256] = {
#include "quant/iq2xxs_grid.inc"
};

void build(Iq2xxsTables& t) {
  static const uint8_t kMap[3] = {0x08, 0x19, 0x2b};
  for (int k = 0; k < 256; ++k) {
    uint64_t gv = 0, go = 0;
    for (int i = 0; i < 8; ++i) {
      const int l = (kIq2xxsPacked[k] >> (2 * i)) & 3;
      gv |= static_cast<uint64_t>(kMap[l]) << (8 * i);
      go |= static_cast<uint64_t>(2 * l + 1) << (8 * i);
    }
    t.grid_values[k] = gv;
    t.grid_odd[k] = go;
  }
  for (int i = 0; i < 128; ++i) t.ksigns[i] = static_cast<uint8_t>(i | ((__builtin_popcount(i) & 1) << 7));

  constexpr int kMapSize = 43692;  // largest packed point (all coordinates = 2) + 1
  constexpr int kWant = 2;         // distance shells kept per off-grid point
  t.map.assign(kMapSize, -1);
  for (int k = 0; k < 256; ++k) t.map[kIq2xxsPacked[k]] = k;
  int32_t d2[256];
  for (int u = 0; u < kMapSize; ++u) {
    if (t.map[u] >= 0) continue;
    int pos[8];
    for (int i = 0; i < 8; ++i) pos[i] = 2 * ((u >> (2 * i)) & 3) + 1;
    for (int k = 0; k < 256; ++k) {
      int s = 0;
      for (int i = 0; i < 8; ++i) {
        const int g = static_cast<int>((t.grid_odd[k] >> (8 * i)) & 0xff) - pos[i];
        s += g * g;
      }
      d2[k] = s;
    }
    t.map[u] = -(append_neighbours(d2, 256, kWant, t.neighbours) + 1);
  }
  t.nb_lo = neighbour_words(t.neighbours, t.grid_odd, 0);
  t.nb_hi = neighbour_words(t.neighbours, t.grid_odd, 32);
}

}  // namespace

const Iq2xxsTables& iq2xxs_tables() {
  static Iq2xxsTables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    tables = new Iq2xxsTables();
    build(*tables);
  });
  return *tables;
}

}  // namespace dsv4
