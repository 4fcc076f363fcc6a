// GGUF reader: mmap, bounds-checked parsing, split-file discovery.  Tensor data is never copied.
#include "runtime/gguf_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
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
    // A throwing constructor runs no destructor: close the descriptor before every error.
    auto fail = [&](const std::string& why) {
      ::close(fd_);
      return GgufError(path + ": " + why);
    };
    struct stat st{};
    if (::fstat(fd_, &st) != 0) throw fail("cannot stat");
    if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) throw fail("empty file, not a GGUF");
    data_ = map_aligned(fd_, size_);
    if (!data_) throw fail(std::string("mmap failed (") + std::strerror(errno) + ")");
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // The file mapped at a 2 MB-aligned address, with MADV_HUGEPAGE: where the page cache holds the file
  // in 2 MB folios (ext4/xfs on recent kernels), the kernel can then map them with one TLB entry per 2 MB
  // instead of 512: weight streams stop paying a page walk (and a hardware-prefetch restart) every 4 KB.
  // Falls back to a plain mapping when the aligned one cannot be made; the advice is only a hint.
  static const uint8_t* map_aligned(int fd, size_t size) {
    constexpr size_t kHuge = size_t{2} << 20;
    void* p = MAP_FAILED;
    void* resv = ::mmap(nullptr, size + kHuge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (resv != MAP_FAILED) {
      const uintptr_t base = reinterpret_cast<uintptr_t>(resv);
      const uintptr_t aligned = (base + kHuge - 1) & ~(kHuge - 1);
      p = ::mmap(reinterpret_cast<void*>(aligned), size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
      if (p == MAP_FAILED) {
        ::munmap(resv, size + kHuge);
      } else {  // give back the reservation around the mapping
        if (aligned > base) ::munmap(resv, aligned - base);
        const uintptr_t end = aligned + ((size + 4095) & ~size_t{4095}), rend = base + size + kHuge;
        if (rend > end) ::munmap(reinterpret_cast<void*>(end), rend - end);
      }
    }
    if (p == MAP_FAILED) p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return nullptr;
#ifdef MADV_HUGEPAGE
    ::madvise(p, size, MADV_HUGEPAGE);
#endif
    return static_cast<const uint8_t*>(p);
  }
  void populate() const {
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14; older headers lack the name
#endif
    if (::madvise(const_cast<uint8_t*>(data_), size_, MADV_POPULATE_READ) == 0) return;
    // older kernels: read one byte per page
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < size_; i += page) sink = static_cast<uint8_t>(sink ^ data_[i]);
    (void)sink;
  }

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
    if (n > kGgufMaxString)
      throw GgufError(path + ": " + what + " at byte " + std::to_string(off - 8) + " claims " + std::to_string(n) +
                      " bytes (limit " + std::to_string(kGgufMaxString) + "); the file is corrupt");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p + off), n);
    off += n;
    return s;
  }
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}

// Reads one scalar; integers are kept exact in `i` (u64 above INT64_MAX wraps, as a bit pattern).
void read_scalar(Cursor& c, GgufType t, const std::string& key, int64_t* i, double* f) {
  const char* w = key.c_str();
  switch (t) {
    case GgufType::U8:
      *i = c.get<uint8_t>(w);
      break;
    case GgufType::I8:
      *i = c.get<int8_t>(w);
      break;
    case GgufType::BOOL:
      *i = c.get<uint8_t>(w) ? 1 : 0;
      break;
    case GgufType::U16:
      *i = c.get<uint16_t>(w);
      break;
    case GgufType::I16:
      *i = c.get<int16_t>(w);
      break;
    case GgufType::U32:
      *i = c.get<uint32_t>(w);
      break;
    case GgufType::I32:
      *i = c.get<int32_t>(w);
      break;
    case GgufType::U64: {
      uint64_t u = c.get<uint64_t>(w);
      *i = static_cast<int64_t>(u);
      *f = static_cast<double>(u);
      return;
    }
    case GgufType::I64:
      *i = c.get<int64_t>(w);
      break;
    case GgufType::F32:
      *f = c.get<float>(w);
      return;
    case GgufType::F64:
      *f = c.get<double>(w);
      return;
    default:
      throw GgufError(c.path + ": key '" + key + "' has unknown value type " + std::to_string(int(t)) +
                      " (GGUF defines 0..12); the file is corrupt or from a newer format");
  }
  *f = static_cast<double>(*i);
}

