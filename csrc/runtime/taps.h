// Named taps: copies of intermediate activations that parity tests and the imatrix collector ask for
// by fnmatch-style pattern ('*' and '?'), e.g. "layers.*.q".  A Taps object belongs to one session;
// the forward pass checks active() once per op so that an untapped run pays nothing.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace dsv4 {

class Taps {
 public:
  using Store = std::map<std::string, std::pair<std::vector<float>, int64_t>>;  // name -> (data, row width)

  void set(const std::vector<std::string>& patterns) {
    patterns_ = patterns;
    store_.clear();
  }
  bool active() const { return !patterns_.empty(); }
  bool want(const std::string& name) const {
    for (const auto& p : patterns_)
      if (glob(p.c_str(), name.c_str())) return true;
    return false;
  }
  // Appends n values (rows of `width`) under `name` when a pattern asks for it.
  void add(const std::string& name, const float* x, int64_t n, int64_t width) {
    if (!want(name)) return;
    auto& e = store_[name];
    e.second = width;
    e.first.insert(e.first.end(), x, x + n);
  }
  Store take() {
    Store out = std::move(store_);
    store_.clear();
    return out;
  }

 private:
  static bool glob(const char* p, const char* s) {
    if (!*p) return !*s;
    if (*p == '*') return glob(p + 1, s) || (*s && glob(p, s + 1));
    if (*s && (*p == '?' || *p == *s)) return glob(p + 1, s + 1);
    return false;
  }
  std::vector<std::string> patterns_;
  Store store_;
};

}  // namespace dsv4
