// KvRows: row storage of the KV caches (kv_cache.h).  FP8 rows use the same scale rule as
// fp8_fake_quant, so a QAT'd row is stored without loss.
#include "runtime/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/fp_decode.h"
#include "quant/blocks.h"

namespace dsv4 {

// bf16 conversions (round to nearest even) come from quant/blocks.h.
namespace {
// e4m3fn byte of a value already on the e4m3 grid (|x| <= 448).
uint8_t e4m3_bits(float q) {
  uint8_t sign = std::signbit(q) ? 0x80 : 0;
  float a = std::fabs(q);
  if (a == 0.f) return sign;
  int e;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): binary exponent e-1
  int E = e - 1 + 7;
  if (E <= 0) return static_cast<uint8_t>(sign | static_cast<int>(a / 0.001953125f));  // subnormal, step 2^-9
  int mant = static_cast<int>((a / std::ldexp(1.0f, e - 1) - 1.0f) * 8.0f);
  return static_cast<uint8_t>(sign | (E << 3) | mant);
}
float pow2_ceil_f(float x) {
  int e;
  float m = std::frexp(x, &e);
  if (m == 0.5f) e -= 1;
  return std::ldexp(1.0f, e);
}
}  // namespace

void KvRows::init(int64_t rows, int64_t dim, KvDtype dt, int64_t n_fp8, int64_t fp8_block) {
  dt_ = dt;
  rows_ = rows;
  dim_ = dim;
  n_fp8_ = n_fp8;
  fp8_block_ = fp8_block;
  f32_.clear();
  bf16_.clear();
  u8_.clear();
  stored_ = 0;
  if (dt == KvDtype::F32)
    row_bytes_ = static_cast<size_t>(dim) * 4;
  else if (dt == KvDtype::BF16)
    row_bytes_ = static_cast<size_t>(dim) * 2;
  else
    row_bytes_ = (static_cast<size_t>(n_fp8 + n_fp8 / fp8_block + 2 * (dim - n_fp8)) + 3) / 4 * 4;
  reserve(std::min<int64_t>(rows, 128));  // the rest grows on demand: a 1M-token context is not committed up front
}

void KvRows::reserve(int64_t n) {
  n = std::min(n, rows_);
  if (n <= stored_) return;
  const int64_t want = std::min(rows_, std::max(n, 2 * stored_));
  if (dt_ == KvDtype::F32)
    f32_.resize(static_cast<size_t>(want * dim_), 0.f);
  else if (dt_ == KvDtype::BF16)
    bf16_.resize(static_cast<size_t>(want * dim_), 0);
  else
    u8_.resize(static_cast<size_t>(want) * row_bytes_, 0);
  stored_ = want;
}

void KvRows::write(int64_t r, const float* x) {
  if (r < 0 || r >= rows_)
    throw std::out_of_range("KV cache row " + std::to_string(r) + " outside capacity " + std::to_string(rows_));
  reserve(r + 1);
  if (dt_ == KvDtype::F32) {
    std::memcpy(&f32_[static_cast<size_t>(r * dim_)], x, static_cast<size_t>(dim_) * 4);
  } else if (dt_ == KvDtype::BF16) {
    for (int64_t i = 0; i < dim_; ++i) bf16_[static_cast<size_t>(r * dim_ + i)] = f32_to_bf16(x[i]);
  } else {
    uint8_t* row = &u8_[static_cast<size_t>(r) * row_bytes_];
    uint8_t* scales = row + n_fp8_;
    for (int64_t b = 0; b < n_fp8_; b += fp8_block_) {
      float amax = 0.f;
      for (int64_t i = 0; i < fp8_block_; ++i) amax = std::max(amax, std::fabs(x[b + i]));
      const float s = pow2_ceil_f(std::max(amax, 1e-4f) * (1.0f / 448.0f));  // same scale as fp8_fake_quant
      int e;
      std::frexp(s, &e);
      scales[b / fp8_block_] = static_cast<uint8_t>(e - 1 + 127);
      for (int64_t i = 0; i < fp8_block_; ++i)
        row[b + i] = e4m3_bits(e4m3_round(std::min(448.f, std::max(-448.f, x[b + i] / s))));
    }
    uint8_t* tail = scales + n_fp8_ / fp8_block_;
    for (int64_t i = n_fp8_; i < dim_; ++i) {
      uint16_t h = f32_to_bf16(x[i]);
      std::memcpy(tail + 2 * (i - n_fp8_), &h, 2);
    }
  }
}

