// Every scalar op of autodiff/var.hpp: value and local derivative against a plain-double reference
// and a central finite difference, then the documented edge cases one by one.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>

#include <boost/math/differentiation/finite_difference.hpp>

#include "autodiff/autodiff.hpp"

namespace {

using ad::Op;
using ad::Var;
using Fn1 = std::function<double(double)>;
using Fn2 = std::function<double(double, double)>;
using VarFn1 = std::function<Var(Var)>;
using VarFn2 = std::function<Var(Var, Var)>;

constexpr double inf = std::numeric_limits<double>::infinity();

// Tolerances.
//
// The reference derivative is Boost's sixth-order central difference.  Its step is
// h = (eps/168)^(1/7) ≈ 2.8e-3; its truncation error is about h^6 |f^(7)| / 140 ≈ 3.4e-18 |f^(7)|
// and its rounding error about 5 (|f(x+h)| + |f(x-h)|) eps / h ≈ 8e-13 |f(x)|.  The points below
// stay at least 3h from kinks, poles and domain edges, where |f^(7)| is at most ~1e7 (tan at 1.2,
// 0.37 from its pole, is the worst), so the difference is within ~5e-12 (|f| + |f'|) of the true
// derivative.  Boost's own (conservative) error estimate is asserted to be below a tenth of the
// tolerance, so a badly placed point fails instead of passing by luck.  The tolerance
// 1e-10 (|f| + |f'|) thus leaves a margin of 20 or more, while a wrong rule is off by O(1).
// Values are compared with the plain-double reference to a few ulps (1e-14 relative): they are the
// same libm calls, except sigmoid and softplus, which the tape computes in a different
// (overflow-free) but equally accurate form.
constexpr double fd_tol = 1e-10;
constexpr double value_tol = 1e-14;

double finite_difference(const Fn1& f, double x, double* error) {
  return boost::math::differentiation::finite_difference_derivative<Fn1, double, 6>(f, x, error);
}

/// |a - b| relative to the larger magnitude (0 when both are 0).
double rel_diff(double a, double b) {
  const double scale = std::max(std::fabs(a), std::fabs(b));
  return scale == 0.0 ? 0.0 : std::fabs(a - b) / scale;
}

/// Checks d/dx against a finite difference of f at x.
void check_derivative(const Fn1& f, double x, double derivative) {
  double fd_error = 0.0;
  const double fd = finite_difference(f, x, &fd_error);
  const double tol = fd_tol * (std::fabs(fd) + std::fabs(f(x)));
  CAPTURE(fd);
  CAPTURE(derivative);
  CHECK(fd_error <= 0.1 * tol);
  CHECK(std::fabs(derivative - fd) <= tol);
}

/// One-argument op: records exactly one entry with op code `code`; value and derivative match f.
void check_unary(std::string name, Op code, const VarFn1& op, const Fn1& f, std::initializer_list<double> xs) {
  for (double x : xs) {
    CAPTURE(name);
    CAPTURE(x);
    ad::Tape tape;
    Var v = tape.variable(x);
    Var y = op(v);
    CHECK(tape.entries() == 2);
    CHECK(tape.op(y.index()) == code);
    CHECK(rel_diff(y.value(), f(x)) <= value_tol);
    check_derivative(f, x, tape.gradient(y)[v]);
  }
}

/// Two-argument op: one entry with op code `code`; value and both partials match f.
void check_binary(std::string name, Op code, const VarFn2& op, const Fn2& f,
                  std::initializer_list<std::pair<double, double>> points) {
  for (const auto& point : points) {
    const double a = point.first, b = point.second;
    CAPTURE(name);
    CAPTURE(a);
    CAPTURE(b);
    ad::Tape tape;
    Var x = tape.variable(a), y = tape.variable(b);
    Var z = op(x, y);
    CHECK(tape.entries() == 3);
    CHECK(tape.op(z.index()) == code);
    CHECK(rel_diff(z.value(), f(a, b)) <= value_tol);
    auto g = tape.gradient(z);
    check_derivative([&](double t) { return f(t, b); }, a, g[x]);
    check_derivative([&](double t) { return f(a, t); }, b, g[y]);
  }
}

// Points with both operands nonzero and at least 3h apart (min and max are smooth there).
const std::initializer_list<std::pair<double, double>> pairs = {{0.7, -1.9}, {-2.3, 0.45}, {3.1, 2.2}, {-0.6, -1.1}};
const std::initializer_list<double> points = {-1.7, -0.6, 0.8, 2.6};
const std::initializer_list<double> constants = {2.5, -0.75, 0.125};

}  // namespace

