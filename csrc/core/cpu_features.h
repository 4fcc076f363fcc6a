// Run-time CPU feature detection and the kernel-selection policy shared by every dispatcher.
// One arch-neutral set of levels: the scalar reference (every build), AVX2 (+FMA, F16C) and AVX-512 (F, BW, DQ,
// VL, VNNI on top of AVX2) on x86-64, NEON on aarch64 (baseline there; the integer dots also use the dotprod
// instructions where the CPU has them).  Every level gives the same bits.  DSV4_KERNELS=ref|avx2|avx512|neon
// forces a level (one this CPU or build lacks is an error, never a silent fallback); DSV4_FORCE_REF=1 (= ref)
// and DSV4_FORCE_AVX2=1 (caps x86 at avx2) are older aliases.
#pragma once

#include <string>
#include <vector>

namespace dsv4 {

// Simd means "the AVX2 kernels" (the name the Python API has always used for them).
enum class Impl { Auto = 0, Ref = 1, Simd = 2, Avx512 = 3, Neon = 4 };

bool cpu_has_avx2();         // AVX2 + FMA + F16C, checked once (false off x86-64)
bool cpu_has_avx512();       // the above + AVX-512 F, BW, DQ, VL and VNNI, checked once
bool cpu_has_neon();         // an aarch64 build (Advanced SIMD is part of the base architecture there)
bool cpu_has_dotprod();      // aarch64 with the SDOT/UDOT instructions (Linux HWCAP_ASIMDDP, macOS FEAT_DotProd)
bool force_ref_from_env();   // DSV4_FORCE_REF set to a non-empty value other than "0"
bool force_avx2_from_env();  // DSV4_FORCE_AVX2 likewise
// The architecture this library was built for: "x86_64", "aarch64" or "other".
const char* arch_name();
// Levels compiled into this build / usable on this CPU, in the order ref, avx2, avx512, neon.
std::vector<Impl> levels_compiled();
std::vector<Impl> levels_supported();
// Resolve Auto to the level DSV4_KERNELS names, else the best the CPU and the aliases allow; asking (by
// argument or by DSV4_KERNELS) for a level this CPU or build lacks throws std::runtime_error naming the levels
// that are available.
Impl resolve_impl(Impl requested);
// true for the x86 SIMD levels (AVX2 kernels are available wherever AVX-512 ones are).
inline bool is_simd(Impl resolved) { return resolved == Impl::Simd || resolved == Impl::Avx512; }
const char* impl_name(Impl impl);
// "ref", "avx2", "avx512", "neon" -> the level; anything else throws std::invalid_argument.
Impl impl_from_name(const std::string& name);

}  // namespace dsv4
