// deltagrad's own loops compiled per instruction set (autodiff/backend/kernels.hpp): every version
// this CPU can run, and the one it chooses, against plain loops written here, bit for bit; and the
// name it reports.
//
// Why bit for bit: a column sum adds the rows of each column in row order, with nothing
// reassociated or contracted, so every element of the result is the same sequence of IEEE additions
// in any version; the inputs below are chosen so that another order of the sums (lanes summed
// separately, then combined) would change the result.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "autodiff/backend/kernels.hpp"
#include "autodiff/blas.hpp"

namespace {

namespace kernels = ad::backend::kernels;

/// Finite values of very different magnitudes (a column sum of these depends on the order).
template <class T>
std::vector<T> finite(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> exponent(-20, 20);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(std::ldexp(u(gen), exponent(gen)));
  return v;
}

/// Whether a and b hold the same bits (NaN equals NaN, -0 differs from +0).
template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

template <class T>
void check_column_sums(const kernels::Isa* isa) {
  for (const std::int64_t rows : {0, 1, 2, 5, 16, 129}) {
    for (const std::int64_t cols : {1, 3, 10, 17, 64, 256, 300}) {
      const auto n = static_cast<std::size_t>(rows * cols);
      const auto g = finite<T>(n, static_cast<std::uint32_t>(rows * 1000 + cols));
      const auto db0 = finite<T>(static_cast<std::size_t>(cols), static_cast<std::uint32_t>(cols));
      // The whole row and ranges of columns, as parallel_for hands them to the threads.
      const std::pair<std::int64_t, std::int64_t> ranges[] = {{0, cols}, {cols / 3, cols}, {1, cols - 1}, {0, cols / 2}};
      for (const auto& range : ranges) {
        const std::int64_t j0 = range.first, j1 = range.second;  // (clang 14 cannot capture a binding)
        if (j0 > j1) continue;
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(j0);
        CAPTURE(j1);
        std::vector<T> db = db0, db_ref = db0;
        if (isa) kernels::add_column_sums(*isa, g.data(), rows, cols, j0, j1, db.data());
        else kernels::add_column_sums(g.data(), rows, cols, j0, j1, db.data());
        for (std::int64_t j = j0; j < j1; ++j)
          for (std::int64_t r = 0; r < rows; ++r) db_ref[j] += g[r * cols + j];
        CHECK(same_bits(db, db_ref));
      }
    }
  }
}

}  // namespace

TEST_CASE("backend: the dispatched column sums equal plain row-order sums bit for bit, float32 and float64") {
  INFO("loops_isa=", std::string(kernels::isa()));
  check_column_sums<float>(nullptr);
  check_column_sums<double>(nullptr);
  int versions = 0;
  for (const kernels::Isa isa : {kernels::Isa::sse2, kernels::Isa::avx2}) {
    if (!kernels::supported(isa)) continue;
    INFO("version ", std::string(kernels::name(isa)));
    check_column_sums<float>(&isa);
    check_column_sums<double>(&isa);
    ++versions;
  }
  CHECK(versions >= 1);  // the baseline runs everywhere
  CHECK(kernels::supported(kernels::chosen()));
}

TEST_CASE("backend: the order of a column sum changes its float32 rounding with these inputs") {
  // What makes the bit-for-bit checks above able to fail: summing the same column in two halves
  // (as two vector lanes would) rounds differently from summing it in row order.
  const std::int64_t rows = 129, cols = 1;
  const auto g = finite<float>(static_cast<std::size_t>(rows * cols), static_cast<std::uint32_t>(rows * 1000 + cols));
  float in_order = 0, even = 0, odd = 0;
  for (std::int64_t r = 0; r < rows; ++r) in_order += g[static_cast<std::size_t>(r)];
  for (std::int64_t r = 0; r < rows; r += 2) even += g[static_cast<std::size_t>(r)];
  for (std::int64_t r = 1; r < rows; r += 2) odd += g[static_cast<std::size_t>(r)];
  CHECK(in_order != even + odd);
}

TEST_CASE("backend: loops_isa names the version of the loops this CPU runs, in info()") {
  const std::string isa = kernels::isa();
  CHECK((isa == "avx2" || isa == "sse2"));
#if DELTAGRAD_KERNEL_DISPATCH
  __builtin_cpu_init();
  CHECK(isa == (__builtin_cpu_supports("avx2") ? "avx2" : "sse2"));
#else
  CHECK(isa == "sse2");
#endif
  const ad::blas::Info info = ad::blas::info();
  CHECK(info.loops_isa == isa);
  CHECK(fmt::format("{}", info).find(" loops_isa=" + isa + " ") != std::string::npos);
}
