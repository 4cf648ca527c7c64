// deltagrad's own hot loops, compiled for several instruction sets and chosen once at run time from
// the CPU's features.
//
// The library is built for baseline x86-64 (SSE2) so that its binaries run on any x86-64 CPU; the
// matrix products already pick their kernels by CPU (oneDNN, OpenBLAS).  A loop here has one source,
// a plain C++ template, compiled twice: for AVX2 (`[[gnu::target("avx2")]]`) and for the baseline.
// The first call asks the CPU (__builtin_cpu_supports, which also checks that the OS saves the wide
// registers) and every call then runs the AVX2 version where it can.  (GCC's and clang's
// target_clones would do the same through an ifunc, but clang 14 mis-compiles calls to a cloned
// function from another source file.)
//
// Only loops that measurably gain are here.  In the MLP training step that is the bias gradient's
// column sum: a third less time with AVX2 than with SSE2.  An AVX-512 version (512-bit vectors)
// was slower than the AVX2 one on an AVX-512 Xeon, and relu's forward and backward loops gained
// under 10% (bound by memory), so neither is here.
//
// No loop here may reassociate floating-point arithmetic: a column sum adds the rows in order, so
// every version gives bit-identical results and only the speed differs.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(DELTAGRAD_NO_KERNEL_DISPATCH)
#define DELTAGRAD_KERNEL_DISPATCH 1
#else
#define DELTAGRAD_KERNEL_DISPATCH 0
#endif

namespace ad::backend::kernels {

/// The versions of the loops.
enum class Isa { sse2, avx2 };

/// "sse2" or "avx2".
const char* name(Isa isa);

/// Whether this CPU (and OS) can run version `isa`; sse2 always (the baseline, and the only
/// version on compilers or platforms without dispatch).
bool supported(Isa isa);

/// The version the loops run here: avx2 where the CPU has it, chosen on first use.
Isa chosen();

/// name(chosen()).
const char* isa();

/// db[j] += Σ_r g[r·cols + j] for columns j0 <= j < j1, the rows added in order r = 0, 1, ...:
/// the bias gradient of a linear layer, g being the [rows, cols] adjoint of its output.
void add_column_sums(const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     float* db);
void add_column_sums(const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     double* db);

/// The same with a given version, which must be supported() (for tests and benchmarks).
void add_column_sums(Isa isa, const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                     std::int64_t j1, float* db);
void add_column_sums(Isa isa, const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                     std::int64_t j1, double* db);

}  // namespace ad::backend::kernels
