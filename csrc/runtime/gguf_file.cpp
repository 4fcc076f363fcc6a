// GGUF reader: mmap, bounds-checked parsing, split-file discovery.  Tensor data is never copied.
#include "runtime/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <regex>

#include "quant/qtypes.h"

namespace dsv4 {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY);
    if (fd_ < 0) throw GgufError(path + ": cannot open (" + std::strerror(errno) + ")");
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw GgufError(path + ": cannot stat");
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) throw GgufError(path + ": empty file, not a GGUF");
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw GgufError(path + ": mmap failed (" + std::strerror(errno) + ")");
    data_ = static_cast<const uint8_t*>(p);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::string path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

namespace {

struct Cursor {
  const uint8_t* p;
  size_t size;
  size_t off = 0;
  const std::string& path;
  void need(size_t n, const char* what) const {
    if (off + n > size || off + n < off)
      throw GgufError(path + ": truncated file while reading " + what + " at byte " + std::to_string(off) +
                      " (file has " + std::to_string(size) + " bytes); re-download or re-convert it");
  }
  template <class T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + off, sizeof(T));
    off += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    uint64_t n = get<uint64_t>(what);
    if (n > (1ull << 30)) throw GgufError(path + ": implausible string length " + std::to_string(n) + " in " + what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p + off), n);
    off += n;
    return s;
  }
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

double read_num(Cursor& c, GgufType t, const std::string& key) {
  const char* w = key.c_str();
  switch (t) {
    case GgufType::U8: return c.get<uint8_t>(w);
    case GgufType::I8: return c.get<int8_t>(w);
    case GgufType::BOOL: return c.get<uint8_t>(w) ? 1 : 0;
    case GgufType::U16: return c.get<uint16_t>(w);
    case GgufType::I16: return c.get<int16_t>(w);
    case GgufType::U32: return c.get<uint32_t>(w);
    case GgufType::I32: return c.get<int32_t>(w);
    case GgufType::F32: return c.get<float>(w);
    case GgufType::U64: return static_cast<double>(c.get<uint64_t>(w));
    case GgufType::I64: return static_cast<double>(c.get<int64_t>(w));
    case GgufType::F64: return c.get<double>(w);
    default: throw GgufError(c.path + ": key '" + key + "' has invalid value type " + std::to_string(int(t)));
  }
}

// Non-quant ggml types the runtime accepts besides the QType table (tid2eid is I32).
struct PlainType {
  int32_t id;
  const char* name;
  int size;
};
const PlainType kPlain[] = {{24, "I8", 1}, {25, "I16", 2}, {26, "I32", 4}, {27, "I64", 8}, {28, "F64", 8}};

}  // namespace

bool GgufValue::is_int() const {
  switch (type) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16: case GgufType::U32:
    case GgufType::I32: case GgufType::U64: case GgufType::I64: case GgufType::BOOL: return true;
    default: return false;
  }
}

const char* ggml_type_name(int32_t type) {
  if (const QTypeInfo* q = qtype_info(type)) return q->name;
  for (const auto& p : kPlain)
    if (p.id == type) return p.name;
  return "unknown";
}

size_t ggml_tensor_bytes(int32_t type, int64_t ne0, int64_t rows, const std::string& what) {
  if (const QTypeInfo* q = qtype_info(type)) {
    if (ne0 % q->block_size != 0)
      throw GgufError(what + ": row length " + std::to_string(ne0) + " is not a multiple of the " + q->name +
                      " block size " + std::to_string(q->block_size));
    return static_cast<size_t>(ne0 / q->block_size) * q->type_size * static_cast<size_t>(rows);
  }
  for (const auto& p : kPlain)
    if (p.id == type) return static_cast<size_t>(ne0) * p.size * static_cast<size_t>(rows);
  throw GgufError(what + ": ggml type id " + std::to_string(type) +
                  " is not supported by this runtime (supported: F32, F16, BF16, Q4_0, Q8_0, MXFP4, Q2_K..Q6_K, "
                  "IQ2_XXS, IQ4_XS, I32); requantize the file with a supported type");
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  read_one(path, true);
  const GgufValue* cnt = find("split.count");
  int n = cnt ? static_cast<int>(cnt->i) : 1;
  if (n > 1) {
    std::smatch m;
    static const std::regex re("^(.*)-(\\d{5})-of-(\\d{5})\\.gguf$");
    if (!std::regex_match(path, m, re) || std::stoi(m[2].str()) != 1)
      throw GgufError(path + ": split.count = " + std::to_string(n) +
                      " but the name is not '<prefix>-00001-of-NNNNN.gguf'; pass the first shard");
    for (int i = 2; i <= n; ++i) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", i, n);
      read_one(m[1].str() + buf, false);
    }
    const GgufValue* tc = find("split.tensors.count");
    if (tc && static_cast<size_t>(tc->i) != tensors_.size())
      throw GgufError(path + ": split.tensors.count = " + std::to_string(tc->i) + " but the shards hold " +
                      std::to_string(tensors_.size()) + " tensors; a shard is missing or stale");
  }
}

