// User-defined ops (autodiff/custom.hpp) and the public gradient checker (autodiff/check.hpp): a
// custom op is recorded, swept, listed, drawn and stepped through like a built-in one, and the
// checker catches a wrong backward rule, naming the element.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "autodiff/autodiff.hpp"

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

template <class T>
ad::Array<T> random_array(ad::Shape shape, unsigned seed, double lo = -1.0, double hi = 1.0) {
  ad::Array<T> a(shape);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : a.values()) v = static_cast<T>(u(rng));
  return a;
}

/// softplus(x) = log(1 + e^x), written by a user: value max(x, 0) + log1p(e^-|x|), derivative
/// σ(x).  `error` is added to the derivative (a deliberately wrong rule when not 0).
template <ad::Element T>
ad::Tensor user_softplus(const ad::Tensor& x, double error = 0.0) {
  const auto xs = x.value().as<T>();
  ad::Array<T> y(x.shape());
  for (std::int64_t i = 0; i < y.size(); ++i) {
    const T v = xs[static_cast<std::size_t>(i)];
    y[i] = std::max(v, T(0)) + std::log1p(std::exp(-std::fabs(v)));
  }
  return ad::custom_op<T>("user_softplus", {x}, std::move(y), [error](ad::CustomBackward& b) {
    const auto xv = b.input<T>(0);
    const auto g = b.grad<T>();
    const auto dx = b.input_grad<T>(0);
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += g[i] * static_cast<T>(1.0 / (1.0 + std::exp(-xv[i])) + error);
  });
}

/// A two-input user op: the row-wise dot product d[i] = Σ_j a[i,j] b[i,j].
ad::Tensor rowdot(const ad::Tensor& a, const ad::Tensor& b) {
  const auto av = a.value().as<double>(), bv = b.value().as<double>();
  const std::int64_t rows = a.dim(0), cols = a.dim(1);
  ad::Array<double> d(ad::Shape{rows});
  for (std::int64_t i = 0; i < rows; ++i)
    for (std::int64_t j = 0; j < cols; ++j) d[i] += av[static_cast<std::size_t>(i * cols + j)] * bv[static_cast<std::size_t>(i * cols + j)];
  return ad::custom_op<double>("rowdot", {a, b}, std::move(d), [cols](ad::CustomBackward& c) {
    const auto g = c.grad<double>();
    for (std::size_t k = 0; k < 2; ++k) {
      const auto other = c.input<double>(1 - k);
      const auto dk = c.input_grad<double>(k);
      for (std::size_t n = 0; n < dk.size(); ++n) dk[n] += g[n / static_cast<std::size_t>(cols)] * other[n];
    }
  });
}

}  // namespace

TEST_CASE("core: a user-defined op is swept, listed, drawn and stepped through like a built-in one") {
  ad::Tape tape;
  const ad::Tensor x = tape.name(tape.leaf(ad::Array<double>(ad::Shape{3}, {-1.5, 0.25, 2.0})), "x");
  const ad::Tensor s = tape.name(user_softplus<double>(x), "s");
  const ad::Tensor y = tape.name(sum(s * s), "y");
  // gradient: dy/dx = 2 softplus(x) σ(x)
  const ad::Gradients g = tape.gradient(y);
  const auto gx = g[x].as<double>();
  for (std::size_t i = 0; i < 3; ++i) {
    const double v = x.value().flat(static_cast<std::int64_t>(i));
    const double sp = std::log1p(std::exp(v)), sg = 1.0 / (1.0 + std::exp(-v));
    CHECK(gx[i] == doctest::Approx(2.0 * sp * sg).epsilon(1e-14));
  }
  // listing and picture: under its own name, with its argument
  CHECK(std::string(s.node().op->name) == "user_softplus");
  const std::string line = ad::entry_line(tape, s.index());
  CHECK(has(line, "user_softplus"));
  CHECK(has(line, "(x)"));
  CHECK(has(fmt::format("{}", tape), "user_softplus"));
  const std::string dot = ad::to_dot(tape);
  CHECK(has(dot, "user_softplus"));
  // step-through: its step adds into x's adjoint, and explain names the rule
  const ad::StepLog log = ad::step_through(tape, y);
  bool stepped = false;
  for (const ad::Step& st : log.steps()) {
    if (st.entry != s.index()) continue;
    stepped = true;
    CHECK(st.rule);
    CHECK_FALSE(st.skipped);
    REQUIRE(st.contributions.size() == 1);
    CHECK(st.contributions[0].to == x.index());
    for (std::int64_t i = 0; i < 3; ++i)
      CHECK(st.contributions[0].after[i] - st.contributions[0].before[i] == doctest::Approx(gx[static_cast<std::size_t>(i)]));
  }
  CHECK(stepped);
  CHECK(has(log.format(), "user_softplus"));
  const std::string why = log.explain("x", {1});
  CHECK(has(why, "user_softplus"));
  const ad::AdjointTerms t = log.terms("x", {1});
  REQUIRE(t.terms.size() == 1);
  CHECK(t.terms[0].from == s.index());
  CHECK(t.adjoint == doctest::Approx(gx[1]).epsilon(1e-15));
  // and the summary counts it as an op
  const ad::TapeSummary sum = ad::summarize(tape);
  bool counted = false;
  for (const auto& [op, n] : sum.by_op) counted = counted || (op == "user_softplus" && n == 1);
  CHECK(counted);
}

