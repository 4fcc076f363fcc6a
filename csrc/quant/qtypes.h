// The one QType table: ggml type ids, block geometry and names, exactly as ggml/gguf define them
// (ggml's type traits, ggml/src/ggml.c).  Mirrored in dsv4_gguf/constants.py and checked equal by a test.
// Only the types this project quantizes/dequantizes are listed; other ggml ids are rejected.
#pragma once

#include <cstdint>

namespace dsv4 {

enum class QType : int32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,  // activation format of the Q4_1/Q5_1 dot products only (no file storage, no imatrix)
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,  // activation format of the K/IQ dot products only (no file storage, no imatrix)
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  IQ1_M = 29,
  BF16 = 30,
  MXFP4 = 39,
};

struct QTypeInfo {
  QType type;
  const char* name;
  int32_t block_size;  // elements per block
  int32_t type_size;   // bytes per block
  QType vec_dot_type;  // activation format of dot_rows for this weight type
  bool needs_imatrix;  // quantize() refuses to run without importance weights (ggml: IQ2_XXS, IQ2_XS, IQ1_S)
};

// All rows of the table, in id order; n is set to the row count.
const QTypeInfo* qtype_table(int* n);
// nullptr when id is not a supported type.
const QTypeInfo* qtype_info(int32_t id);

}  // namespace dsv4
