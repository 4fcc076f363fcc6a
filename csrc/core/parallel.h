// A minimal static-partition parallel_for over [0, n) with std::thread.
// Deliberately no pool: callers hand it whole tensors, so thread start-up is amortised.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace dsv4 {

inline int default_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

// fn(begin, end) is called on disjoint chunks; the first exception is rethrown on the caller's thread.
template <class Fn>
void parallel_for(int64_t n, int threads, int64_t min_chunk, Fn&& fn) {
  if (n <= 0) return;
  if (threads <= 0) threads = default_threads();
  int64_t chunks = std::min<int64_t>(threads, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (chunks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(chunks));
  int64_t step = (n + chunks - 1) / chunks;
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = c * step, e = std::min(n, b + step);
    if (b >= e) break;
    pool.emplace_back([&, b, e, c] {
      try {
        fn(b, e);
      } catch (...) {
        errors[static_cast<size_t>(c)] = std::current_exception();
      }
    });
  }
  for (auto& t : pool) t.join();
  for (auto& err : errors)
    if (err) std::rethrow_exception(err);
}

}  // namespace dsv4
