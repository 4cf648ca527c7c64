// deltagrad's own hot loops, compiled for several instruction sets and chosen once at
// run time from the CPU's features.
//
// The library is built for baseline x86-64 (SSE2) so that its binaries run on any x86-64 CPU; the
// matrix products already pick their kernels by CPU (oneDNN, OpenBLAS).  A loop marked with
// DELTAGRAD_KERNEL_CLONES is compiled by GCC and clang for AVX-512, AVX2 and the baseline, and the
// dynamic loader binds the call to the best version the CPU supports (an ifunc).  Each loop has one
// source, written in plain C++.
//
// Only loops that measurably gain are marked.  In the MLP training step that is the bias
// gradient's column sum (about 1.6 times faster with AVX-512 than with SSE2 at batch 1024); relu's
// forward and backward loops were tried and gained under 10%: they are bound by memory, and stay
// in autodiff/ops/elementwise.cpp with the other element-wise rules.
//
// No loop here may reassociate floating-point arithmetic: a column sum adds the rows in order, so
// every version gives bit-identical results and only the speed differs.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__) && \
    !defined(DELTAGRAD_NO_KERNEL_CLONES)
#define DELTAGRAD_KERNEL_CLONES [[gnu::target_clones("avx512f", "avx2", "default")]]
#define DELTAGRAD_HAVE_KERNEL_CLONES 1
#else
#define DELTAGRAD_KERNEL_CLONES
#define DELTAGRAD_HAVE_KERNEL_CLONES 0
#endif

namespace ad::backend::kernels {

/// db[j] += Σ_r g[r·cols + j] for columns j0 <= j < j1, the rows added in order r = 0, 1, ...:
/// the bias gradient of a linear layer, g being the [rows, cols] adjoint of its output.
void add_column_sums(const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     float* db);
void add_column_sums(const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     double* db);

/// The version the loops above run here: "avx512f", "avx2" or "sse2" (the baseline; also on
/// compilers or platforms without run-time dispatch).  The same choice as the loader's.
const char* isa();

}  // namespace ad::backend::kernels
