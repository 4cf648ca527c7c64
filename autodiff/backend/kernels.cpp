#include "autodiff/backend/kernels.hpp"

namespace ad::backend::kernels {

namespace {

template <class T>
void column_sums_loop(const T* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1, T* db) {
  // Row by row, so that the inner loop runs along contiguous columns and each column's sum keeps
  // the row order at any vector width.
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* row = g + r * cols;
    for (std::int64_t j = j0; j < j1; ++j) db[j] += row[j];
  }
}

}  // namespace

DELTAGRAD_KERNEL_CLONES void add_column_sums(const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                                             std::int64_t j1, float* db) {
  column_sums_loop(g, rows, cols, j0, j1, db);
}
DELTAGRAD_KERNEL_CLONES void add_column_sums(const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                                             std::int64_t j1, double* db) {
  column_sums_loop(g, rows, cols, j0, j1, db);
}

const char* isa() {
#if DELTAGRAD_HAVE_KERNEL_CLONES
  // The order of the clones' priorities: the widest the CPU (and the OS, which must save the
  // registers) supports.
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2")) return "avx2";
#endif
  return "sse2";
}

}  // namespace ad::backend::kernels