// a * b, or throw when it does not fit in size_t.
size_t checked_mul(size_t a, size_t b, const std::string& what) {
  size_t r;
  if (__builtin_mul_overflow(a, b, &r))
    throw GgufError(what + ": size overflows (" + std::to_string(a) + " x " + std::to_string(b) +
                    "); the header is corrupt");
  return r;
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
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::BOOL:
      return true;
    default:
      return false;
  }
}

const char* ggml_type_name(int32_t type) {
  if (const QTypeInfo* q = qtype_info(type)) return q->name;
  for (const auto& p : kPlain)
    if (p.id == type) return p.name;
  return "unknown";
}

size_t ggml_tensor_bytes(int32_t type, int64_t ne0, int64_t rows, const std::string& what) {
  if (ne0 < 0 || rows < 0)
    throw GgufError(what + ": negative size (" + std::to_string(ne0) + " x " + std::to_string(rows) + ")");
  if (const QTypeInfo* q = qtype_info(type)) {
    if (ne0 % q->block_size != 0)
      throw GgufError(what + ": row length " + std::to_string(ne0) + " is not a multiple of the " + q->name +
                      " block size " + std::to_string(q->block_size));
    return checked_mul(checked_mul(static_cast<size_t>(ne0 / q->block_size), q->type_size, what),
                       static_cast<size_t>(rows), what);
  }
  for (const auto& p : kPlain)
    if (p.id == type) return checked_mul(checked_mul(static_cast<size_t>(ne0), p.size, what), rows, what);
  std::string names;  // the storage types of the quant table (not the activation-only Q8_1 / Q8_K), then I32
  int n = 0;
  const QTypeInfo* table = qtype_table(&n);
  for (int i = 0; i < n; ++i)
    if (table[i].type != QType::Q8_1 && table[i].type != QType::Q8_K) names += std::string(table[i].name) + ", ";
  throw GgufError(what + ": ggml type id " + std::to_string(type) + " is not supported by this runtime (supported: " +
                  names + "I32); requantize the file with a supported type");
}

size_t GgufFile::populate() const {
  size_t n = 0;
  for (const auto& m : maps_) {
    m->populate();
    n += m->size();
  }
  return n;
}

