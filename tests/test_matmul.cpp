// matmul through BLAS: values against a plain triple loop, Jacobians by the shared checker
// (jacobian.hpp: all four transpose combinations, batched and shared operands, size-1 and empty
// dimensions), f32 against f64, error messages, and the BLAS library that was loaded.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/blas.hpp"
#include "jacobian.hpp"

namespace {

template <ad::Element T>
ad::Array<T> random_array(const ad::Shape& shape, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  ad::Array<T> a(shape);
  for (auto& v : a.values()) v = static_cast<T>(u(rng));
  return a;
}

/// Element (i, j) of op(x) for matrix `b` of a 2-D or 3-D array (b ignored for 2-D).
double op_at(const ad::Array<double>& x, bool t, std::int64_t b, std::int64_t i, std::int64_t j) {
  const std::size_t r = x.rank();
  const std::int64_t rows = x.dim(r - 2), cols = x.dim(r - 1);
  const std::int64_t base = r == 3 ? b * rows * cols : 0;
  return t ? x[base + j * cols + i] : x[base + i * cols + j];
}

/// op(a)·op(b) by the definition, in the layout matmul documents.
std::vector<double> reference_product(const ad::Array<double>& a, const ad::Array<double>& b, bool ta, bool tb,
                                      std::int64_t& batch, std::int64_t& m, std::int64_t& n) {
  const std::size_t ra = a.rank();
  batch = ra == 3 ? a.dim(0) : b.rank() == 3 ? b.dim(0) : 1;
  m = ta ? a.dim(ra - 1) : a.dim(ra - 2);
  const std::int64_t k = ta ? a.dim(ra - 2) : a.dim(ra - 1);
  n = tb ? b.dim(b.rank() - 2) : b.dim(b.rank() - 1);
  std::vector<double> c(static_cast<std::size_t>(batch * m * n), 0.0);
  for (std::int64_t p = 0; p < batch; ++p)
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t q = 0; q < k; ++q) s += op_at(a, ta, p, i, q) * op_at(b, tb, p, q, j);
        c[static_cast<std::size_t>((p * m + i) * n + j)] = s;
      }
  return c;
}

/// Value against the triple loop, then the Jacobian with respect to both operands.
void check_matmul(const ad::Shape& sa, const ad::Shape& sb, bool ta, bool tb, std::mt19937& rng) {
  INFO("a ", ad::to_string(sa), ta ? "^T" : "", ", b ", ad::to_string(sb), tb ? "^T" : "");
  const auto a = random_array<double>(sa, rng), b = random_array<double>(sb, rng);
  std::int64_t batch = 0, m = 0, n = 0;
  const std::vector<double> want = reference_product(a, b, ta, tb, batch, m, n);
  ad::Tape tape;
  const ad::Tensor c = matmul(tape.leaf(a), tape.leaf(b), ta, tb);
  const ad::Shape expected_shape = sa.size() == 3 || sb.size() == 3 ? ad::Shape{batch, m, n} : ad::Shape{m, n};
  REQUIRE(c.shape() == expected_shape);
  const auto got = c.value().as<double>();
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-14));
  jacobian::check([&](ad::Tape&, std::span<const ad::Tensor> x) { return matmul(x[0], x[1], ta, tb); }, {a, b});
}

/// Stored shape of an operand that is read as rows×cols (optionally transposed, optionally batched).
ad::Shape stored(std::int64_t batch, std::int64_t rows, std::int64_t cols, bool t) {
  ad::Shape s;
  if (batch > 0) s.push_back(batch);
  s.push_back(t ? cols : rows);
  s.push_back(t ? rows : cols);
  return s;
}

}  // namespace

TEST_CASE("matmul: 2-D values and Jacobians in all four transpose combinations, non-square") {
  std::mt19937 rng(11);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) check_matmul(stored(0, 3, 4, ta), stored(0, 4, 5, tb), ta, tb, rng);
}

TEST_CASE("matmul: size-1 dimensions (row, column, inner, outer products)") {
  std::mt19937 rng(12);
  const std::int64_t sizes[][3] = {{1, 4, 3}, {3, 4, 1}, {3, 1, 4}, {1, 1, 1}, {1, 5, 1}};
  for (const auto& s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true}) check_matmul(stored(0, s[0], s[1], ta), stored(0, s[1], s[2], tb), ta, tb, rng);
}