TEST_CASE("scalar: Var op Var arithmetic against finite differences") {
  check_binary("x + y", Op::add, [](Var x, Var y) { return x + y; }, [](double a, double b) { return a + b; }, pairs);
  check_binary("x - y", Op::sub, [](Var x, Var y) { return x - y; }, [](double a, double b) { return a - b; }, pairs);
  check_binary("x * y", Op::mul, [](Var x, Var y) { return x * y; }, [](double a, double b) { return a * b; }, pairs);
  check_binary("x / y", Op::div, [](Var x, Var y) { return x / y; }, [](double a, double b) { return a / b; }, pairs);
}

TEST_CASE("scalar: Var op double and double op Var against finite differences") {
  for (double c : constants) {
    CAPTURE(c);
    check_unary("x + c", Op::add_c, [c](Var x) { return x + c; }, [c](double x) { return x + c; }, points);
    check_unary("c + x", Op::add_c, [c](Var x) { return c + x; }, [c](double x) { return c + x; }, points);
    check_unary("x - c", Op::sub_c, [c](Var x) { return x - c; }, [c](double x) { return x - c; }, points);
    check_unary("c - x", Op::rsub_c, [c](Var x) { return c - x; }, [c](double x) { return c - x; }, points);
    check_unary("x * c", Op::mul_c, [c](Var x) { return x * c; }, [c](double x) { return x * c; }, points);
    check_unary("c * x", Op::mul_c, [c](Var x) { return c * x; }, [c](double x) { return c * x; }, points);
    check_unary("x / c", Op::div_c, [c](Var x) { return x / c; }, [c](double x) { return x / c; }, points);
    check_unary("c / x", Op::rdiv_c, [c](Var x) { return c / x; }, [c](double x) { return c / x; }, points);
  }
  check_unary("-x", Op::neg, [](Var x) { return -x; }, [](double x) { return -x; }, points);
}

TEST_CASE("scalar: compound assignment records one entry and rebinds the handle") {
  check_binary("x += y", Op::add, [](Var x, Var y) { return x += y; }, [](double a, double b) { return a + b; }, pairs);
  check_binary("x -= y", Op::sub, [](Var x, Var y) { return x -= y; }, [](double a, double b) { return a - b; }, pairs);
  check_binary("x *= y", Op::mul, [](Var x, Var y) { return x *= y; }, [](double a, double b) { return a * b; }, pairs);
  check_binary("x /= y", Op::div, [](Var x, Var y) { return x /= y; }, [](double a, double b) { return a / b; }, pairs);
  for (double c : constants) {
    CAPTURE(c);
    check_unary("x += c", Op::add_c, [c](Var x) { return x += c; }, [c](double x) { return x + c; }, points);
    check_unary("x -= c", Op::sub_c, [c](Var x) { return x -= c; }, [c](double x) { return x - c; }, points);
    check_unary("x *= c", Op::mul_c, [c](Var x) { return x *= c; }, [c](double x) { return x * c; }, points);
    check_unary("x /= c", Op::div_c, [c](Var x) { return x /= c; }, [c](double x) { return x / c; }, points);
  }
  // The handle itself now names the new entry; the old entry is untouched.
  ad::Tape tape;
  Var x = tape.variable(3.0);
  const Var x0 = x;
  x *= 2.0;
  x += x0;  // 3x
  CHECK(x.index() != x0.index());
  CHECK(x.value() == 9.0);
  CHECK(x0.value() == 3.0);
  CHECK(tape.gradient(x)[x0] == 3.0);
}

