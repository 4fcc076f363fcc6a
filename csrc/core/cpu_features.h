// Run-time CPU feature detection and the kernel-selection policy shared by every dispatcher.
// DSV4_FORCE_REF=1 in the environment forces the scalar reference kernels (for debugging and tests).
#pragma once

namespace dsv4 {

enum class Impl { Auto = 0, Ref = 1, Simd = 2 };

bool cpu_has_avx2();          // AVX2 + FMA + F16C, checked once
bool force_ref_from_env();    // DSV4_FORCE_REF set to a non-empty value other than "0"
// Resolve Auto to Ref or Simd; Simd on a CPU without AVX2 throws std::runtime_error.
Impl resolve_impl(Impl requested);
const char* impl_name(Impl impl);

}  // namespace dsv4
