// A persistent worker pool for the runtime's many small parallel loops (decode issues hundreds per
// token, so core/parallel.h's thread-per-call start-up would dominate).  One job at a time; the calling
// thread works too.  Exceptions from workers are rethrown on the caller.  Safe to call from several
// threads (sessions sharing one Runtime) and from inside a job: a caller that finds the pool busy runs
// its loop on its own thread instead of waiting, which gives the same results (every caller splits only
// independent iterations) and cannot deadlock.  It does not balance cores between concurrent callers.
// Waits spin first, as ggml's pool does: a worker polls for the next job, and the caller for the workers'
// completion, for up to kSpinUs before sleeping on a condition variable, so the back-to-back jobs of one
// decode step cost no futex wake-up each, while an idle pool goes to sleep within ~0.1 ms.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dsv4 {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) : n_(threads < 1 ? 1 : threads) {
    for (int i = 1; i < n_; ++i) workers_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_.store(true, std::memory_order_release);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  // fn(begin, end) over [0, n) in chunks of at least `min_chunk`.
  void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    int64_t chunks =
        std::min<int64_t>(static_cast<int64_t>(n_) * 4, std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
    if (chunks <= 1 || n_ == 1) {
      fn(0, n);
      return;
    }
    // busy_ is held for the whole job: the job fields below belong to one caller at a time.  A flag, not
    // a mutex, so that a nested call from the owning thread is defined behaviour (it runs inline).
    if (busy_.exchange(true, std::memory_order_acquire)) {
      fn(0, n);
      return;
    }
    struct Release {
      std::atomic<bool>& b;
      ~Release() { b.store(false, std::memory_order_release); }
    } release{busy_};
    std::unique_lock<std::mutex> lk(mu_);
    fn_ = &fn;
    total_ = n;
    step_ = (n + chunks - 1) / chunks;
    next_.store(0);
    pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    error_ = nullptr;
    gen_.fetch_add(1, std::memory_order_release);  // under mu_: a worker about to sleep cannot miss it
    lk.unlock();
    cv_.notify_all();  // no system call when every worker is still spinning
    work();
    if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; })) {
      lk.lock();
      done_cv_.wait(lk, [this] { return pending_.load(std::memory_order_acquire) == 0; });
      lk.unlock();
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      int64_t b = next_.fetch_add(step_);
      if (b >= total_) break;
      int64_t e = std::min(total_, b + step_);
      try {
        (*fn_)(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lk(err_mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
  }
  static constexpr int kSpinUs = 100;
  // Polls pred (with a pause hint) for up to kSpinUs; true once it holds.
  template <class Pred>
  static bool spin_until(Pred pred) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (pred()) return true;
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#endif
      }
      if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(kSpinUs)) return pred();
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      if (!spin_until([&] { return gen_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
      }
      seen = gen_.load(std::memory_order_acquire);
      if (stop_.load(std::memory_order_acquire)) return;
      work();
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // the caller may be asleep: take mu_ so the decrement cannot fall between its check and its wait
        { std::lock_guard<std::mutex> lk(mu_); }
        done_cv_.notify_one();
      }
    }
  }
  int n_;
  std::vector<std::thread> workers_;
  std::mutex mu_, err_mu_;
  std::atomic<bool> busy_{false};
  std::condition_variable cv_, done_cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t total_ = 0, step_ = 1;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};
  std::exception_ptr error_;
};

}  // namespace dsv4
