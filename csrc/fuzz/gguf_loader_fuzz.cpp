// libFuzzer target for the runtime's GGUF loader (runtime/gguf_file.cpp): every input is written as the
// first shard of a two-file split set next to a fixed valid second shard, opened with GgufFile, and every
// tensor byte and metadata value is read.  The only acceptable failure is GgufError.  Built by
// benchmarks/fuzz.sh (clang -fsanitize=fuzzer,address,undefined) and, with standalone_main.cpp, by
// tests/hardening/test_fuzz_cpp.py (g++ or clang with ASan/UBSan); it does not load a model (model.cpp).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/gguf_file.h"

namespace {

// A valid second shard (split.no = 1 of 2, one F32 tensor "b" of 8 elements): lets inputs that say
// split.count = 2 reach the shard-joining code.
std::string second_shard() {
  std::string s("GGUF", 4);
  auto u32 = [&](uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); };
  auto u64 = [&](uint64_t v) { s.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& t) {
    u64(t.size());
    s += t;
  };
  u32(3), u64(1), u64(2);
  str("split.no"), u32(2), s.append("\x01\x00", 2);
  str("split.count"), u32(2), s.append("\x02\x00", 2);
  str("b"), u32(1), u64(8), u32(0), u64(0);
  s.resize((s.size() + 31) / 32 * 32, '\0');
  s.append(32, '\0');
  return s;
}

// libFuzzer ends a run with _Exit (no destructors), so the scratch folder is named after the process and
// every new process first removes the folders of processes that are gone.
const char kPrefix[] = "dsv4-gguf-fuzz-";

void remove_stale(const std::string& root) {
  DIR* d = ::opendir(root.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (std::strncmp(e->d_name, kPrefix, sizeof kPrefix - 1) != 0) continue;
    const long pid = std::strtol(e->d_name + sizeof kPrefix - 1, nullptr, 10);
    if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) continue;
    const std::string dir = root + "/" + e->d_name;
    ::unlink((dir + "/m-00001-of-00002.gguf").c_str());
    ::unlink((dir + "/m-00002-of-00002.gguf").c_str());
    ::rmdir(dir.c_str());
  }
  ::closedir(d);
}

struct Dir {
  std::string dir, first, second;
  Dir() {
    // tmpfs when there is one: a disk-backed file rewritten per input is 50x slower.
    const char* tmp = std::getenv("TMPDIR");
    const std::string root = tmp && *tmp ? tmp : (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    remove_stale(root);
    dir = root + "/" + kPrefix + std::to_string(::getpid());
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) std::abort();
    first = dir + "/m-00001-of-00002.gguf";
    second = dir + "/m-00002-of-00002.gguf";
    const std::string s = second_shard();
    FILE* f = std::fopen(second.c_str(), "wb");
    if (!f || std::fwrite(s.data(), 1, s.size(), f) != s.size() || std::fclose(f) != 0) std::abort();
  }
  ~Dir() {
    ::unlink(first.c_str());
    ::unlink(second.c_str());
    ::rmdir(dir.c_str());
  }
};

bool write_all(const std::string& path, const uint8_t* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < size) {
    ssize_t w = ::write(fd, data + done, size - done);
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  ::close(fd);
  return done == size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Dir dir;
  // Proof that the sanitizers are live in this binary (tests/hardening/test_fuzz_cpp.py): a heap read one
  // past the end, or a signed overflow, only when asked.
  static const char* self_test = std::getenv("DSV4_FUZZ_SELFTEST");
  if (self_test && size > 0) {
    std::vector<uint8_t> copy(data, data + size);
    volatile int big = INT_MAX;
    if (std::strcmp(self_test, "asan") == 0) return copy.data()[size];
    if (std::strcmp(self_test, "ubsan") == 0) return big + static_cast<int>(copy[0] | 1);
  }
  if (!write_all(dir.first, data, size)) std::abort();
  try {
    dsv4::GgufFile f(dir.first);
    volatile uint64_t sink = 0;
    for (const auto& [key, v] : f.kv()) {
      sink += key.size() + v.s.size() + static_cast<uint64_t>(v.i);
      for (double x : v.nums) sink += static_cast<uint64_t>(x != 0);
      for (const auto& s : v.strs) sink += s.size();
    }
    for (const auto& [name, t] : f.tensors()) {
      if (t.nbytes > f.total_bytes()) std::abort();             // a view larger than every mapped file together
      for (size_t i = 0; i < t.nbytes; ++i) sink += t.data[i];  // ASan/SEGV on any byte outside the map
      sink += static_cast<uint64_t>(t.nelements());
    }
    (void)sink;
  } catch (const dsv4::GgufError&) {}
  return 0;
}
