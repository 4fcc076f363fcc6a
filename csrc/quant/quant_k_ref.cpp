// Scalar reference kernels for the 256-element super-block types: Q2_K..Q6_K, IQ4_XS, IQ2_XXS.
// Quantizers are kquant_impl.h instantiated with the scalar searches.
// Dequantizers use ggml's/gguf's operation order, so they are bit-exact with gguf.quants.
#include "quant/kernels.h"
#include "quant/iquant_impl.h"
#include "quant/kquant_impl.h"

namespace dsv4 {

using kq::ScalarSearch;

void quantize_row_q2_k_ref(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q2_k<ScalarSearch>(x, y, n, qw);
}
void quantize_row_q3_k_ref(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q3_k<ScalarSearch>(x, y, n, qw);
}
void quantize_row_q4_k_ref(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q4_k<ScalarSearch>(x, y, n, qw);
}
void quantize_row_q5_k_ref(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q5_k<ScalarSearch>(x, y, n, qw);
}
void quantize_row_q6_k_ref(const float* x, void* y, int64_t n, const float* qw) {
  kq::quantize_row_q6_k<ScalarSearch>(x, y, n, qw);
}
void quantize_row_iq4_xs_ref(const float* x, void* vy, int64_t n, const float* qw) {
  BlockIQ4_XS* y = static_cast<BlockIQ4_XS*>(vy);
  for (int64_t b = 0; b < n / QK_K; ++b)
    kq::quantize_iq4_xs_block<ScalarSearch>(x + QK_K * b, qw ? qw + QK_K * b : nullptr, &y[b]);
}

// ---------------------------------------------------------------- dequantizers
void dequantize_row_q2_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ2_K* x = static_cast<const BlockQ2_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[b].scales[is++];
          const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
        }
      }
    }
  }
}

void dequantize_row_q3_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ3_K* x = static_cast<const BlockQ3_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d_all = fp16_to_f32(x[b].d);
    const uint8_t* q = x[b].qs;
    const uint8_t* hm = x[b].hmask;
    uint8_t m = 1;
    int is = 0;
    for (int h = 0; h < QK_K; h += 128, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * static_cast<float>(kq::get_q3_scale(is++, x[b].scales));
          for (int l = 0; l < 16; ++l) {
            const int o = l + 16 * half;
            *y++ = dl * static_cast<float>(((q[o] >> shift) & 3) - ((hm[o] & m) ? 0 : 4));
          }
        }
      }
    }
  }
}

void dequantize_row_q4_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ4_K* x = static_cast<const BlockQ4_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* q = x[b].qs;
    for (int j = 0; j < 8; j += 2, q += 32) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      kq::get_scale_min_k4(j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dequantize_row_q5_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ5_K* x = static_cast<const BlockQ5_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d), min = fp16_to_f32(x[b].dmin);
    const uint8_t* ql = x[b].qs;
    const uint8_t* qh = x[b].qh;
    uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 8; j += 2, ql += 32) {
      uint8_t sc, m;
      kq::get_scale_min_k4(j, x[b].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      kq::get_scale_min_k4(j + 1, x[b].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      u1 = static_cast<uint8_t>(u1 << 2);
      u2 = static_cast<uint8_t>(u2 << 2);
    }
  }
}

void dequantize_row_q6_k_ref(const void* vx, float* y, int64_t n) {
  const BlockQ6_K* x = static_cast<const BlockQ6_K*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    const uint8_t* ql = x[b].ql;
    const uint8_t* qh = x[b].qh;
    const int8_t* sc = x[b].scales;
    for (int h = 0; h < QK_K; h += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
    }
  }
}

void dequantize_row_iq4_xs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ4_XS* x = static_cast<const BlockIQ4_XS*>(vx);
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    const uint8_t* qs = x[b].qs;
    for (int ib = 0; ib < QK_K / 32; ++ib, y += 32, qs += 16) {
      const int ls = ((x[b].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[b].scales_h >> 2 * ib) & 3) << 4);
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 16; ++j) {
        y[j] = dl * static_cast<float>(kValuesIQ4NL[qs[j] & 0xf]);
        y[j + 16] = dl * static_cast<float>(kValuesIQ4NL[qs[j] >> 4]);
      }
    }
  }
}

void dequantize_row_iq2_xxs_ref(const void* vx, float* y, int64_t n) {
  const BlockIQ2_XXS* x = static_cast<const BlockIQ2_XXS*>(vx);
  const Iq2xxsTables& t = iq2xxs_tables();
  for (int64_t b = 0; b < n / QK_K; ++b) {
    const float d = fp16_to_f32(x[b].d);
    for (int ib = 0; ib < QK_K / 32; ++ib) {
      uint32_t aux[2];
      std::memcpy(aux, x[b].qs + 4 * ib, 8);
      const uint8_t* idx = reinterpret_cast<const uint8_t*>(aux);
      const float db = d * (0.5f + static_cast<float>(aux[1] >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l, y += 8) {
        const uint64_t g = t.grid_values[idx[l]];
        const uint8_t signs = t.ksigns[(aux[1] >> (7 * l)) & 127];
        for (int j = 0; j < 8; ++j)
          y[j] = db * static_cast<float>((g >> (8 * j)) & 0xff) * ((signs >> j) & 1 ? -1.f : 1.f);
      }
    }
  }
}

void quantize_row_iq2_xxs_ref(const float* x, void* vy, int64_t n, const float* qw) {
  kq::quantize_row_iq2_xxs<ScalarSearch>(x, vy, n, qw);
}

}  // namespace dsv4