void KvRows::read(int64_t r, float* out) const {
  if (dt_ == KvDtype::F32) {
    std::memcpy(out, &f32_[static_cast<size_t>(r * dim_)], static_cast<size_t>(dim_) * 4);
  } else if (dt_ == KvDtype::BF16) {
    for (int64_t i = 0; i < dim_; ++i) out[i] = bf16_to_f32(bf16_[static_cast<size_t>(r * dim_ + i)]);
  } else {
    const uint8_t* row = &u8_[static_cast<size_t>(r) * row_bytes_];
    const uint8_t* scales = row + n_fp8_;
    for (int64_t b = 0; b < n_fp8_; b += fp8_block_) {
      const float s = std::ldexp(1.0f, static_cast<int>(scales[b / fp8_block_]) - 127);
      for (int64_t i = 0; i < fp8_block_; ++i) out[b + i] = e4m3_to_f32(row[b + i]) * s;
    }
    const uint8_t* tail = scales + n_fp8_ / fp8_block_;
    for (int64_t i = n_fp8_; i < dim_; ++i) {
      uint16_t h;
      std::memcpy(&h, tail + 2 * (i - n_fp8_), 2);
      out[i] = bf16_to_f32(h);
    }
  }
}

std::vector<uint8_t> KvRows::raw(int64_t n) const {
  std::vector<uint8_t> out(static_cast<size_t>(n) * row_bytes());
  const void* src = dt_ == KvDtype::F32    ? static_cast<const void*>(f32_.data())
                    : dt_ == KvDtype::BF16 ? static_cast<const void*>(bf16_.data())
                                           : static_cast<const void*>(u8_.data());
  // rows past the grown storage were never written: they stay zero (the storage grows on demand)
  const size_t have = static_cast<size_t>(std::min(n, stored_)) * row_bytes();
  if (have) std::memcpy(out.data(), src, have);
  return out;
}

void KvRows::set_raw(const uint8_t* p, int64_t n) {
  if (n > rows_) throw std::runtime_error("session state holds more KV rows than this session's context allows");
  reserve(n);
  void* dst = dt_ == KvDtype::F32    ? static_cast<void*>(f32_.data())
              : dt_ == KvDtype::BF16 ? static_cast<void*>(bf16_.data())
                                     : static_cast<void*>(u8_.data());
  if (n > 0) std::memcpy(dst, p, static_cast<size_t>(n) * row_bytes());
}

std::vector<uint8_t> KvRows::row_raw(int64_t r) const {
  std::vector<uint8_t> out(row_bytes_, 0);
  if (r < 0 || r >= stored_) return out;
  const uint8_t* src = dt_ == KvDtype::F32    ? reinterpret_cast<const uint8_t*>(f32_.data())
                       : dt_ == KvDtype::BF16 ? reinterpret_cast<const uint8_t*>(bf16_.data())
                                              : u8_.data();
  std::memcpy(out.data(), src + static_cast<size_t>(r) * row_bytes_, row_bytes_);
  return out;
}

void KvRows::set_row_raw(int64_t r, const uint8_t* p) {
  if (r < 0 || r >= rows_)
    throw std::out_of_range("KV cache row " + std::to_string(r) + " outside capacity " + std::to_string(rows_));
  reserve(r + 1);
  uint8_t* dst = dt_ == KvDtype::F32    ? reinterpret_cast<uint8_t*>(f32_.data())
                 : dt_ == KvDtype::BF16 ? reinterpret_cast<uint8_t*>(bf16_.data())
                                        : u8_.data();
  std::memcpy(dst + static_cast<size_t>(r) * row_bytes_, p, row_bytes_);
}

void LayerState::journal_from(int64_t from) {
  journal.from = from;
  journal.rows.clear();
  journal.blocks.clear();
}

void LayerState::rollback(int64_t pos) {
  while (!journal.blocks.empty() && journal.blocks.back().pos >= pos) {
    Journal::Block& b = journal.blocks.back();
    (b.idx ? idx_comp : comp) = std::move(b.st);
    (b.idx ? n_idx : n_comp) = b.n_rows;
    journal.blocks.pop_back();
  }
  const int64_t win = window.rows();
  while (!journal.rows.empty() && journal.rows.back().pos >= pos) {
    window.set_row_raw(journal.rows.back().pos % win, journal.rows.back().bytes.data());
    journal.rows.pop_back();
  }
}

}  // namespace dsv4
