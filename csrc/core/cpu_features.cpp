// CPU feature detection (GCC/Clang builtins on x86-64, getauxval / sysctl on aarch64) and the level policy.
// Everything else builds the reference path only.
#include "core/cpu_features.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

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

bool cpu_has_neon() {
#if defined(DSV4_AARCH64)
  return true;
#else
  return false;
#endif
}

bool cpu_has_dotprod() {
#if defined(DSV4_AARCH64) && defined(__linux__)
  static const bool has = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
  return has;
#elif defined(DSV4_AARCH64) && defined(__APPLE__)
  static const bool has = [] {
    int v = 0;
    size_t len = sizeof(v);
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, nullptr, 0) == 0 && v != 0;
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

bool supported(Impl i) {
  switch (i) {
    case Impl::Ref:
      return true;
    case Impl::Simd:
      return cpu_has_avx2();
    case Impl::Avx512:
      return cpu_has_avx512();
    case Impl::Neon:
      return cpu_has_neon();
    default:
      return false;
  }
}

std::string names(const std::vector<Impl>& v) {
  std::string s;
  for (Impl i : v) s += (s.empty() ? "" : ", ") + std::string(impl_name(i));
  return s;
}

// The level `i`, or an error naming what was asked for (`how`), this machine and the levels it has.
Impl require(Impl i, const std::string& how) {
  if (supported(i)) return i;
  std::string why = " (this build is for " + std::string(arch_name());
  if (i == Impl::Simd) why += "; AVX2 needs AVX2, FMA and F16C";
  if (i == Impl::Avx512) why += "; AVX-512 needs AVX-512 F, BW, DQ, VL and VNNI";
  throw std::runtime_error(how + " asks for the '" + impl_name(i) + "' kernels, which this CPU or build lacks" + why +
                           "); levels available here: " + names(levels_supported()));
}
}  // namespace

bool force_ref_from_env() { return env_flag("DSV4_FORCE_REF"); }
bool force_avx2_from_env() { return env_flag("DSV4_FORCE_AVX2"); }

const char* arch_name() {
#if defined(DSV4_X86)
  return "x86_64";
#elif defined(DSV4_AARCH64)
  return "aarch64";
#else
  return "other";
#endif
}

std::vector<Impl> levels_compiled() {
#if defined(DSV4_X86)
  return {Impl::Ref, Impl::Simd, Impl::Avx512};
#elif defined(DSV4_AARCH64)
  return {Impl::Ref, Impl::Neon};
#else
  return {Impl::Ref};
#endif
}

std::vector<Impl> levels_supported() {
  std::vector<Impl> out;
  for (Impl i : levels_compiled())
    if (supported(i)) out.push_back(i);
  return out;
}

Impl impl_from_name(const std::string& name) {
  for (Impl i : {Impl::Ref, Impl::Simd, Impl::Avx512, Impl::Neon})
    if (name == impl_name(i)) return i;
  throw std::invalid_argument("unknown kernel level '" + name + "' (the levels are ref, avx2, avx512, neon)");
}

Impl resolve_impl(Impl requested) {
  if (requested != Impl::Auto) return require(requested, "the caller");
  const char* forced = std::getenv("DSV4_KERNELS");
  if (forced != nullptr && forced[0] != '\0') {
    Impl i;
    try {
      i = impl_from_name(forced);
    } catch (const std::invalid_argument&) {
      throw std::runtime_error("DSV4_KERNELS='" + std::string(forced) +
                               "' is not a kernel level; use one of: " + names(levels_supported()));
    }
    return require(i, "DSV4_KERNELS=" + std::string(forced));
  }
  if (force_ref_from_env()) return Impl::Ref;
  if (cpu_has_neon()) return Impl::Neon;
  if (!cpu_has_avx2()) return Impl::Ref;
  return (cpu_has_avx512() && !force_avx2_from_env()) ? Impl::Avx512 : Impl::Simd;
}

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::Ref:
      return "ref";
    case Impl::Simd:
      return "avx2";
    case Impl::Avx512:
      return "avx512";
    case Impl::Neon:
      return "neon";
    default:
      return "auto";
  }
}

}  // namespace dsv4
