// CPU feature detection (GCC/Clang builtins on x86-64; everything else uses the reference path).
#include "core/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace dsv4 {

bool cpu_has_avx2() {
#if defined(DSV4_X86) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

bool force_ref_from_env() {
  const char* v = std::getenv("DSV4_FORCE_REF");
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

Impl resolve_impl(Impl requested) {
  switch (requested) {
    case Impl::Ref:
      return Impl::Ref;
    case Impl::Simd:
      if (!cpu_has_avx2()) throw std::runtime_error("SIMD kernels requested but this CPU lacks AVX2/FMA/F16C");
      return Impl::Simd;
    case Impl::Auto:
    default:
      return (cpu_has_avx2() && !force_ref_from_env()) ? Impl::Simd : Impl::Ref;
  }
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Ref: return "ref";
    case Impl::Simd: return "avx2";
    default: return "auto";
  }
}

}  // namespace dsv4
