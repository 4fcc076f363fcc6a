// IQ3_XXS and IQ3_S: code-book construction (ggml's iq3xs_init_impl: neighbour lists of every off-grid
// point, all grid points in the 2 (256-grid) or 3 (512-grid) smallest squared distances, ordered by
// (distance, index), since the quantizer's choice among candidates depends on that order) and the scalar
// reference kernels: quantize (iq3_impl.h), dequantize (ggml's dequantize_row_iq3_*), and the dot
// against Q8_K (exact integer sums per super-block; one float multiply-add per super-block, as ggml's
// generic vec_dot).  The AVX2 versions (iq3_avx2.cpp) give the same bits.
#include <mutex>
#include <vector>

#include "quant/grid_neighbours.h"
#include "quant/iq3_impl.h"
#include "quant/kernels.h"

namespace dsv4 {

namespace {

const uint16_t kIq3xxsPacked[256] = {
#include "quant/iq3xxs_grid.inc"
};
const uint16_t kIq3sPacked[512] = {
#include "quant/iq3s_grid.inc"
};

void build(Iq3Tables& t, const uint16_t* packed, int size, const uint8_t* values, int nwant) {
  t.size = size;
  t.grid_values.resize(size);
  t.grid_odd.resize(size);
  for (int k = 0; k < size; ++k) {
    uint32_t gv = 0, go = 0;
    for (int i = 0; i < 4; ++i) {
      const int l = (packed[k] >> (3 * i)) & 7;
      gv |= static_cast<uint32_t>(values[l]) << (8 * i);
      go |= static_cast<uint32_t>(2 * l + 1) << (8 * i);
    }
    t.grid_values[k] = gv;
    t.grid_odd[k] = go;
  }
  for (int i = 0; i < 128; ++i) t.ksigns[i] = static_cast<uint8_t>(i | ((__builtin_popcount(i) & 1) << 7));

  constexpr int kMapSize = 4096;  // 4 coordinates x 3 bits
  t.map.assign(kMapSize, -1);
  for (int k = 0; k < size; ++k) t.map[packed[k]] = k;
  std::vector<int32_t> d2(size);
  for (int u = 0; u < kMapSize; ++u) {
    if (t.map[u] >= 0) continue;
    int pos[4];
    for (int i = 0; i < 4; ++i) pos[i] = 2 * ((u >> (3 * i)) & 7) + 1;
    for (int k = 0; k < size; ++k) {
      int s = 0;
      for (int i = 0; i < 4; ++i) {
        const int g = static_cast<int>((t.grid_odd[k] >> (8 * i)) & 0xff) - pos[i];
        s += g * g;
      }
      d2[k] = s;
    }
    t.map[u] = -(append_neighbours(d2.data(), size, nwant, t.neighbours) + 1);
  }
  t.nb_words = neighbour_words(t.neighbours, t.grid_odd.data(), 0);
}

}  // namespace

const Iq3Tables& iq3xxs_tables() {
  static Iq3Tables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    static const uint8_t kValues[8] = {0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3e};
    tables = new Iq3Tables();
    build(*tables, kIq3xxsPacked, 256, kValues, 2);
  });
  return *tables;
}

const Iq3Tables& iq3s_tables() {
  static Iq3Tables* tables = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    static const uint8_t kValues[8] = {0x01, 0x03, 0x05, 0x07, 0x09, 0x0b, 0x0d, 0x0f};
    tables = new Iq3Tables();
    build(*tables, kIq3sPacked, 512, kValues, 3);
  });
  return *tables;
}

// ================================================================ IQ3_XXS
void quantize_row_iq3_xxs_ref(const float* x, void* vy, int64_t n, const float* qw) {
  kq::quantize_row_iq3_xxs<kq::Iq3NeighbourRef>(x, vy, n, qw);
}