TEST_CASE("core: the gradient checker passes a right user-defined rule in float64 and float32") {
  const ad::GradientReport r64 = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> x) { return user_softplus<double>(x[0]) * x[0]; },
      {random_array<double>({2, 3}, 1, -3.0, 3.0)});
  CHECK_MESSAGE(r64.passed, r64.message());
  CHECK(r64.outputs == 6);
  CHECK(r64.inputs == 6);
  CHECK(r64.compared == 36);
  CHECK(r64.worst_ratio < 0.1);
  const ad::GradientReport r32 = ad::check_gradient<float>(
      [](ad::Tape&, std::span<const ad::Tensor> x) { return sum(user_softplus<float>(x[0])); },
      {random_array<float>({4}, 2, -3.0, 3.0)});
  CHECK_MESSAGE(r32.passed, r32.message());
  CHECK(r32.compared == 4);
  const ad::GradientReport two = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> x) { return rowdot(tanh(x[0]), x[1]); },
      {random_array<double>({3, 2}, 3), random_array<double>({3, 2}, 4)});
  CHECK_MESSAGE(two.passed, two.message());
  CHECK(two.compared == 3 * 12);
  CHECK(has(two.message(), "passed"));
}

TEST_CASE("core: the gradient checker catches a deliberately wrong backward rule and names the element") {
  // The rule is off by 1e-6 in σ(x): far below what a loose check would see, far above 1e-9 relative.
  const ad::GradientReport bad = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> x) { return sum(user_softplus<double>(x[0], 1e-6) * x[1]); },
      {ad::Array<double>::full({2, 2}, 0.5), ad::Array<double>(ad::Shape{2, 2}, {1.0, 1.0, 1.0, 4.0})});
  CHECK_FALSE(bad.passed);
  CHECK_FALSE(static_cast<bool>(bad));
  CHECK(bad.failures == 4);  // d y / d x: every element of the first input; the second input is right
  REQUIRE(bad.mismatches.size() == 4);
  for (const auto& m : bad.mismatches) CHECK(m.input == 0);
  // The worst (largest error for its allowance) is where the upstream gradient is largest: x[1,1],
  // weighted by 4.
  CHECK(bad.worst.input == 0);
  CHECK(bad.worst.element == 3);
  CHECK(bad.worst.index == "[1,1]");
  CHECK(bad.worst.tape - bad.worst.difference == doctest::Approx(4e-6).epsilon(1e-3));
  CHECK(bad.max_error == doctest::Approx(4e-6).epsilon(1e-3));
  CHECK(bad.worst_ratio > 100);
  const std::string msg = bad.message();
  CHECK(has(msg, "FAILED"));
  CHECK(has(msg, "[1,1]"));
  // A tolerance looser than the error lets it pass: the report is about the tolerance asked for.
  const ad::GradientReport loose = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> x) { return sum(user_softplus<double>(x[0], 1e-6)); },
      {ad::Array<double>(ad::Shape{2}, {0.5, -1.0})}, {.rtol = 1e-4});
  CHECK(loose.passed);
}

TEST_CASE("core: the gradient checker handles scalar functions of Vars") {
  const ad::GradientReport ok = ad::check_gradient(
      [](ad::Tape&, std::span<const ad::Var> x) -> ad::Var { return tanh(x[0] * x[1]) + exp(-square(x[0])) * sin(x[1]); },
      {0.3, -0.7});
  CHECK_MESSAGE(ok.passed, ok.message());
  CHECK(ok.compared == 2);
  // A Var that flows through a user tensor op with a wrong rule is caught through the scalar
  // interface too: d/dx0 is wrong, d/dx1 right.
  const ad::GradientReport bad = ad::check_gradient(
      [](ad::Tape& t, std::span<const ad::Var> x) -> ad::Var {
        const ad::Tensor v = user_softplus<double>(t.constant(ad::Array<double>::full({3}, 1.0)) * x[0], 1e-5);
        return to_var(sum(v)) * x[1];
      },
      {0.8, 1.2});
  CHECK_FALSE(bad.passed);
  REQUIRE(bad.failures == 1);
  CHECK(bad.worst.input == 0);
  CHECK(bad.worst.tape - bad.worst.difference == doctest::Approx(3 * 1e-5 * 1.2).epsilon(1e-3));
}

