// deltagrad's own hot element-wise loops, compiled for several instruction sets and chosen once at
// run time from the CPU's features.
//
// The library is built for baseline x86-64 (SSE2) so that its binaries run on any x86-64 CPU; the
// matrix products already pick their kernels by CPU (oneDNN, OpenBLAS).  The few loops of the
// training step that run over whole activations (relu forward and backward, the bias gradient's
// column sums) are marked with DELTAGRAD_KERNEL_CLONES: GCC and clang then compile each of them
// for AVX-512, AVX2 and the baseline, and the dynamic loader binds the call to the best version the
// CPU supports (an ifunc).  Each loop has one source, written in plain C++.
//
// None of these loops reassociates floating-point arithmetic: relu is a selection, its backward
// step a selection plus at most one addition per element, and a column sum adds the rows in
// order.  So every version gives bit-identical results; only the speed differs.
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

/// y[i] = max(x[i], 0) as relu defines it (x > 0 ? x : 0) for i < n.
void relu(const float* x, float* y, std::int64_t n);
void relu(const double* x, double* y, std::int64_t n);

/// Relu's backward step over n elements: dx[i] = s or dx[i] += s with s = (x[i] > 0 ? g[i] : 0);
/// `fresh` chooses the assignment (an adjoint not yet written).
void relu_backward(const float* g, const float* x, float* dx, std::int64_t n, bool fresh);
void relu_backward(const double* g, const double* x, double* dx, std::int64_t n, bool fresh);

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
