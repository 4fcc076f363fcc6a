// IQ1_S / IQ1_M code-book construction.  The neighbour lists reproduce ggml's iq2xs_init_impl for the
// 1-bit grid exactly (all grid points within the three smallest squared distances, ordered by
// (distance, index)), because the quantizer keeps the first best candidate in that order.  Unlike ggml,
// lists are built only for the 3^8 points the quantizer can produce, not for every 2-bit pattern.
#include "quant/iq1_tables.h"

#include <mutex>

#include "quant/grid_neighbours.h"

namespace dsv4 {

namespace {

const uint16_t kIq1sPacked[kIq1sGridSize] = {
#include "quant/iq1s_grid.inc"
};

void build(Iq1sTables& t) {
  for (int k = 0; k < kIq1sGridSize; ++k) {
    uint64_t gv = 0, gl = 0;
    for (int i = 0; i < 8; ++i) {
      const int l = (kIq1sPacked[k] >> (2 * i)) & 3;
      gv |= static_cast<uint64_t>(static_cast<uint8_t>(l - 1)) << (8 * i);
      gl |= static_cast<uint64_t>(l) << (8 * i);
    }
    t.grid_values[k] = gv;
    t.grid_levels[k] = gl;
  }
  constexpr int kMapSize = 43692;  // largest packed point (all levels = 2) + 1, as ggml
  constexpr int kWant = 3;         // distance shells kept per off-grid point (ggml: nwant 3 for IQ1)
  t.map.assign(kMapSize, 0);
  std::vector<bool> on_grid(kMapSize, false);
  for (int k = 0; k < kIq1sGridSize; ++k) {
    t.map[kIq1sPacked[k]] = k;
    on_grid[kIq1sPacked[k]] = true;
  }
  int32_t d2[kIq1sGridSize];
  for (int u = 0; u < kMapSize; ++u) {
    if (on_grid[u]) continue;
    bool reachable = true;
    for (int i = 0; i < 8; ++i) reachable = reachable && ((u >> (2 * i)) & 3) != 3;
    if (!reachable) continue;
    // ggml measures distance between odd coordinates 2l+1, i.e. 4x the level distance: same order.
    for (int k = 0; k < kIq1sGridSize; ++k) {
      int s = 0;
      for (int i = 0; i < 8; ++i) {
        const int dl = static_cast<int>((t.grid_levels[k] >> (8 * i)) & 0xff) - ((u >> (2 * i)) & 3);
        s += dl * dl;
      }
      d2[k] = s;
    }
    t.map[u] = -(append_neighbours(d2, kIq1sGridSize, kWant, t.neighbours) + 1);
  }
}

}  // namespace

const Iq1sTables& iq1s_tables() {
  static Iq1sTables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    tables = new Iq1sTables();
    build(*tables);
  });
  return *tables;
}

}  // namespace dsv4
