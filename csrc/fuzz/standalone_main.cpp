// A libFuzzer-compatible driver for compilers without -fsanitize=fuzzer (g++): replays every corpus file,
// then runs `-runs=N` random mutations of them (bit flips, interesting integers at any offset, inserted,
// erased and duplicated chunks) with seed `-seed=S`.  Not coverage-guided: it is the in-suite smoke run
// under ASan/UBSan; benchmarks/fuzz.sh uses real libFuzzer.  Args: [-runs=N] [-seed=S] FILE_OR_DIR...
#include <dirent.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void load(const std::string& path, std::vector<std::string>* out) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = ::opendir(path.c_str());
    if (!d) return;
    while (dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') load(path + "/" + e->d_name, out);
    ::closedir(d);
    return;
  }
  std::ifstream f(path, std::ios::binary);
  out->emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void mutate(std::string* s, std::mt19937_64& rng) {
  static const uint64_t kInteresting[] = {0,
                                          1,
                                          2,
                                          3,
                                          4,
                                          7,
                                          8,
                                          31,
                                          32,
                                          63,
                                          64,
                                          127,
                                          128,
                                          255,
                                          256,
                                          0x7fff,
                                          0xffff,
                                          0x10000,
                                          0x7fffffff,
                                          0x80000000,
                                          0xffffffff,
                                          0x100000000ull,
                                          0x7fffffffffffffffull,
                                          0x8000000000000000ull,
                                          0xffffffffffffffffull};
  const int n_ops = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < n_ops; ++k) {
    const size_t len = s->size();
    const size_t pos = len ? rng() % len : 0;
    switch (rng() % 6) {
      case 0:
        if (len) (*s)[pos] = static_cast<char>((*s)[pos] ^ (1u << (rng() % 8)));
        break;
      case 1:
        if (len) (*s)[pos] = static_cast<char>(rng());
        break;
      case 2: {  // interesting integer, 1/2/4/8 bytes
        const size_t w = size_t{1} << (rng() % 4);
        uint64_t v = kInteresting[rng() % (sizeof kInteresting / sizeof kInteresting[0])];
        if (rng() % 2) v = static_cast<uint64_t>(len) + (rng() % 5) - 2;
        if (pos + w <= len) std::memcpy(&(*s)[pos], &v, w);
        break;
      }
      case 3:
        s->insert(pos, std::string(1 + rng() % 16, static_cast<char>(rng())));
        break;
      case 4:
        if (len) s->erase(pos, 1 + rng() % std::min<size_t>(len - pos, 64));
        break;
      default:
        if (len) s->resize(rng() % len);  // truncation
        break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  long long runs = 0;
  uint64_t seed = 1;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "-runs=", 6) == 0)
      runs = std::atoll(argv[i] + 6);
    else if (std::strncmp(argv[i], "-seed=", 6) == 0)
      seed = std::strtoull(argv[i] + 6, nullptr, 10);
    else if (argv[i][0] != '-')
      load(argv[i], &corpus);
  }
  if (corpus.empty()) corpus.emplace_back();
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());
  std::mt19937_64 rng(seed);
  for (long long r = 0; r < runs; ++r) {
    std::string s = corpus[rng() % corpus.size()];
    mutate(&s, rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("Done %lld runs (%zu corpus + %lld mutations) in %.1f s\n", static_cast<long long>(corpus.size()) + runs,
              corpus.size(), runs, dt);
  return 0;
}
