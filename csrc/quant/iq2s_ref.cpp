// Scalar reference kernels of IQ2_XS and IQ2_S: quantize (iq2s_impl.h; also the SIMD levels' quantizer),
// dequantize in ggml's/gguf's operation order (bit-exact with gguf.quants), and the dot with Q8_K
// (exact integer sums per super-block, then one float expression, which the AVX2 dots reproduce).
#include <cstring>

#include "quant/iq2s_impl.h"
#include "quant/kernels.h"
#include "quant/tables.h"

namespace dsv4 {

void quantize_row_iq2_xs_ref(const float* x, void* y, int64_t n, const float* qw) {
  iq2s::quantize_row<iq2s::Variant::XS>(x, y, n, qw);
}
void quantize_row_iq2_s_ref(const float* x, void* y, int64_t n, const float* qw) {
  iq2s::quantize_row<iq2s::Variant::S>(x, y, n, qw);
}

void dequantize_row_iq2_xs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ2_XS* x = static_cast<const BlockIQ2_XS*>(vx);
  const Iq2GridTables& t = iq2xs_tables();
  const uint8_t* ksigns = iq2xxs_tables().ksigns;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[b].scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[b].scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint16_t q = x[b].qs[4 * ib + l];
        const uint64_t g = t.grid_values[q & 511];
        const uint8_t signs = ksigns[q >> 9];
        for (int j = 0; j < 8; ++j)
          y[j] = db[l / 2] * static_cast<float>((g >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
      }
    }
  }
}

void dequantize_row_iq2_s_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ2_S* x = static_cast<const BlockIQ2_S*>(vx);
  const Iq2GridTables& t = iq2s_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      const float db[2] = {d * (0.5f + static_cast<float>(x[b].scales[ib] & 0xf)) * 0.25f,
                           d * (0.5f + static_cast<float>(x[b].scales[ib] >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l, y += 8) {
        const int i8 = 4 * ib + l;
        const uint64_t g = t.grid_values[x[b].qs[i8] | ((x[b].qh[ib] << (8 - 2 * l)) & 0x300)];
        const uint8_t signs = x[b].qs[QK_K / 8 + i8];
        for (int j = 0; j < 8; ++j)
          y[j] = db[l / 2] * static_cast<float>((g >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
      }
    }
  }
}

namespace {

// sum over the super-block of (2*s + 1) * (exact int dot of each 16-value half), for grid point lookups
// `grid(i8)` and sign bytes `signs(i8)` of the 32 groups of 8 and 4-bit half scales `scales`.
template <class Grid, class Signs>
int block_sum(const uint8_t* scales, const int8_t* q8, Grid grid, Signs signs) {
  int sumi = 0;
  for (int ib = 0; ib < QK_K / 32; ++ib) {
    int isum[2] = {0, 0};
    for (int l = 0; l < 4; ++l, q8 += 8) {
      const uint64_t g = grid(4 * ib + l);
      const uint8_t s = signs(4 * ib + l);
      for (int j = 0; j < 8; ++j) {
        const int v = static_cast<int>((g >> (8 * j)) & 0xff);
        isum[l / 2] += ((s >> j) & 1 ? -v : v) * q8[j];
      }
    }
    sumi +=
        static_cast<int>(2 * (scales[ib] & 0xf) + 1) * isum[0] + static_cast<int>(2 * (scales[ib] >> 4) + 1) * isum[1];
  }
  return sumi;
}

}  // namespace

float vec_dot_iq2_xs_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_XS* w = static_cast<const BlockIQ2_XS*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq2GridTables& t = iq2xs_tables();
  const uint8_t* ksigns = iq2xxs_tables().ksigns;
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const uint16_t* qs = w[b].qs;
    const int sumi = block_sum(
        w[b].scales, a[b].qs, [&](int i8) { return t.grid_values[qs[i8] & 511]; },
        [&](int i8) { return ksigns[qs[i8] >> 9]; });
    sum += ((fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi)) * 0.125f;
  }
  return sum;
}

float vec_dot_iq2_s_ref(int64_t n, const void* vw, const void* va) {
  const BlockIQ2_S* w = static_cast<const BlockIQ2_S*>(vw);
  const BlockQ8_K* a = static_cast<const BlockQ8_K*>(va);
  const Iq2GridTables& t = iq2s_tables();
  float sum = 0;
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const BlockIQ2_S& x = w[b];
    const int sumi = block_sum(
        x.scales, a[b].qs,
        [&](int i8) { return t.grid_values[x.qs[i8] | ((x.qh[i8 / 4] << (8 - 2 * (i8 % 4))) & 0x300)]; },
        [&](int i8) { return x.qs[QK_K / 8 + i8]; });
    sum += ((fp16_to_f32(w[b].d) * a[b].d) * static_cast<float>(sumi)) * 0.125f;
  }
  return sum;
}

}  // namespace dsv4