TEST_CASE("matmul: batched 3-D with 3-D, 3-D with a shared 2-D, 2-D shared with 3-D") {
  std::mt19937 rng(13);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_matmul(stored(3, 2, 4, ta), stored(3, 4, 3, tb), ta, tb, rng);
      check_matmul(stored(3, 2, 4, ta), stored(0, 4, 3, tb), ta, tb, rng);  // B shared
      check_matmul(stored(0, 2, 4, ta), stored(3, 4, 3, tb), ta, tb, rng);  // A shared
      check_matmul(stored(1, 3, 2, ta), stored(1, 2, 1, tb), ta, tb, rng);  // batch of one
    }
}

TEST_CASE("matmul: the same operand on both sides adds both contributions (x·xᵀ, xᵀ·x)") {
  const auto x = jacobian::random({3, 4}, 14);
  jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return matmul(v[0], v[0], false, true); }, {x});
  jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return matmul(v[0], v[0], true, false); }, {x});
  const auto xb = jacobian::random({2, 3, 4}, 15);
  jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return matmul(v[0], v[0], false, true); }, {xb});
}

TEST_CASE("matmul: adds into adjoints that other uses of the operand also feed") {
  // x feeds the product and the element-wise factor; W feeds two products.  Each rule must add
  // to what the others put there (BLAS beta = 1), not overwrite it.
  jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return matmul(v[0], v[1]) * v[0]; },
                  {jacobian::random({3, 3}, 16), jacobian::random({3, 3}, 17)});
  jacobian::check(
      [](ad::Tape&, std::span<const ad::Tensor> v) { return matmul(matmul(v[0], v[1]), v[1], false, true); },
      {jacobian::random({2, 4}, 18), jacobian::random({4, 3}, 19)});
  jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return tanh(matmul(v[0], v[1], true, false)); },
                  {jacobian::random({2, 4, 3}, 20), jacobian::random({4, 2}, 21)});
}

TEST_CASE("matmul: empty dimensions give empty or zero results and zero gradients") {
  ad::Tape tape;
  const ad::Tensor a = tape.leaf(ad::Array<double>::full({3, 0}, 1.0));
  const ad::Tensor b = tape.leaf(ad::Array<double>::full({0, 2}, 1.0));
  const ad::Tensor c = matmul(a, b);  // k = 0: a 3×2 matrix of zeros
  REQUIRE(c.shape() == ad::Shape{3, 2});
  for (double v : c.value().as<double>()) CHECK(v == 0.0);
  const ad::Tensor e = matmul(b, a, true, true);  // [2,0]·[0,3] read transposed: [2,3] of zeros
  REQUIRE(e.shape() == ad::Shape{2, 3});
  for (double v : e.value().as<double>()) CHECK(v == 0.0);
  const ad::Tensor w = tape.leaf(ad::Array<double>::full({4, 3}, 2.0));
  const ad::Tensor z = matmul(tape.leaf(ad::Array<double>({0, 4})), w);  // m = 0
  CHECK(z.shape() == ad::Shape{0, 3});
  ad::Gradients g = tape.vjp(c, ad::Array<double>::full(c.shape(), 1.0).view());
  CHECK(g[a].size() == 0);
  CHECK(g[b].size() == 0);
}

TEST_CASE("matmul: a shared operand against an empty batch gets a zero adjoint, not stale memory") {
  // The tape's gradient storage is reused between sweeps, so an earlier sweep leaves large values
  // in the memory a later adjoint is carved from.  With a batch of 0 there is no product to write
  // the shared operand's adjoint, which must still read as zeros.
  ad::Tape tape;
  const auto dirty = [&] {  // a sweep that fills the gradient storage with 2e6
    const ad::Tensor u = tape.leaf(ad::Array<double>::full({4, 4}, 1e6));
    (void)tape.gradient(sum(u * u));
  };
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      dirty();
      {
        const ad::Tensor w = tape.leaf(ad::Array<double>::full(stored(0, 2, 3, ta), 1.0));
        const ad::Tensor xs = tape.leaf(ad::Array<double>(ad::Shape{0, tb ? 4 : 3, tb ? 3 : 4}));
        const ad::Tensor c = matmul(w, xs, ta, tb);  // shared [2,3] with a batch of 0
        REQUIRE(c.shape() == ad::Shape{0, 2, 4});
        const ad::Gradients g = tape.gradient(sum(c));
        for (double v : g[w].as<double>()) CHECK(v == 0.0);
      }
      dirty();
      {
        const ad::Tensor xs = tape.leaf(ad::Array<double>(ad::Shape{0, ta ? 3 : 2, ta ? 2 : 3}));
        const ad::Tensor w = tape.leaf(ad::Array<double>::full(stored(0, 3, 4, tb), 1.0));
        const ad::Tensor c = matmul(xs, w, ta, tb);  // a batch of 0 with shared [3,4]
        REQUIRE(c.shape() == ad::Shape{0, 2, 4});
        const ad::Gradients g = tape.gradient(sum(c));
        for (double v : g[w].as<double>()) CHECK(v == 0.0);
      }
    }
}

