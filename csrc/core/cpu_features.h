// Run-time CPU feature detection and the kernel-selection policy shared by every dispatcher.
// Levels: the scalar reference, AVX2 (+FMA, F16C), AVX-512 (F, BW, DQ, VL, VNNI on top of AVX2).
// DSV4_FORCE_REF=1 in the environment forces the reference kernels, DSV4_FORCE_AVX2=1 caps the level
// at AVX2 (for debugging, tests and benchmarks: every level gives the same bits).
#pragma once

namespace dsv4 {

// Simd means "the AVX2 kernels" (the name the Python API has always used for them).
enum class Impl { Auto = 0, Ref = 1, Simd = 2, Avx512 = 3 };

bool cpu_has_avx2();         // AVX2 + FMA + F16C, checked once
bool cpu_has_avx512();       // the above + AVX-512 F, BW, DQ, VL and VNNI, checked once
bool force_ref_from_env();   // DSV4_FORCE_REF set to a non-empty value other than "0"
bool force_avx2_from_env();  // DSV4_FORCE_AVX2 likewise
// Resolve Auto to the best level the CPU and the environment allow; asking for a level the CPU lacks
// throws std::runtime_error.
Impl resolve_impl(Impl requested);
// true for every SIMD level (AVX2 kernels are available wherever AVX-512 ones are).
inline bool is_simd(Impl resolved) { return resolved == Impl::Simd || resolved == Impl::Avx512; }
const char* impl_name(Impl impl);

}  // namespace dsv4