TEST_CASE("scalar: pow in its three forms against finite differences") {
  for (double c : {2.5, -1.3, 0.5, 3.0}) {
    CAPTURE(c);
    check_unary("pow(x, c)", Op::pow_c, [c](Var x) { return pow(x, c); }, [c](double x) { return std::pow(x, c); },
                {0.7, 1.9, 3.2});
  }
  for (double c : {2.0, 3.0, -1.0}) {  // integer exponents on a negative base are real
    CAPTURE(c);
    check_unary("pow(x, c), x < 0", Op::pow_c, [c](Var x) { return pow(x, c); },
                [c](double x) { return std::pow(x, c); }, {-1.4, -0.6});
  }
  for (double c : {2.0, 0.5, 10.0}) {
    CAPTURE(c);
    check_unary("pow(c, x)", Op::rpow_c, [c](Var x) { return pow(c, x); }, [c](double x) { return std::pow(c, x); },
                {-1.2, 0.3, 2.1});
  }
  check_binary("pow(x, y)", Op::pow, [](Var x, Var y) { return pow(x, y); },
               [](double a, double b) { return std::pow(a, b); }, {{0.7, 2.5}, {1.9, -1.3}, {3.2, 0.5}, {0.4, 3.0}});
}

TEST_CASE("scalar: elementary functions against finite differences") {
  check_unary("exp", Op::exp, [](Var x) { return exp(x); }, [](double x) { return std::exp(x); }, {-2.0, 0.3, 1.7, 4.5});
  check_unary("log", Op::log, [](Var x) { return log(x); }, [](double x) { return std::log(x); }, {0.6, 1.3, 4.0, 250.0});
  check_unary("log1p", Op::log1p, [](Var x) { return log1p(x); }, [](double x) { return std::log1p(x); },
              {-0.4, 1e-10, 0.2, 3.0});
  check_unary("sqrt", Op::sqrt, [](Var x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, {0.25, 1.0, 7.5});
  check_unary("sin", Op::sin, [](Var x) { return sin(x); }, [](double x) { return std::sin(x); }, {-2.1, 0.5, 1.3, 3.0});
  check_unary("cos", Op::cos, [](Var x) { return cos(x); }, [](double x) { return std::cos(x); }, {-2.1, 0.5, 1.3, 3.0});
  check_unary("tan", Op::tan, [](Var x) { return tan(x); }, [](double x) { return std::tan(x); }, {-1.0, 0.3, 1.2});
  check_unary("tanh", Op::tanh, [](Var x) { return tanh(x); }, [](double x) { return std::tanh(x); }, {-1.5, 0.2, 2.5});
  check_unary("square", Op::square, [](Var x) { return square(x); }, [](double x) { return x * x; }, points);
}

TEST_CASE("scalar: activations and piecewise functions against finite differences") {
  check_unary("sigmoid", Op::sigmoid, [](Var x) { return sigmoid(x); },
              [](double x) { return 1.0 / (1.0 + std::exp(-x)); }, {-3.0, -0.4, 0.1, 4.0});
  check_unary("softplus", Op::softplus, [](Var x) { return softplus(x); },
              [](double x) { return std::log1p(std::exp(x)); }, {-3.0, -0.4, 0.1, 4.0});
  // Away from the kink at 0 by more than the difference stencil (3h ≈ 8e-3).
  check_unary("relu", Op::relu, [](Var x) { return relu(x); }, [](double x) { return x > 0.0 ? x : 0.0; },
              {-1.2, -0.05, 0.05, 2.0});
  check_unary("abs", Op::abs, [](Var x) { return abs(x); }, [](double x) { return std::fabs(x); },
              {-1.2, -0.05, 0.05, 2.0});
  check_binary("min", Op::min, [](Var x, Var y) { return min(x, y); },
               [](double a, double b) { return std::min(a, b); }, pairs);
  check_binary("max", Op::max, [](Var x, Var y) { return max(x, y); },
               [](double a, double b) { return std::max(a, b); }, pairs);
}

TEST_CASE("scalar: comparisons look at values and record nothing") {
  ad::Tape tape;
  Var a = tape.variable(1.5), b = tape.variable(2.5), c = tape.variable(1.5);
  const auto before = tape.entries();
  CHECK(a < b);
  CHECK(b > a);
  CHECK(a <= c);
  CHECK(a >= c);
  CHECK(a == c);
  CHECK(a != b);
  CHECK_FALSE(a < c);
  CHECK_FALSE(b <= a);
  CHECK(a < 2.0);
  CHECK(a > 1.0);
  CHECK(a == 1.5);
  CHECK(a != 1.25);
  CHECK(2.0 > a);
  CHECK(3.0 >= b);
  CHECK(1.5 == a);
  CHECK_FALSE(2.0 < a);
  CHECK(tape.entries() == before);
}

TEST_CASE("scalar: edge cases at kinks and domain boundaries") {
  ad::Tape tape;
  SUBCASE("relu'(0) = 0 and abs'(0) = 0") {
    Var x = tape.variable(0.0);
    Var r = relu(x);
    CHECK(r.value() == 0.0);
    CHECK(tape.gradient(r)[x] == 0.0);
    Var a = abs(x);
    CHECK(a.value() == 0.0);
    CHECK(tape.gradient(a)[x] == 0.0);
    Var m = abs(tape.variable(-0.0));  // the sign of zero does not matter
    CHECK(tape.partial(m.index(), 0) == 0.0);
  }
  SUBCASE("min and max ties go to the first argument") {
    Var x = tape.variable(2.0), y = tape.variable(2.0);
    auto gmin = tape.gradient(min(x, y));
    CHECK(gmin[x] == 1.0);
    CHECK(gmin[y] == 0.0);
    auto gmax = tape.gradient(max(x, y));
    CHECK(gmax[x] == 1.0);
    CHECK(gmax[y] == 0.0);
    auto gswap = tape.gradient(max(y, x));
    CHECK(gswap[y] == 1.0);
    CHECK(gswap[x] == 0.0);
  }
  SUBCASE("log(0) is -inf with partial +inf; log(-1) and sqrt(-1) are NaN; nothing throws") {
    Var z = tape.variable(0.0);
    Var l = log(z);
    CHECK(l.value() == -inf);
    CHECK(tape.partial(l.index(), 0) == inf);
    CHECK(tape.gradient(l)[z] == inf);
    Var neg = tape.variable(-1.0);
    CHECK(std::isnan(log(neg).value()));
    CHECK(std::isnan(sqrt(neg).value()));
    CHECK(log1p(neg).value() == -inf);
  }
  SUBCASE("sqrt(0) = 0 with partial +inf") {
    Var z = tape.variable(0.0);
    Var s = sqrt(z);
    CHECK(s.value() == 0.0);
    CHECK(tape.partial(s.index(), 0) == inf);
    CHECK(tape.gradient(s)[z] == inf);
  }
  SUBCASE("pow(0, y) has d/dy = 0, its limit, not 0 * -inf") {
    Var x = tape.variable(0.0), y = tape.variable(2.5);
    auto g = tape.gradient(pow(x, y));
    CHECK(g[y] == 0.0);
    CHECK(g[x] == 0.0);
  }
  SUBCASE("an infinite partial the output does not use leaves the adjoints finite") {
    Var x = tape.variable(0.0);
    Var s = sqrt(x);        // partial +inf
    Var l = log(x);         // partial +inf
    Var y = x * 3.0 + s * 0.0 + 0.0 * l;  // s and l get adjoint 0 and must be skipped: 0 * inf is NaN
    auto g = tape.gradient(y);
    CHECK(g[s] == 0.0);
    CHECK(g[l] == 0.0);
    CHECK(g[x] == 3.0);
    Var unused = exp(sqrt(x));  // recorded before y2 but not on its path
    Var y2 = x * 2.0;
    auto g2 = tape.gradient(y2);
    CHECK(g2[x] == 2.0);
    CHECK(g2[unused] == 0.0);
  }
  SUBCASE("sigmoid and softplus are finite at ±1000, with exact limits") {
    for (double v : {1000.0, -1000.0}) {
      CAPTURE(v);
      Var x = tape.variable(v);
      Var s = sigmoid(x);
      Var p = softplus(x);
      const double ds = tape.gradient(s)[x], dp = tape.gradient(p)[x];
      CHECK(std::isfinite(s.value()));
      CHECK(std::isfinite(p.value()));
      CHECK(std::isfinite(ds));
      CHECK(std::isfinite(dp));
      CHECK(s.value() == (v > 0 ? 1.0 : 0.0));
      CHECK(ds == 0.0);
      CHECK(p.value() == (v > 0 ? v : 0.0));
      CHECK(dp == (v > 0 ? 1.0 : 0.0));
    }
  }
}