TEST_CASE("matmul: f32 agrees with f64 within the float rounding bound, forward and backward") {
  std::mt19937 rng(15);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const std::int64_t m = 17, k = 50, n = 23;
      const auto a32 = random_array<float>(stored(0, m, k, ta), rng);
      const auto b32 = random_array<float>(stored(0, k, n, tb), rng);
      const auto g32 = random_array<float>({m, n}, rng);
      ad::Tape t32, t64;
      const ad::Tensor a = t32.leaf(a32), b = t32.leaf(b32);
      const ad::Tensor A = t64.leaf(ad::to_array<double>(a32.view())), B = t64.leaf(ad::to_array<double>(b32.view()));
      const ad::Tensor c = matmul(a, b, ta, tb), C = matmul(A, B, ta, tb);
      REQUIRE(c.dtype() == ad::DType::f32);
      // Seed both with the same upstream adjoint G (exactly representable in both types).
      ad::Gradients g = t32.vjp(c, g32.view());
      ad::Gradients G = t64.vjp(C, g32.view());  // the same values, converted to double
      // Each compared element is a sum of `terms` products of numbers in [-1, 1]: a float sum of
      // that length is within terms·2^-24 / (1 - terms·2^-24) times the sum of |products| <= terms
      // of the exact value; the f64 result is exact to far better than that.
      const auto bound = [](std::int64_t terms) {
        const double u = std::ldexp(1.0, -24), gamma = terms * u / (1 - terms * u);
        return gamma * terms;
      };
      const auto compare = [](std::span<const float> lo, std::span<const double> hi, double tol) {
        REQUIRE(lo.size() == hi.size());
        double worst = 0;
        for (std::size_t i = 0; i < lo.size(); ++i) worst = std::max(worst, std::abs(double(lo[i]) - hi[i]));
        CHECK(worst <= tol);
        CHECK(worst > 0.0);  // the two really were computed in different precisions
      };
      compare(c.value().as<float>(), C.value().as<double>(), bound(k));
      compare(g[a].as<float>(), G[A].as<double>(), bound(n));
      compare(g[b].as<float>(), G[B].as<double>(), bound(m));
    }
}

TEST_CASE("matmul: shape and dtype errors name the operands and throw before recording") {
  ad::Tape tape;
  const ad::Tensor x = tape.name(tape.constant(ad::Array<float>({64, 784})), "x");
  const ad::Tensor w1 = tape.name(tape.leaf(ad::Array<float>({100, 10})), "W1");
  const std::size_t before = tape.size();
  CHECK_THROWS_WITH_AS(matmul(x, w1), "matmul: inner dimensions differ: x is f32[64,784], W1 is f32[100,10] "
                                      "(784 columns in x, 100 rows in W1)",
                       ad::ShapeError);
  CHECK_THROWS_WITH_AS(matmul(x, w1, false, true), "matmul: inner dimensions differ: x is f32[64,784], W1 is "
                                                   "f32[100,10] (784 columns in x, 10 rows in W1^T)",
                       ad::ShapeError);
  CHECK_THROWS_WITH_AS(matmul(x, w1, true, false), "matmul: inner dimensions differ: x is f32[64,784], W1 is "
                                                   "f32[100,10] (64 columns in x^T, 100 rows in W1)",
                       ad::ShapeError);
  const ad::Tensor v = tape.leaf(ad::Array<float>({784}));
  CHECK_THROWS_WITH_AS(matmul(x, v), "matmul: operands must be 2-D, or 3-D (batched over the first dimension): "
                                     "x is f32[64,784], rhs is f32[784]",
                       ad::ShapeError);
  const ad::Tensor p = tape.leaf(ad::Array<float>({2, 3, 4})), q = tape.leaf(ad::Array<float>({5, 4, 3}));
  CHECK_THROWS_WITH_AS(matmul(p, q), "matmul: batch sizes differ: lhs is f32[2,3,4], rhs is f32[5,4,3]",
                       ad::ShapeError);
  const ad::Tensor r4 = tape.leaf(ad::Array<float>({1, 2, 3, 4}));
  CHECK_THROWS_AS(matmul(r4, q), ad::ShapeError);
  const ad::Tensor d = tape.name(tape.leaf(ad::Array<double>({784, 10})), "W64");
  CHECK_THROWS_WITH_AS(matmul(x, d), "matmul: element types differ: x is f32[64,784], W64 is f64[784,10]",
                       ad::DTypeError);
  CHECK(tape.size() == before + 5);  // only the five leaves above were added; no failed matmul recorded

  ad::Tape other;
  const ad::Tensor y = other.leaf(ad::Array<float>({784, 10}));
  CHECK_THROWS_AS(matmul(x, y), ad::ForeignHandleError);
  CHECK_THROWS_AS(matmul(x, ad::Tensor{}), ad::InvalidArgument);
  tape.clear();
  CHECK_THROWS_AS(matmul(x, w1), ad::StaleHandleError);
}

