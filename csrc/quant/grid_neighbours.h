// The neighbour lists of ggml's grid i-quant code books (iq2xs_init_impl for IQ2_XXS / IQ2_XS / IQ2_S and
// IQ1_S / IQ1_M, iq3xs_init_impl for IQ3_XXS / IQ3_S): for a point off the grid, every grid point in the
// `nwant` smallest squared-distance shells, ordered by (distance, index).  The quantizers' choice among
// candidates depends on that order, so each table builder (tables.cpp, iq1_tables.cpp, iq2s_tables.cpp,
// iq3_ref.cpp) appends its lists with this one function.
#pragma once

#include <cstdint>
#include <vector>

namespace dsv4 {

// Appends [n, k_1, ..., k_n] to `out` (the grid indices k whose d2[k], k < size, is among the `nwant`
// smallest distinct values, shell by shell, ascending index within a shell) and returns the offset of n.
inline int append_neighbours(const int32_t* d2, int size, int nwant, std::vector<uint16_t>& out) {
  const int offset = static_cast<int>(out.size());
  out.push_back(0);
  int lo = -1, n = 0;  // the previous shell's distance
  for (int shell = 0; shell < nwant; ++shell) {
    int next = INT32_MAX;
    for (int k = 0; k < size; ++k)
      if (d2[k] > lo && d2[k] < next) next = d2[k];
    if (next == INT32_MAX) break;
    for (int k = 0; k < size; ++k)
      if (d2[k] == next) {
        out.push_back(static_cast<uint16_t>(k));
        ++n;
      }
    lo = next;
  }
  out[static_cast<size_t>(offset)] = static_cast<uint16_t>(n);
  return offset;
}

// The grid word of every candidate, at the candidate's own offset in the neighbour lists (the count slots
// hold 0), plus 8 spare words so an 8-wide load at a list's end stays in bounds: the AVX2 scans load 8
// candidates' coordinates with one contiguous load instead of one gather per coordinate.
template <class G>
std::vector<uint32_t> neighbour_words(const std::vector<uint16_t>& nbrs, const G* grid, int shift) {
  std::vector<uint32_t> w(nbrs.size() + 8, 0);
  for (size_t o = 0; o < nbrs.size(); o += 1 + nbrs[o])
    for (size_t j = 1; j <= nbrs[o]; ++j) w[o + j] = static_cast<uint32_t>(grid[nbrs[o + j]] >> shift);
  return w;
}

}  // namespace dsv4
