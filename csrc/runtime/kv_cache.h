// KV cache rows of one layer in their storage dtype (F32, BF16, or FP8 with bf16 rope dims, DeepSeek-V4's inference/model.py,
// §11), and LayerState: the window ring, compressed KV, indexer KV and compressor running states that a
// session keeps per layer.  Storage grows on demand: a 1M-token context is not committed up front.
// What a row means (positions, ring indices) is the attention op's business, not this file's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/ops_cpu/ops.h"

namespace dsv4 {

// FP8: the leading `n_fp8` dims of a row as e4m3 with one E8M0 scale byte per `fp8_block` (the QAT
// grid, so storage is lossless for QAT'd rows), the remaining (rope) dims as bf16, rows padded to 4
// bytes: 448 + 7 + 128 + 1 = 584 B per main entry and 128 + 4 = 132 B per indexer entry.
enum class KvDtype : int { F32 = 0, BF16 = 1, FP8 = 2 };

class KvRows {
 public:
  void init(int64_t rows, int64_t dim, KvDtype dt, int64_t n_fp8 = 0, int64_t fp8_block = 64);
  void write(int64_t r, const float* x);
  void read(int64_t r, float* out) const;
  // Row r itself when the storage is f32 (no copy), else nullptr.  Valid until the next write/reserve.
  const float* f32_row(int64_t r) const {
    return dt_ == KvDtype::F32 && r >= 0 && r < stored_ ? f32_.data() + r * dim_ : nullptr;
  }
  int64_t rows() const { return rows_; }
  int64_t dim() const { return dim_; }
  // Bytes of the full capacity (what the cache holds at the session's context length).
  size_t bytes() const { return static_cast<size_t>(rows_) * row_bytes_; }
  void reserve(int64_t n_rows);
  std::vector<uint8_t> raw(int64_t n_rows) const;
  void set_raw(const uint8_t* p, int64_t n_rows);
  // One row's stored bytes (row_bytes(); zeros for a row past the grown storage) / write them back.
  std::vector<uint8_t> row_raw(int64_t r) const;
  void set_row_raw(int64_t r, const uint8_t* p);
  size_t row_bytes() const { return row_bytes_; }

 private:
  KvDtype dt_ = KvDtype::F32;
  int64_t rows_ = 0, dim_ = 0, n_fp8_ = 0, fp8_block_ = 64, stored_ = 0;
  size_t row_bytes_ = 0;
  std::vector<uint8_t> u8_;
  std::vector<float> f32_;
  std::vector<uint16_t> bf16_;
};

// Undo journal of one layer's state, for speculative decoding: while it is on (from >= 0), a token at
// position >= from records what it changes in state that outlives its chunk before changing it: the window
// ring row it overwrites, and, when it completes a compressed block, the compressor state before the pooling
// advanced it and the entry count.  Nothing else outlives a chunk (compressor slots of positions not yet
// complete are rewritten before they are read; compressed rows past the entry count are never read), so
// undoing the records of positions >= n leaves exactly the state after positions < n: no replay.
struct Journal {
  struct Row {
    int64_t pos;
    std::vector<uint8_t> bytes;  // ring row (pos % window) before pos wrote it
  };
  struct Block {
    int64_t pos;
    bool idx;  // the indexer's compressor (else the main one)
    CompressorState st;
    int64_t n_rows;
  };
  int64_t from = -1;
  std::vector<Row> rows;
  std::vector<Block> blocks;
  bool on(int64_t pos) const { return from >= 0 && pos >= from; }
};

struct LayerState {
  KvRows window, comp_kv, idx_kv;
  int64_t n_comp = 0, n_idx = 0;
  CompressorState comp, idx_comp;
  Journal journal;
  // Start journaling at position `from` (-1: stop); drops earlier records.
  void journal_from(int64_t from);
  // Undo every record of positions >= pos (the state becomes that after positions < pos); the records of
  // earlier positions stay.  Positions before journal.from cannot be undone (caller checks).
  void rollback(int64_t pos);
};

}  // namespace dsv4
