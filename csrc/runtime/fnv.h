// 64-bit FNV-1a, the hash behind the weights fingerprint and the session file checksum (corruption
// checks, not cryptographic ones).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsv4 {

constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull, kFnvPrime = 0x100000001b3ull;

inline uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * kFnvPrime;
  return h;
}

}  // namespace dsv4