void dequantize_row_iq3_xxs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ3_XXS* x = static_cast<const BlockIQ3_XXS*>(vx);
  const Iq3Tables& t = iq3xxs_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    const uint8_t* qs = x[b].qs;
    for (int ib = 0; ib < QK_K / 32; ++ib, qs += 8) {
      uint32_t aux;
      std::memcpy(&aux, x[b].qs + QK_K / 4 + 4 * ib, 4);
      const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint8_t signs = t.ksigns[(aux >> (7 * l)) & 127];
        const uint32_t g1 = t.grid_values[qs[2 * l]], g2 = t.grid_values[qs[2 * l + 1]];
        for (int j = 0; j < 4; ++j) {
          y[j] = db * static_cast<float>((g1 >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
          y[j + 4] = db * static_cast<float>((g2 >> (8 * j)) & 0xff) * ((signs >> (j + 4)) & 1 ? -1.f : 1.f);
        }
      }
    }
  }
}

float vec_dot_iq3_xxs_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ3_XXS* w = static_cast<const BlockIQ3_XXS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq3Tables& t = iq3xxs_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const int8_t* q8 = a[b].qs;
    int sumi = 0;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t aux;
      std::memcpy(&aux, w[b].qs + QK_K / 4 + 4 * ib, 4);
      const uint8_t* qs = w[b].qs + 8 * ib;
      int isum = 0;
      for (int l = 0; l < 8; ++l, q8 += 4) {
        const uint32_t g = t.grid_values[qs[l]];
        const uint8_t signs = t.ksigns[(aux >> (7 * (l / 2))) & 127] >> (4 * (l & 1));
        for (int j = 0; j < 4; ++j) {
          const int v = static_cast<int>((g >> (8 * j)) & 0xff);
          isum += ((signs >> j) & 1 ? -v : v) * q8[j];
        }
      }
      sumi += static_cast<int>(2 * (aux >> 28) + 1) * isum;
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return 0.25f * sum;
}

// ================================================================ IQ3_S
void quantize_row_iq3_s_ref(const float* x, void* vy, int64_t n, const float* qw) {
  kq::quantize_row_iq3_s<kq::Iq3NeighbourRef>(x, vy, n, qw);
}

namespace {
inline int iq3s_index(const BlockIQ3_S& x, int ib, int k) { return x.qs[8 * ib + k] | (((x.qh[ib] >> k) & 1) << 8); }
}  // namespace

void dequantize_row_iq3_s_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ3_S* x = static_cast<const BlockIQ3_S*>(vx);
  const Iq3Tables& t = iq3s_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float db = d * static_cast<float>(1 + 2 * ((x[b].scales[ib / 2] >> (4 * (ib & 1))) & 0xf));
      for (int k = 0; k < 8; ++k, y += 4) {
        const uint32_t g = t.grid_values[iq3s_index(x[b], ib, k)];
        const uint8_t signs = x[b].signs[4 * ib + k / 2] >> (4 * (k & 1));
        for (int j = 0; j < 4; ++j)
          y[j] = db * static_cast<float>((g >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
      }
    }
  }
}

float vec_dot_iq3_s_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ3_S* w = static_cast<const BlockIQ3_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq3Tables& t = iq3s_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const int8_t* q8 = a[b].qs;
    int sumi = 0;
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const int ls = 1 + 2 * ((w[b].scales[ib / 2] >> (4 * (ib & 1))) & 0xf);
      int isum = 0;
      for (int k = 0; k < 8; ++k, q8 += 4) {
        const uint32_t g = t.grid_values[iq3s_index(w[b], ib, k)];
        const uint8_t signs = w[b].signs[4 * ib + k / 2] >> (4 * (k & 1));
        for (int j = 0; j < 4; ++j) {
          const int v = static_cast<int>((g >> (8 * j)) & 0xff);
          isum += ((signs >> j) & 1 ? -v : v) * q8[j];
        }
      }
      sumi += ls * isum;
    }
    sum += (fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi);
  }
  return sum;
}

}  // namespace dsv4
