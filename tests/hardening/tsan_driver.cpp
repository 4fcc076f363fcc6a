// Concurrency driver for the runtime core (no Python): one Runtime, N threads, each with its own
// Session doing chunked prefill, save -> restore into a fresh session, then decode steps, all at once on
// the shared model and thread pool.  Every logit row is compared bit for bit with the same work done one
// session after another.  Built by tests/hardening/test_runtime_threads.py with -fsanitize=thread (and
// address,undefined), which turns any data race or out-of-bounds access into a failing report.
// A second mode (`corrupt`) feeds the session-state loader truncated and bit-flipped files: each must be
// refused with StateError and leave the session unchanged (under ASan: without reading out of bounds).
// It checks determinism and memory/thread safety, not numerics (tests/parity does that).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "runtime/session.h"

namespace {

struct Job {
  std::vector<int32_t> tokens;
  std::vector<dsv4::Logits> logits;  // one entry per call
  std::string error;
};

std::vector<int32_t> make_tokens(uint64_t seed, int64_t n, int64_t vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (auto& v : t) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<int32_t>((x >> 33) % static_cast<uint64_t>(vocab));
  }
  return t;
}

// prefill in two chunks, save, restore into a new session, decode the rest one token at a time
void run(const dsv4::Runtime& rt, Job& job, int64_t prefill, int64_t ctx, const std::string& state) {
  try {
    dsv4::Session a(rt, ctx, dsv4::KvDtype::F32);
    const int64_t half = prefill / 2;
    job.logits.push_back(a.forward(job.tokens.data(), half, true));
    job.logits.push_back(a.forward(job.tokens.data() + half, prefill - half, false));
    a.save(state);
    dsv4::Session b(rt, ctx, dsv4::KvDtype::F32);
    b.load(state);
    for (size_t t = static_cast<size_t>(prefill); t < job.tokens.size(); ++t)
      job.logits.push_back(b.forward(&job.tokens[t], 1, false));
  } catch (const std::exception& e) {
    job.error = e.what();
  }
}