TEST_CASE("matmul: blas::gemm rejects bad sizes instead of letting BLAS print and skip") {
  float c[4] = {};
  const float a[4] = {1, 2, 3, 4};
  CHECK_THROWS_AS(ad::blas::gemm<float>(false, false, 2, 2, 2, 1.f, a, 1, a, 2, 0.f, c, 2), ad::InvalidArgument);
  CHECK_THROWS_AS(ad::blas::gemm<float>(false, false, -1, 2, 2, 1.f, a, 2, a, 2, 0.f, c, 2), ad::InvalidArgument);
  CHECK_THROWS_AS(ad::blas::gemm<float>(false, false, std::int64_t{1} << 31, 1, 1, 1.f, a, 1, a, 1, 0.f, c, 1),
                  ad::InvalidArgument);
  ad::blas::gemm<float>(false, true, 2, 2, 2, 1.f, a, 2, a, 2, 0.f, c, 2);  // a·aᵀ = [[5,11],[11,25]]
  CHECK(c[0] == 5.f);
  CHECK(c[1] == 11.f);
  CHECK(c[2] == 11.f);
  CHECK(c[3] == 25.f);
}

namespace {

/// The instruction sets for which deltagrad picks OpenBLAS's SkylakeX kernels.
bool cpu_has_avx512() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

}  // namespace

TEST_CASE("matmul: blas::info reports the loaded library and the configuration chosen") {
  const ad::blas::Info info = ad::blas::info();
  INFO(fmt::format("{}", info));
  CHECK(std::filesystem::exists(info.library));
  CHECK(info.library.find("blas") != std::string::npos);
  if (!info.core.empty()) {  // OpenBLAS: its own functions report the kernel set and threads
    CHECK(info.threads >= 1);
    CHECK(info.config.find("OpenBLAS") != std::string::npos);
  }
  // The defaults are set only while the library initialises; the environment is left as found.
  if (info.core_from == "deltagrad") {
    CHECK(info.core == "SkylakeX");
    CHECK(std::getenv("OPENBLAS_CORETYPE") == nullptr);
  }
  if (info.threads_from == "deltagrad") {
    CHECK(info.threads == 1);
    CHECK(std::getenv("OPENBLAS_NUM_THREADS") == nullptr);
  }
  if (info.core_from == "user") CHECK(std::getenv("OPENBLAS_CORETYPE") != nullptr);
  if (cpu_has_avx512() && !info.core.empty() && info.core_from != "user" && info.core_from != "preloaded")
    CHECK(info.core_from == "deltagrad");
  CHECK(&ad::blas::load() == &ad::blas::load());  // loaded once
  CHECK(ad::blas::load().library == info.library);
}

TEST_CASE("matmul: blas::default_settings are deltagrad's choices, minus what the user set") {
  ad::blas::load();  // opened before the environment is changed below
  constexpr const char* names[] = {"OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"};
  std::vector<std::pair<const char*, std::optional<std::string>>> saved;
  for (const char* n : names) {
    const char* v = std::getenv(n);
    saved.emplace_back(n, v ? std::optional<std::string>(v) : std::nullopt);
    ::unsetenv(n);
  }
  const auto lookup = [](const std::vector<ad::blas::Setting>& s, std::string_view name) -> std::string {
    for (const auto& [n, v] : s)
      if (n == name) return v;
    return "(unset)";
  };
  const bool avx512 = cpu_has_avx512();
  const auto none_set = ad::blas::default_settings();
  CHECK(lookup(none_set, "OPENBLAS_CORETYPE") == (avx512 ? "SkylakeX" : "(unset)"));
  CHECK(lookup(none_set, "OPENBLAS_NUM_THREADS") == "1");
  CHECK(none_set.size() == (avx512 ? 2u : 1u));

  ::setenv("OMP_NUM_THREADS", "2", 1);  // any thread variable counts as the user's choice
  CHECK(lookup(ad::blas::default_settings(), "OPENBLAS_NUM_THREADS") == "(unset)");
  ::setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  CHECK(ad::blas::default_settings().empty());

  for (const auto& [n, v] : saved) {
    if (v)
      ::setenv(n, v->c_str(), 1);
    else
      ::unsetenv(n);
  }
}

