// Streaming probe for one BF16 tensor of a GGUF (e.g. the output head): 2 threads read its rows through
// the file mapping with (0) the runtime's f32-activation BF16 dot, (1) a plain 512-bit OR-reduction,
// (2) an AVX512-BF16 vdpbf16ps dot (BF16 activations, as ggml), (3) an even/odd-split dot; GB/s each.
// Tells whether a decode product is bound by the kernel or by what the mapping delivers.  Not part of
// the package; x86-64 with AVX512-BF16 only.
//   g++ -O2 -mavx512f -mavx512bw -mavx512vl -mavx512bf16 -mfma -pthread benchmarks/stream_probe.cpp -o probe
//   ./probe MODEL.gguf DATA_OFFSET NBYTES COLS     (offset/size: gguf.GGUFReader's data_offset / n_bytes)
#include <fcntl.h>
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

float dot_f32act(const uint16_t* a, const float* b, int64_t n) {
  __m512 s01 = _mm512_setzero_ps(), s23 = _mm512_setzero_ps();
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    const __m512i v0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)));
    const __m512i v1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i + 16)));
    s01 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v0, 16)), _mm512_loadu_ps(b + i), s01);
    s23 = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v1, 16)), _mm512_loadu_ps(b + i + 16), s23);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s01, s23));
}
uint64_t or_reduce(const uint64_t* p, size_t n) {
  __m512i acc = _mm512_setzero_si512();
  for (size_t i = 0; i + 8 <= n; i += 8) acc = _mm512_or_si512(acc, _mm512_loadu_si512(p + i));
  return _mm512_reduce_or_epi64(acc);
}
float dot_bf16act(const uint16_t* a, const __m512bh* xb, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  for (int64_t i = 0; i + 64 <= n; i += 64) {
    s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(a + i), xb[i / 32]);
    s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(a + i + 32), xb[i / 32 + 1]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
float dot_evenodd(const uint16_t* a, const float* xe, const float* xo, int64_t n) {
  __m512 se = _mm512_setzero_ps(), so = _mm512_setzero_ps();
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    const __m512i v = _mm512_loadu_si512(a + i);
    so = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, hi)), _mm512_loadu_ps(xo + i / 2), so);
    se = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), _mm512_loadu_ps(xe + i / 2), se);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(se, so));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s MODEL.gguf DATA_OFFSET NBYTES COLS\n", argv[0]);
    return 2;
  }
  const long off = std::atol(argv[2]);
  const size_t nbytes = static_cast<size_t>(std::atoll(argv[3]));
  const int64_t cols = std::atol(argv[4]), rows = static_cast<int64_t>(nbytes) / (cols * 2);
  const int fd = open(argv[1], O_RDONLY);
  if (fd < 0) return std::perror(argv[1]), 1;
  const size_t fsz = static_cast<size_t>(lseek(fd, 0, SEEK_END));
  auto* base = static_cast<uint8_t*>(mmap(nullptr, fsz, PROT_READ, MAP_SHARED, fd, 0));
  if (base == MAP_FAILED) return std::perror("mmap"), 1;
  madvise(base, fsz, 22 /* MADV_POPULATE_READ */);
  const auto* w = reinterpret_cast<const uint16_t*>(base + off);
  std::vector<float> x(cols, 0.5f), xe(cols / 2, 0.5f), xo(cols / 2, 0.5f), y(rows);
  std::vector<__m512bh> xb(cols / 32);
  for (auto& v : xb) v = (__m512bh)_mm512_set1_epi16(0x3f00);
  const char* names[4] = {"f32-activation BF16 dot", "OR-reduction", "vdpbf16ps dot", "even/odd dot"};
  for (int mode = 0; mode < 4; ++mode) {
    double best = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> th;
      std::vector<uint64_t> sink(2);
      for (int t = 0; t < 2; ++t)
        th.emplace_back([&, t] {
          const int64_t r0 = rows * t / 2, r1 = rows * (t + 1) / 2;
          for (int64_t r = r0; r < r1; ++r) {
            const uint16_t* wr = w + r * cols;
            if (mode == 0)
              y[r] = dot_f32act(wr, x.data(), cols);
            else if (mode == 1)
              sink[t] ^= or_reduce(reinterpret_cast<const uint64_t*>(wr), cols / 4);
            else if (mode == 2)
              y[r] = dot_bf16act(wr, xb.data(), cols);
            else
              y[r] = dot_evenodd(wr, xe.data(), xo.data(), cols);
          }
        });
      for (auto& t : th) t.join();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%-24s %.1f GB/s\n", names[mode], nbytes / best / 1e9);
  }
  return 0;
}