bool same(const dsv4::Logits& a, const dsv4::Logits& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// corrupt MODEL DIR N: N damaged copies of a saved state; every load must throw StateError and change nothing.
int corrupt(const std::string& path, const std::string& dir, int n) {
  dsv4::RuntimeOptions opts;
  opts.threads = 1;
  dsv4::Runtime rt(path, opts);
  const int64_t vocab = rt.model().cfg().vocab, ctx = 64;
  const std::vector<int32_t> toks = make_tokens(7, 24, vocab), other = make_tokens(8, 24, vocab);
  const std::string good = dir + "/good.state", bad = dir + "/bad.state";
  {
    dsv4::Session s(rt, ctx, dsv4::KvDtype::FP8);
    s.forward(toks.data(), 21, false);  // mid-block for m=4 and m=128
    s.save(good);
  }
  std::ifstream in(good, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  dsv4::Session victim(rt, ctx, dsv4::KvDtype::FP8), twin(rt, ctx, dsv4::KvDtype::FP8);
  victim.forward(other.data(), 5, false);
  twin.forward(other.data(), 5, false);
  uint64_t x = 12345;
  auto rnd = [&](uint64_t m) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return (x >> 33) % m;
  };
  int refused = 0;
  for (int k = 0; k < n; ++k) {
    std::vector<char> b = bytes;
    if (k % 3 == 0) {
      b.resize(rnd(b.size()));
    } else if (k % 3 == 1) {
      b[rnd(b.size())] ^= static_cast<char>(1 + rnd(255));
    } else {  // a header field (fingerprint .. payload size) set to an arbitrary value
      const size_t off = 16 + 8 * rnd(15);
      const uint64_t v = rnd(4) == 0 ? ~0ull - rnd(16) : rnd(1u << 20);
      std::memcpy(&b[off], &v, 8);
    }
    std::ofstream(bad, std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
    try {
      victim.load(bad);
      std::fprintf(stderr, "damaged state %d (size %zu) was accepted\n", k, b.size());
      return 1;
    } catch (const dsv4::StateError&) {
      ++refused;
    }
  }
  const int32_t next = other[5];
  if (victim.pos() != 5 || !same(victim.forward(&next, 1, false), twin.forward(&next, 1, false))) {
    std::fprintf(stderr, "a refused state changed the session\n");
    return 1;
  }
  dsv4::Session restored(rt, ctx, dsv4::KvDtype::FP8), direct(rt, ctx, dsv4::KvDtype::FP8);
  restored.load(good);
  direct.forward(toks.data(), 21, false);
  if (!same(restored.forward(&toks[21], 3, true), direct.forward(&toks[21], 3, true))) {
    std::fprintf(stderr, "the undamaged state does not restore\n");
    return 1;
  }
  std::printf("OK corrupt refused=%d\n", refused);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[2]) == "corrupt") return corrupt(argv[1], argv[3], std::atoi(argv[4]));
  if (argc != 8) {
    std::fprintf(stderr,
                 "usage: %s MODEL.gguf SESSIONS PREFILL DECODE POOL_THREADS ROUNDS STATE_DIR\n"
                 "       %s MODEL.gguf corrupt STATE_DIR N\n",
                 argv[0], argv[0]);
    return 2;
  }
  const std::string path = argv[1], dir = argv[7];
  const int sessions = std::atoi(argv[2]), pool = std::atoi(argv[5]), rounds = std::atoi(argv[6]);
  const int64_t prefill = std::atoll(argv[3]), decode = std::atoll(argv[4]), ctx = prefill + decode;
  dsv4::RuntimeOptions opts;
  opts.threads = pool;
  dsv4::Runtime rt(path, opts);
  const int64_t vocab = rt.model().cfg().vocab;

  std::vector<Job> ref(static_cast<size_t>(sessions));
  for (int i = 0; i < sessions; ++i) {
    ref[static_cast<size_t>(i)].tokens = make_tokens(static_cast<uint64_t>(i), ctx, vocab);
    run(rt, ref[static_cast<size_t>(i)], prefill, ctx, dir + "/seq" + std::to_string(i) + ".state");
    if (!ref[static_cast<size_t>(i)].error.empty()) {
      std::fprintf(stderr, "sequential session %d failed: %s\n", i, ref[static_cast<size_t>(i)].error.c_str());
      return 1;
    }
  }
  int64_t compared = 0;
  for (int r = 0; r < rounds; ++r) {
    std::vector<Job> jobs(static_cast<size_t>(sessions));
    std::vector<std::thread> threads;
    for (int i = 0; i < sessions; ++i) {
      jobs[static_cast<size_t>(i)].tokens = ref[static_cast<size_t>(i)].tokens;
      threads.emplace_back(run, std::cref(rt), std::ref(jobs[static_cast<size_t>(i)]), prefill, ctx,
                           dir + "/par" + std::to_string(i) + ".state");
    }
    for (auto& t : threads) t.join();
    // DSV4_DRIVER_PERTURB: change one threaded logit, so a test can see the comparison fail
    if (std::getenv("DSV4_DRIVER_PERTURB") && !jobs.back().logits.empty()) jobs.back().logits.back()[0] += 1.0f;
    for (int i = 0; i < sessions; ++i) {
      const Job &j = jobs[static_cast<size_t>(i)], &e = ref[static_cast<size_t>(i)];
      if (!j.error.empty()) {
        std::fprintf(stderr, "round %d session %d failed: %s\n", r, i, j.error.c_str());
        return 1;
      }
      if (j.logits.size() != e.logits.size()) {
        std::fprintf(stderr, "round %d session %d: %zu calls, expected %zu\n", r, i, j.logits.size(), e.logits.size());
        return 1;
      }
      for (size_t k = 0; k < e.logits.size(); ++k) {
        if (j.logits[k].size() != e.logits[k].size() ||
            std::memcmp(j.logits[k].data(), e.logits[k].data(), e.logits[k].size() * sizeof(float)) != 0) {
          std::fprintf(stderr, "round %d session %d call %zu: logits differ from the sequential run\n", r, i, k);
          return 1;
        }
        compared += static_cast<int64_t>(e.logits[k].size());
      }
    }
  }
  std::printf("OK sessions=%d rounds=%d prefill=%lld decode=%lld pool=%d logits_compared=%lld\n", sessions, rounds,
              static_cast<long long>(prefill), static_cast<long long>(decode), pool, static_cast<long long>(compared));
  return 0;
}
