// deltagrad's own loops compiled per instruction set (autodiff/backend/kernels.hpp): the version the
// CPU runs against plain loops written here, bit for bit, and the name it reports.
//
// Why bit for bit: none of these loops reassociates or contracts floating-point arithmetic.  relu
// selects, its backward step selects and adds once per element, and a column sum adds the rows of
// each column in row order.  Every element of the result is therefore the same sequence of IEEE
// operations in any version, and the inputs below are chosen so that any other order of the sums
// (lanes summed separately, then combined) would change the result.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/backend/kernels.hpp"
#include "autodiff/blas.hpp"

namespace {

namespace kernels = ad::backend::kernels;

/// Values of very different magnitudes and signs, with zeros of both signs, infinities and NaNs
/// among them: relu's edge cases, and sums whose rounding depends on the order of the additions.
template <class T>
std::vector<T> awkward(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::uniform_int_distribution<int> kind(0, 19), exponent(-30, 30);
  std::vector<T> v(n);
  for (auto& x : v) {
    switch (kind(gen)) {
      case 0: x = T(0); break;
      case 1: x = -T(0); break;
      case 2: x = std::numeric_limits<T>::infinity(); break;
      case 3: x = -std::numeric_limits<T>::infinity(); break;
      case 4: x = std::numeric_limits<T>::quiet_NaN(); break;
      default: x = static_cast<T>(std::ldexp(u(gen), exponent(gen)));
    }
  }
  return v;
}

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

// Lengths around every vector width (2, 4, 8, 16 elements) and the loops' remainders; start
// offsets that leave the data unaligned.
const std::int64_t lengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257, 1031};

template <class T>
void check_relu() {
  for (const std::int64_t n : lengths) {
    for (const std::int64_t off : {0, 1, 3}) {
      const auto x = awkward<T>(static_cast<std::size_t>(n + off), static_cast<std::uint32_t>(n * 7 + off));
      const auto g = awkward<T>(static_cast<std::size_t>(n + off), static_cast<std::uint32_t>(n * 7 + off + 1));
      const auto dx0 = awkward<T>(static_cast<std::size_t>(n + off), static_cast<std::uint32_t>(n * 7 + off + 2));
      CAPTURE(n);
      CAPTURE(off);
      // Forward.
      std::vector<T> y(x.size(), T(5)), y_ref(x.size(), T(5));
      kernels::relu(x.data() + off, y.data() + off, n);
      for (std::int64_t i = off; i < off + n; ++i) y_ref[i] = x[i] > T(0) ? x[i] : T(0);
      CHECK(same_bits(y, y_ref));
      // Backward, into a fresh adjoint and added to one.
      for (const bool fresh : {true, false}) {
        CAPTURE(fresh);
        std::vector<T> dx = dx0, dx_ref = dx0;
        kernels::relu_backward(g.data() + off, x.data() + off, dx.data() + off, n, fresh);
        for (std::int64_t i = off; i < off + n; ++i) {
          const T s = x[i] > T(0) ? g[i] : T(0);
          dx_ref[i] = fresh ? s : dx_ref[i] + s;
        }
        CHECK(same_bits(dx, dx_ref));
      }
    }
  }
}

template <class T>
void check_column_sums() {
  for (const std::int64_t rows : {0, 1, 2, 5, 16, 129}) {
    for (const std::int64_t cols : {1, 3, 10, 17, 64, 256, 300}) {
      const auto g = finite<T>(static_cast<std::size_t>(rows * cols), static_cast<std::uint32_t>(rows * 1000 + cols));
      const auto db0 = finite<T>(static_cast<std::size_t>(cols), static_cast<std::uint32_t>(cols));
      // The whole row and ranges of columns, as parallel_for hands them to the threads.
      const std::pair<std::int64_t, std::int64_t> ranges[] = {{0, cols}, {cols / 3, cols}, {1, cols - 1}, {0, cols / 2}};
      for (const auto& [j0, j1] : ranges) {
        if (j0 > j1) continue;
        CAPTURE(rows);
        CAPTURE(cols);
        CAPTURE(j0);
        CAPTURE(j1);
        std::vector<T> db = db0, db_ref = db0;
        kernels::add_column_sums(g.data(), rows, cols, j0, j1, db.data());
        for (std::int64_t j = j0; j < j1; ++j)
          for (std::int64_t r = 0; r < rows; ++r) db_ref[j] += g[r * cols + j];
        CHECK(same_bits(db, db_ref));
      }
    }
  }
}

}  // namespace

TEST_CASE("backend: relu's dispatched loops equal plain loops bit for bit, float32 and float64") {
  INFO("loops_isa=", kernels::isa());
  check_relu<float>();
  check_relu<double>();
}

TEST_CASE("backend: the dispatched column sums equal plain row-order sums bit for bit, float32 and float64") {
  INFO("loops_isa=", kernels::isa());
  check_column_sums<float>();
  check_column_sums<double>();
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
  CHECK((isa == "avx512f" || isa == "avx2" || isa == "sse2"));
#if DELTAGRAD_HAVE_KERNEL_CLONES
  __builtin_cpu_init();
  CHECK(isa == (__builtin_cpu_supports("avx512f") ? "avx512f" : __builtin_cpu_supports("avx2") ? "avx2" : "sse2"));
#else
  CHECK(isa == "sse2");
#endif
  const ad::blas::Info info = ad::blas::info();
  CHECK(info.loops_isa == isa);
  CHECK(fmt::format("{}", info).find(" loops_isa=" + isa + " ") != std::string::npos);
}
