// What a program should say about its BLAS on its first line, and when to warn.
//
// OpenBLAS picks a kernel set ("core") per CPU; OPENBLAS_CORETYPE overrides it.  deltagrad keeps a
// user's setting (see autodiff/blas.hpp), so a setting made for another machine, or left over in a
// shell profile, can select kernels for an older instruction set than the CPU has: Haswell's AVX2
// kernels on an AVX-512 CPU run matrix products about half as fast.  summary_line() names the core
// in use and adds a warning in that case; nn::fit prints it first.
#pragma once

#include <string>
#include <string_view>

#include "autodiff/blas.hpp"

namespace ad::blas {

/// The widest vector instruction set a CPU has, or an OpenBLAS core's kernels are written for.
enum class Simd { unknown, sse, avx, avx2, avx512 };

const char* to_string(Simd s);

/// This CPU's (AVX-512 counts when F, CD, BW, DQ and VL are all there, as OpenBLAS's SkylakeX
/// kernels need; AVX2 with FMA).
Simd cpu_simd();

/// What the kernels of an OpenBLAS core use ("SkylakeX" -> avx512, "Haswell" -> avx2,
/// "Sandybridge" -> avx, "Prescott" -> sse; any case); unknown for a name not in the list.
Simd core_simd(std::string_view core);

/// "" when the core in use matches the CPU (or either is unknown); otherwise one line starting
/// "warning:" that says which kernels run, what the CPU supports, who chose them (naming
/// OPENBLAS_CORETYPE when the user did) and how to get the faster ones.
std::string slow_core_warning(const Info& info, Simd cpu);

/// "BLAS: OpenBLAS 0.3.21, core SkylakeX (chosen by deltagrad for this AVX-512 CPU)", followed by
/// "\n" and slow_core_warning() when that is not empty.  Loads the BLAS (see load()).
std::string summary_line();

}  // namespace ad::blas
