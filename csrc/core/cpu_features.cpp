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
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(DSV4_X86) && (defined(__GNUC__) || defined(__clang__))
  static const bool has = [] {
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
  }();
  return has;
#else
  return false;
#endif
}

namespace {
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}
}  // namespace

bool force_ref_from_env() { return env_flag("DSV4_FORCE_REF"); }
bool force_avx2_from_env() { return env_flag("DSV4_FORCE_AVX2"); }

Impl resolve_impl(Impl requested) {
  switch (requested) {
    case Impl::Ref:
      return Impl::Ref;
    case Impl::Simd:
      if (!cpu_has_avx2()) throw std::runtime_error("AVX2 kernels requested but this CPU lacks AVX2/FMA/F16C");
      return Impl::Simd;
    case Impl::Avx512:
      if (!cpu_has_avx512())
        throw std::runtime_error("AVX-512 kernels requested but this CPU lacks AVX-512 F/BW/DQ/VL/VNNI");
      return Impl::Avx512;
    case Impl::Auto:
    default:
      if (!cpu_has_avx2() || force_ref_from_env()) return Impl::Ref;
      return (cpu_has_avx512() && !force_avx2_from_env()) ? Impl::Avx512 : Impl::Simd;
  }
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Ref:
      return "ref";
    case Impl::Simd:
      return "avx2";
    case Impl::Avx512:
      return "avx512";
    default:
      return "auto";
  }
}

}  // namespace dsv4