TEST_CASE("core: custom_op refuses bad inputs before recording anything") {
  ad::Tape tape, other;
  const ad::Tensor a = tape.leaf(random_array<double>({2}, 5));
  const ad::Tensor f = tape.leaf(random_array<float>({2}, 6));
  const ad::Tensor o = other.leaf(random_array<double>({2}, 7));
  const auto rule = [](ad::CustomBackward&) {};
  const std::size_t before = tape.size();
  CHECK_THROWS_AS(ad::custom_op<double>("op", {}, ad::Array<double>({2}), rule), ad::InvalidArgument);
  CHECK_THROWS_AS(ad::custom_op<double>("op", {a, a, a, a}, ad::Array<double>({2}), rule), ad::InvalidArgument);
  CHECK_THROWS_AS(ad::custom_op<double>("op", {a, f}, ad::Array<double>({2}), rule), ad::DTypeError);
  CHECK_THROWS_AS(ad::custom_op<double>("op", {a, o}, ad::Array<double>({2}), rule), ad::ForeignHandleError);
  CHECK_THROWS_AS(ad::custom_op<double>("op", {a}, ad::Array<double>({2}), nullptr), ad::InvalidArgument);
  CHECK_THROWS_AS(ad::custom_op<double>("op", {ad::Tensor()}, ad::Array<double>({2}), rule), ad::InvalidArgument);
  CHECK(tape.size() == before);
  try {
    (void)ad::custom_op<double>("my_op", {a, f}, ad::Array<double>({2}), rule);
  } catch (const ad::DTypeError& e) {
    CHECK(has(e.what(), "my_op"));
    CHECK(has(e.what(), "f32[2]"));
  }
  // Stale handles are refused like everywhere else.
  tape.clear();
  CHECK_THROWS_AS(ad::custom_op<double>("op", {a}, ad::Array<double>({2}), rule), ad::StaleHandleError);
}

// ---- the README's snippets ("Writing your own op", "Checking gradients"), verbatim -----------------

namespace readme {

// y = log(1 + e^x), computed without overflow.  dy/dx = σ(x) = 1 / (1 + e^-x).
ad::Tensor softplus_op(const ad::Tensor& x) {
  const auto xs = x.value().as<double>();
  ad::Array<double> y(x.shape());
  for (std::size_t i = 0; i < xs.size(); ++i) y.values()[i] = std::max(xs[i], 0.0) + std::log1p(std::exp(-std::fabs(xs[i])));
  return ad::custom_op<double>("softplus_op", {x}, std::move(y), [](ad::CustomBackward& b) {
    const auto x = b.input<double>(0), g = b.grad<double>();
    const auto dx = b.input_grad<double>(0);  // empty if x takes no gradient
    for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += g[i] / (1.0 + std::exp(-x[i]));  // add, never assign
  });
}

}  // namespace readme

TEST_CASE("core: README snippets for a custom op and a gradient check") {
  using readme::softplus_op;
  ad::Tape tape;
  ad::Tensor x = tape.name(tape.leaf(ad::Array<double>(ad::Shape{3}, {-2.0, 0.0, 3.0})), "x");
  ad::Tensor y = tape.name(sum(softplus_op(x)), "y");
  ad::Gradients g = tape.gradient(y);  // dy/dx = σ(x)
  std::string text = fmt::format("{}", tape);  // the listing: "#2  softplus_op (x) f64[3] ..."
  CHECK(g[x].flat(1) == 0.5);
  CHECK(has(text, "softplus_op (x)"));

  ad::GradientReport r = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> in) { return softplus_op(in[0]) * in[1]; },
      {ad::Array<double>(ad::Shape{2}, {-1.5, 0.7}), ad::Array<double>(ad::Shape{2}, {2.0, -0.5})});
  if (!r) fmt::print("{}\n", r.message());  // the worst element: its index, tape and difference values
  CHECK(r.passed);                          // or REQUIRE, ASSERT_TRUE, ... in any test framework
}
