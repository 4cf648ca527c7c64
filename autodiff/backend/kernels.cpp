#include "autodiff/backend/kernels.hpp"

namespace ad::backend::kernels {

namespace {

// ---- the loops: one source each, inlined into every version below ------------------------------------

template <class T>
[[gnu::always_inline]] inline void column_sums_loop(const T* g, std::int64_t rows, std::int64_t cols,
                                                    std::int64_t j0, std::int64_t j1, T* db) {
  // The inner loops run along contiguous columns, so each column's sum keeps the row order at any
  // vector width.  Four rows a pass, added to db[j] one after the other (the same rounding as row
  // by row), read and write db a quarter as often.
  std::int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const T* g0 = g + r * cols;
    const T* g1 = g0 + cols;
    const T* g2 = g1 + cols;
    const T* g3 = g2 + cols;
    for (std::int64_t j = j0; j < j1; ++j) db[j] = (((db[j] + g0[j]) + g1[j]) + g2[j]) + g3[j];
  }
  for (; r < rows; ++r) {
    const T* row = g + r * cols;
    for (std::int64_t j = j0; j < j1; ++j) db[j] += row[j];
  }
}

// ---- the versions -------------------------------------------------------------------------------------

template <class T>
using ColumnSums = void (*)(const T*, std::int64_t, std::int64_t, std::int64_t, std::int64_t, T*);

template <class T>
void column_sums_sse2(const T* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1, T* db) {
  column_sums_loop(g, rows, cols, j0, j1, db);
}

#if DELTAGRAD_KERNEL_DISPATCH
template <class T>
[[gnu::target("avx2")]] void column_sums_avx2(const T* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                                              std::int64_t j1, T* db) {
  column_sums_loop(g, rows, cols, j0, j1, db);
}

#endif

template <class T>
ColumnSums<T> column_sums(Isa isa) {
#if DELTAGRAD_KERNEL_DISPATCH
  if (isa == Isa::avx2) return column_sums_avx2<T>;
#endif
  (void)isa;
  return column_sums_sse2<T>;
}

Isa detect() {
#if DELTAGRAD_KERNEL_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2")) return Isa::avx2;
#endif
  return Isa::sse2;
}

}  // namespace

const char* name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::sse2: break;
  }
  return "sse2";
}

bool supported(Isa isa) {
  return isa == Isa::sse2 || isa == chosen();
}

Isa chosen() {
  static const Isa isa = detect();
  return isa;
}

const char* isa() { return name(chosen()); }

void add_column_sums(const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     float* db) {
  static const ColumnSums<float> f = column_sums<float>(chosen());
  f(g, rows, cols, j0, j1, db);
}
void add_column_sums(const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0, std::int64_t j1,
                     double* db) {
  static const ColumnSums<double> f = column_sums<double>(chosen());
  f(g, rows, cols, j0, j1, db);
}

void add_column_sums(Isa isa, const float* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                     std::int64_t j1, float* db) {
  column_sums<float>(isa)(g, rows, cols, j0, j1, db);
}
void add_column_sums(Isa isa, const double* g, std::int64_t rows, std::int64_t cols, std::int64_t j0,
                     std::int64_t j1, double* db) {
  column_sums<double>(isa)(g, rows, cols, j0, j1, db);
}

}  // namespace ad::backend::kernels