GgufFile::GgufFile(const std::string& path) : path_(path) {
  read_one(path, true);
  const GgufValue* cnt = find("split.count");
  int64_t n = cnt && !cnt->is_array() ? cnt->i : 1;
  if (n > 1) {
    if (n > 99999)
      throw GgufError(path + ": split.count = " + std::to_string(n) + " is not a valid shard count (1..99999)");
    std::smatch m;
    static const std::regex re("^(.*)-(\\d{5})-of-(\\d{5})\\.gguf$");
    if (!std::regex_match(path, m, re) || std::stoi(m[2].str()) != 1 || std::stoi(m[3].str()) != n)
      throw GgufError(path + ": split.count = " + std::to_string(n) + " but the name is not '<prefix>-00001-of-" +
                      std::to_string(n) + ".gguf' (zero-padded to 5 digits); pass the first shard");
    const GgufValue* no = find("split.no");
    if (!no || no->is_array() || no->i != 0)
      throw GgufError(path + ": first shard of a " + std::to_string(n) + "-file split must have split.no = 0");
    for (int64_t i = 2; i <= n; ++i) {
      char buf[40];
      std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", static_cast<int>(i), static_cast<int>(n));
      const std::string shard = m[1].str() + buf;
      if (::access(shard.c_str(), F_OK) != 0)
        throw GgufError(path + ": split shard " + std::to_string(i) + " of " + std::to_string(n) + " ('" + shard +
                        "') is missing (cannot open: " + std::strerror(errno) + "); download or copy every shard");
      read_one(shard, false, i - 1, n);
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

void GgufFile::read_one(const std::string& path, bool first, int64_t split_no, int64_t split_count) {
  maps_.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& mf = *maps_.back();
  total_bytes_ += mf.size();
  Cursor c{mf.data(), mf.size(), 0, path};
  c.need(4, "magic");
  if (std::memcmp(mf.data(), "GGUF", 4) != 0) throw GgufError(path + ": not a GGUF file (magic bytes are not 'GGUF')");
  c.off = 4;
  uint32_t version = c.get<uint32_t>("version");
  if (version != 2 && version != 3)
    throw GgufError(path + ": GGUF version " + std::to_string(version) + " is not supported (expected 3)");
  uint64_t n_tensors = c.get<uint64_t>("tensor count");
  uint64_t n_kv = c.get<uint64_t>("metadata count");
  if (n_tensors > kGgufMaxTensors)
    throw GgufError(path + ": header claims " + std::to_string(n_tensors) + " tensors (limit " +
                    std::to_string(kGgufMaxTensors) + "); the file is corrupt");
  if (n_kv > kGgufMaxKeys)
    throw GgufError(path + ": header claims " + std::to_string(n_kv) + " metadata keys (limit " +
                    std::to_string(kGgufMaxKeys) + "); the file is corrupt");
  std::map<std::string, GgufValue> kv;
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("metadata key");
    GgufValue v;
    int32_t type = c.get<int32_t>("value type");
    v.type = static_cast<GgufType>(type);
    if (v.type == GgufType::STRING) {
      v.s = c.str(key.c_str());
    } else if (v.type == GgufType::ARRAY) {
      v.elem = static_cast<GgufType>(c.get<int32_t>("array type"));
      uint64_t n = c.get<uint64_t>("array length");
      if (n > kGgufMaxArray)
        throw GgufError(path + ": key '" + key + "' is an array of " + std::to_string(n) + " entries (limit " +
                        std::to_string(kGgufMaxArray) + "); the file is corrupt");
      if (v.elem == GgufType::STRING) {
        c.need(n * 8, key.c_str());  // every entry has at least its 8-byte length
        v.strs.reserve(n);
        for (uint64_t i = 0; i < n; ++i) v.strs.push_back(c.str(key.c_str()));
      } else {
        size_t es = scalar_size(v.elem);
        if (es == 0)
          throw GgufError(path + ": key '" + key + "' is an array of unknown or nested type " +
                          std::to_string(static_cast<int>(v.elem)) + "; the file is corrupt");
        c.need(es * n, key.c_str());
        v.nums.reserve(n);
        for (uint64_t i = 0; i < n; ++i) {
          int64_t iv = 0;
          double fv = 0;
          read_scalar(c, v.elem, key, &iv, &fv);
          v.nums.push_back(fv);
        }
      }
    } else {
      read_scalar(c, v.type, key, &v.i, &v.f);
    }
    if (c.off > kGgufMaxMetadataBytes)
      throw GgufError(path + ": metadata runs past " + std::to_string(kGgufMaxMetadataBytes) + " bytes (at key '" +
                      key + "'); the file is corrupt");
    if (kv.count(key)) throw GgufError(path + ": duplicate metadata key '" + key + "'; the file is corrupt");
    kv.emplace(std::move(key), std::move(v));
  }
  if (first) {
    kv_ = std::move(kv);
  } else {
    // Other shards carry their own split keys; they must say which part of which set they are.
    auto it_no = kv.find("split.no"), it_cnt = kv.find("split.count");
    int64_t no = it_no == kv.end() || it_no->second.is_array() ? -1 : it_no->second.i;
    int64_t cnt = it_cnt == kv.end() || it_cnt->second.is_array() ? -1 : it_cnt->second.i;
    if (no != split_no || cnt != split_count)
      throw GgufError(path + ": expected shard split.no = " + std::to_string(split_no) + " of split.count = " +
                      std::to_string(split_count) + ", the file says split.no = " + std::to_string(no) +
                      ", split.count = " + std::to_string(cnt) + "; it belongs to another split set");
  }
  size_t alignment = 32;
  if (const GgufValue* a = find("general.alignment")) {
    if (a->is_array() || !a->is_int() || a->i <= 0 || (a->i & (a->i - 1)) ||
        static_cast<uint64_t>(a->i) > kGgufMaxAlignment)
      throw GgufError(path + ": general.alignment = " + std::to_string(a->i) + " is not a power of two in 1.." +
                      std::to_string(kGgufMaxAlignment));
    alignment = static_cast<size_t>(a->i);
  }
  std::vector<std::pair<GgufTensor, uint64_t>> infos;
  infos.reserve(std::min<uint64_t>(n_tensors, (c.size - c.off) / 24));  // each info takes >= 24 bytes
  for (uint64_t t = 0; t < n_tensors; ++t) {
    GgufTensor ti;
    ti.name = c.str("tensor name");
    if (ti.name.size() > kGgufMaxTensorName)
      throw GgufError(path + ": tensor name '" + ti.name.substr(0, 80) + "' is " + std::to_string(ti.name.size()) +
                      " bytes (ggml's limit is " + std::to_string(kGgufMaxTensorName) + ")");
    uint32_t nd = c.get<uint32_t>("tensor dims");
    if (nd < 1 || nd > 4)
      throw GgufError(path + ": tensor '" + ti.name + "' has " + std::to_string(nd) + " dims (1..4 allowed)");
    ti.n_dims = static_cast<int>(nd);
    int64_t n_el = 1;
    for (int d = 0; d < ti.n_dims; ++d) {
      ti.ne[d] = c.get<int64_t>("tensor shape");
      if (ti.ne[d] <= 0)
        throw GgufError(path + ": tensor '" + ti.name + "' has dimension " + std::to_string(d) + " = " +
                        std::to_string(ti.ne[d]) + " (must be positive)");
      if (__builtin_mul_overflow(n_el, ti.ne[d], &n_el))
        throw GgufError(path + ": tensor '" + ti.name + "': element count overflows int64; the header is corrupt");
    }
    ti.type = c.get<int32_t>("tensor type");
    uint64_t off = c.get<uint64_t>("tensor offset");
    if (off % alignment != 0)
      throw GgufError(path + ": tensor '" + ti.name + "' has data offset " + std::to_string(off) +
                      ", not a multiple of the alignment " + std::to_string(alignment) + " (misaligned data)");
    ti.file = path;
    infos.emplace_back(std::move(ti), off);
  }
  size_t data_start = (c.off + alignment - 1) / alignment * alignment;
  for (auto& [ti, off] : infos) {
    const std::string what = path + ": tensor '" + ti.name + "'";
    ti.nbytes = ggml_tensor_bytes(ti.type, ti.ne[0], ti.ne[1] * ti.ne[2] * ti.ne[3], what);
    size_t begin = data_start + off;
    if (off > mf.size() || begin < data_start || begin + ti.nbytes > mf.size() || begin + ti.nbytes < begin)
      throw GgufError(path + ": truncated file: tensor '" + ti.name + "' needs bytes [" + std::to_string(begin) + ", " +
                      std::to_string(begin + ti.nbytes) + ") but the file has " + std::to_string(mf.size()) +
                      " bytes; re-download or re-convert it");
    ti.data = mf.data() + begin;
    if (tensors_.count(ti.name)) throw GgufError(path + ": duplicate tensor name '" + ti.name + "'");
    tensors_[ti.name] = ti;
  }
}

}  // namespace dsv4