TEST_CASE("matmul: README layer snippet agrees with the same layer written by broadcasting") {
  std::mt19937 rng(22);
  const auto X = random_array<double>({4, 3}, rng), W = random_array<double>({2, 3}, rng);
  const auto b = random_array<double>({2}, rng);
  const std::int32_t labels[] = {0, 1, 1, 0};
  const auto layer_gradients = [&](bool with_matmul) {
    ad::Tape tape;
    ad::Tensor x = tape.constant(X), w = tape.leaf(W), bias = tape.leaf(b);
    // README: x [4,3] times Wᵀ, with W stored [out, in] = [2,3]: W is read transposed, not copied.
    ad::Tensor z = with_matmul ? matmul(x, w, false, true) + bias
                               : sum(reshape(x, {4, 1, 3}) * reshape(w, {1, 2, 3}), -1) + bias;
    ad::Tensor loss = -mean(pick(log_softmax(z), labels));
    ad::Gradients g = tape.gradient(loss);
    return std::pair{g.array<double>(w), g.array<double>(bias)};
  };
  const auto [dw_mm, db_mm] = layer_gradients(true);
  const auto [dw_bc, db_bc] = layer_gradients(false);
  for (std::int64_t i = 0; i < dw_mm.size(); ++i) CHECK(dw_mm[i] == doctest::Approx(dw_bc[i]).epsilon(1e-12));
  for (std::int64_t i = 0; i < db_mm.size(); ++i) CHECK(db_mm[i] == doctest::Approx(db_bc[i]).epsilon(1e-12));
  for (std::int64_t i = 0; i < dw_mm.size(); ++i) CHECK(dw_mm[i] != 0.0);
}

TEST_CASE("linear: z = x·Wᵀ + b equals matmul plus broadcast bias, with Jacobians in x, W and b") {
  for (const auto& [rows, in, out] : {std::array<std::int64_t, 3>{3, 4, 2}, {1, 5, 3}, {4, 1, 1}}) {
    const auto x = jacobian::random({rows, in}, 31), W = jacobian::random({out, in}, 32), b = jacobian::random({out}, 33);
    ad::Tape tape;
    const ad::Tensor tx = tape.leaf(x), tw = tape.leaf(W), tb = tape.leaf(b);
    const auto fused = linear(tx, tw, tb).value().as<double>();
    const auto composed = (matmul(tx, tw, false, true) + tb).value().as<double>();
    REQUIRE(fused.size() == composed.size());
    for (std::size_t i = 0; i < fused.size(); ++i) CHECK(fused[i] == doctest::Approx(composed[i]).epsilon(1e-15));
    jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return linear(v[0], v[1], v[2]); }, {x, W, b});
    // x also feeds another op: the rule must add to that contribution.
    jacobian::check([](ad::Tape&, std::span<const ad::Tensor> v) { return tanh(linear(v[0], v[1], v[2])) * sum(v[0]); },
                    {x, W, b});
  }
}

TEST_CASE("linear: shape and dtype errors name the operands and record nothing") {
  ad::Tape tape;
  const ad::Tensor x = tape.name(tape.leaf(jacobian::random({2, 3}, 34)), "x");
  const ad::Tensor W = tape.name(tape.leaf(jacobian::random({4, 5}, 35)), "W1");
  const ad::Tensor b = tape.name(tape.leaf(jacobian::random({4}, 36)), "b1");
  const ad::Tensor bf = tape.leaf(ad::Array<float>::full(ad::Shape{4}, 1.0f));
  const std::size_t before = tape.size();
  CHECK_THROWS_WITH_AS(linear(x, W, b), doctest::Contains("linear: expected x [B,in], W [out,in], b [out]: x is f64[2,3], W1 is f64[4,5], b1 is f64[4]"),
                       ad::ShapeError);
  const ad::Tensor W2 = tape.leaf(jacobian::random({4, 3}, 37));
  CHECK_THROWS_AS(linear(x, W2, bf), ad::DTypeError);
  CHECK(tape.size() == before + 1);  // only W2
}
