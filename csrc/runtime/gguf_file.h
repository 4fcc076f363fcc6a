// Memory-mapped GGUF v2/v3 reader for the runtime: header, metadata, tensor infos, zero-copy data views.
// Split files (`*-00001-of-0000N.gguf`, keys split.count/split.no) are opened together; tensors keep
// pointers into whichever shard holds them.  Validation is strict and every error names the file, the
// key or tensor, the expected and actual value.  It does not interpret model hyper-parameters (model.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dsv4 {

// Thrown for malformed, truncated or incompatible files (surfaced as ValueError in Python).
struct GgufError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Limits on what a header may claim, far above any real model (DeepSeek-V4 Pro: ~2k tensors, ~60 keys,
// a 129k-entry vocabulary, a few MB of metadata).  A crafted file is rejected before any allocation it
// asks for.  Mirrored in dsv4_gguf/gguf_io.py (a test checks the values are equal).
constexpr uint64_t kGgufMaxTensors = 1ull << 20;        // tensor infos per file
constexpr uint64_t kGgufMaxKeys = 1ull << 16;           // metadata pairs per file
constexpr uint64_t kGgufMaxString = 1ull << 26;         // bytes of one string (key, value, array entry)
constexpr uint64_t kGgufMaxArray = 1ull << 22;          // entries of one metadata array
constexpr uint64_t kGgufMaxMetadataBytes = 1ull << 28;  // bytes from the file start to the end of the metadata
constexpr size_t kGgufMaxTensorName = 63;               // ggml's GGML_MAX_NAME - 1
constexpr uint64_t kGgufMaxAlignment = 1ull << 20;

enum class GgufType : int32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

struct GgufValue {
  GgufType type = GgufType::U8;
  GgufType elem = GgufType::U8;   // arrays only
  int64_t i = 0;                  // integer / bool scalars
  double f = 0.0;                 // float scalars
  std::string s;                  // string scalar
  std::vector<double> nums;       // numeric / bool arrays
  std::vector<std::string> strs;  // string arrays
  bool is_array() const { return type == GgufType::ARRAY; }
  bool is_int() const;
  bool is_float() const { return type == GgufType::F32 || type == GgufType::F64; }
};

struct GgufTensor {
  std::string name;
  int32_t type = 0;  // ggml type id
  int n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::string file;  // shard path (for error messages)
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class MappedFile;

class GgufFile {
 public:
  // Opens `path`; when it is the first shard of a split set, the other shards are opened too.
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, GgufValue>& kv() const { return kv_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  const GgufValue* find(const std::string& key) const;
  const GgufTensor* tensor(const std::string& name) const;
  size_t total_bytes() const { return total_bytes_; }
  int n_shards() const { return static_cast<int>(maps_.size()); }
  // Maps every page of every shard into this process (reading it into the page cache if needed), as
  // llama.cpp's MAP_POPULATE prefetch does: later first touches of an expert's pages then cost no page
  // fault.  Returns the bytes populated.  Reads the whole model: callers skip it when RAM is short.
  size_t populate() const;

 private:
  void read_one(const std::string& path, bool first, int64_t split_no = 0, int64_t split_count = 1);
  std::string path_;
  std::map<std::string, GgufValue> kv_;
  std::map<std::string, GgufTensor> tensors_;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  size_t total_bytes_ = 0;
};

// Bytes of a tensor with `ne0` elements per row, `rows` rows, for ggml type `type`; throws for unknown
// types or rows that are not a whole number of blocks.
size_t ggml_tensor_bytes(int32_t type, int64_t ne0, int64_t rows, const std::string& what);
const char* ggml_type_name(int32_t type);

}  // namespace dsv4