GgufFile::~GgufFile() = default;

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void GgufFile::read_one(const std::string& path, bool first) {
  maps_.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& mf = *maps_.back();
  total_bytes_ += mf.size();
  Cursor c{mf.data(), mf.size(), 0, path};
  c.need(4, "magic");
  if (std::memcmp(mf.data(), "GGUF", 4) != 0)
    throw GgufError(path + ": not a GGUF file (magic bytes are not 'GGUF')");
  c.off = 4;
  uint32_t version = c.get<uint32_t>("version");
  if (version != 2 && version != 3)
    throw GgufError(path + ": GGUF version " + std::to_string(version) + " is not supported (expected 3)");
  uint64_t n_tensors = c.get<uint64_t>("tensor count");
  uint64_t n_kv = c.get<uint64_t>("metadata count");
  if (n_tensors > (1u << 24) || n_kv > (1u << 24))
    throw GgufError(path + ": implausible header counts (tensors " + std::to_string(n_tensors) + ", keys " +
                    std::to_string(n_kv) + "); the file is corrupt");
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("metadata key");
    GgufValue v;
    v.type = static_cast<GgufType>(c.get<int32_t>("value type"));
    if (v.type == GgufType::STRING) {
      v.s = c.str(key.c_str());
    } else if (v.type == GgufType::ARRAY) {
      v.elem = static_cast<GgufType>(c.get<int32_t>("array type"));
      uint64_t n = c.get<uint64_t>("array length");
      if (v.elem == GgufType::STRING) {
        v.strs.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.strs.push_back(c.str(key.c_str()));
      } else {
        size_t es = scalar_size(v.elem);
        if (es == 0) throw GgufError(path + ": key '" + key + "' is an array of invalid type");
        c.need(es * n, key.c_str());
        v.nums.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.nums.push_back(read_num(c, v.elem, key));
      }
    } else {
      double x = read_num(c, v.type, key);
      if (v.is_float()) v.f = x;
      else v.i = static_cast<int64_t>(x), v.f = x;
    }
    if (first) kv_[key] = std::move(v);
    else if (key.rfind("split.", 0) == 0) {
    }  // other shards carry only split keys
  }
  size_t alignment = 32;
  if (const GgufValue* a = find("general.alignment")) {
    if (a->i <= 0 || (a->i & (a->i - 1)))
      throw GgufError(path + ": general.alignment = " + std::to_string(a->i) + " is not a power of two");
    alignment = static_cast<size_t>(a->i);
  }
  std::vector<std::pair<GgufTensor, uint64_t>> infos;
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor ti;
    ti.name = c.str("tensor name");
    ti.n_dims = static_cast<int>(c.get<uint32_t>("tensor dims"));
    if (ti.n_dims < 1 || ti.n_dims > 4)
      throw GgufError(path + ": tensor '" + ti.name + "' has " + std::to_string(ti.n_dims) + " dims (1..4 allowed)");
    for (int d = 0; d < ti.n_dims; ++d) {
      ti.ne[d] = c.get<int64_t>("tensor shape");
      if (ti.ne[d] <= 0) throw GgufError(path + ": tensor '" + ti.name + "' has a non-positive dimension");
    }
    ti.type = c.get<int32_t>("tensor type");
    uint64_t off = c.get<uint64_t>("tensor offset");
    ti.file = path;
    infos.emplace_back(std::move(ti), off);
  }
  size_t data_start = (c.off + alignment - 1) / alignment * alignment;
  for (auto& [ti, off] : infos) {
    ti.nbytes = ggml_tensor_bytes(ti.type, ti.ne[0], ti.ne[1] * ti.ne[2] * ti.ne[3], path + ": tensor '" + ti.name + "'");
    size_t begin = data_start + off;
    if (begin < data_start || begin + ti.nbytes > mf.size() || begin + ti.nbytes < begin)
      throw GgufError(path + ": truncated file: tensor '" + ti.name + "' needs bytes [" + std::to_string(begin) + ", " +
                      std::to_string(begin + ti.nbytes) + ") but the file has " + std::to_string(mf.size()) +
                      " bytes; re-download or re-convert it");
    ti.data = mf.data() + begin;
    if (tensors_.count(ti.name)) throw GgufError(path + ": duplicate tensor name '" + ti.name + "'");
    tensors_[ti.name] = ti;
  }
}

}  // namespace dsv4
