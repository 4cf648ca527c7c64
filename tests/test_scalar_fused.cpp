// Fused scalar expressions: an expression over at most two distinct Vars is one `expr` entry whose
// partials are its total derivatives; more Vars split it into several entries.  Checked against
// Boost.Math's forward mode, by entry counts and op codes, and at the edges of the op domains.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/math/differentiation/autodiff.hpp>
#include <fmt/format.h>

#include "autodiff/autodiff.hpp"

namespace {

using ad::Op;
using ad::Var;
using Fwd = boost::math::differentiation::autodiff_fvar<double, 1>;

constexpr double inf = std::numeric_limits<double>::infinity();

// Forward and reverse mode round differently; without cancellation they agree to a few ulps, and
// the longest expression here has ~20 roundings.  A wrong rule is off by O(1).
constexpr double engine_tol = 1e-13;

double rel_diff(double a, double b) {
  const double scale = std::max(std::fabs(a), std::fabs(b));
  return scale == 0.0 ? 0.0 : std::fabs(a - b) / scale;
}

// Expressions in two variables, written once for both engines (Boost's fvar has no square or
// sigmoid: these use only functions both have).
const auto f_bench = [](auto x, auto y) { return tanh(x * y) + exp(-(x * x)) * sin(x); };
const auto f_quotient = [](auto x, auto y) { return (x * y + 1.0) / (2.0 + cos(x - y)) - sqrt(x * x + y); };
const auto f_powers = [](auto x, auto y) { return pow(x, y) * log(y) + pow(2.0, x * 0.5) - pow(y, 1.5) / x; };
const auto f_repeat = [](auto x, auto y) { return sin(x) * x + x * x - tan(y * 0.25) * (x - y) * y; };

/// Value and both partials of f at (a, b) in forward mode.
template <class F>
std::array<double, 3> forward_mode(F f, double a, double b) {
  const Fwd rx = f(Fwd(a, true), Fwd(b, false));
  const Fwd ry = f(Fwd(a, false), Fwd(b, true));
  return {rx.derivative(0), rx.derivative(1), ry.derivative(1)};
}

/// Records f(x, y) as one `expr` entry and checks value and gradient against forward mode.
template <class F>
void check_fused(const char* name, F f, double a, double b) {
  CAPTURE(std::string(name));
  CAPTURE(a);
  CAPTURE(b);
  ad::Tape tape;
  Var x = tape.variable(a), y = tape.variable(b);
  Var r = f(x, y);
  CHECK(tape.entries() == 3);
  CHECK(tape.op(r.index()) == Op::expr);
  const auto [value, dx, dy] = forward_mode(f, a, b);
  auto g = tape.gradient(r);
  CHECK(rel_diff(r.value(), value) <= engine_tol);
  CHECK(rel_diff(g[x], dx) <= engine_tol);
  CHECK(rel_diff(g[y], dy) <= engine_tol);
}

/// Value and gradient of f recorded on Vars (fused) or on UnfusedVars (one entry per op); the
/// unfused recording has no `expr` entry.
template <class F>
std::array<double, 3> record_both(F f, bool unfused, double a, double b) {
  ad::Tape tape;
  const Var x = tape.variable(a), y = tape.variable(b);
  const Var r = unfused ? Var(f(ad::UnfusedVar(x), ad::UnfusedVar(y))) : Var(f(x, y));
  if (unfused)
    for (std::uint32_t e = 1; e < tape.size(); ++e) CHECK(tape.op(e) != Op::expr);
  const ad::Gradients g = tape.gradient(r);
  return {r.value(), g[x], g[y]};
}

}  // namespace

TEST_CASE("scalar: expressions over two Vars are one entry and match forward mode") {
  for (auto [a, b] : {std::pair{0.8, 1.3}, std::pair{1.7, 0.45}, std::pair{0.35, 2.4}}) {
    check_fused("bench term", f_bench, a, b);
    check_fused("quotient", f_quotient, a, b);
    check_fused("powers", f_powers, a, b);
    check_fused("repeated Vars", f_repeat, a, b);
  }
}

TEST_CASE("scalar: the benchmark's sum records two entries a term") {
  // s += tanh(x_i x_{i+1}) + exp(-x_i²) sin(x_i): one expr over (x_i, x_{i+1}) and one add.
  constexpr int n = 50;
  ad::Tape tape;
  std::vector<Var> xs;
  std::vector<double> x;
  for (int i = 0; i < n; ++i) {
    x.push_back(std::sin(0.1 * i) + 0.2);
    xs.push_back(tape.variable(x.back()));
  }
  Var s = tape.variable(0.0);
  for (int i = 0; i + 1 < n; ++i) {
    const auto before = tape.entries();
    s += tanh(xs[i] * xs[i + 1]) + exp(-square(xs[i])) * sin(xs[i]);
    REQUIRE(tape.entries() == before + 2);
    const auto args = tape.args(s.index());
    REQUIRE(args.size() == 2);
    CHECK(tape.op(s.index()) == Op::add);
    CHECK(tape.op(args[1]) == Op::expr);
    CHECK(tape.args(args[1]) == decltype(args){xs[i].index(), xs[i + 1].index()});
  }
  CHECK(tape.entries() == std::size_t{n} + 1 + 2 * (n - 1));
  // The gradient by hand, term by term, as bench/scalar computes it.
  std::vector<double> g(n, 0.0);
  for (int i = 0; i + 1 < n; ++i) {
    const double a = x[i], b = x[i + 1], t = std::tanh(a * b), e = std::exp(-a * a);
    g[i] += (1.0 - t * t) * b + e * (std::cos(a) - 2.0 * a * std::sin(a));
    g[i + 1] += (1.0 - t * t) * a;
  }
  auto grad = tape.gradient(s);
  // No component here is a near-cancellation (x_i > -0.8): a few ulps of each term.
  for (int i = 0; i < n; ++i) CHECK(rel_diff(grad[xs[i]], g[i]) <= 1e-14);
}

TEST_CASE("scalar: a Var read several times in a fused expression gets every contribution") {
  ad::Tape tape;
  const double a = 0.7;
  Var x = tape.name(tape.variable(a), "x");
  Var y = sin(x) * x + x * x - exp(x) / x;  // one Var, five reads
  CHECK(tape.entries() == 2);
  CHECK(tape.op(y.index()) == Op::expr);
  CHECK(tape.args(y.index()).size() == 1);  // one argument, not five
  const double expected = std::cos(a) * a + std::sin(a) + 2.0 * a - std::exp(a) / a + std::exp(a) / (a * a);
  CHECK(rel_diff(tape.gradient(y)[x], expected) <= 1e-15);
  // An op directly on Vars keeps its own code, even on one Var twice.
  Var xx = x * x;
  CHECK(tape.op(xx.index()) == Op::mul);
  CHECK(tape.args(xx.index()).size() == 2);
  CHECK(tape.gradient(xx)[x] == 2.0 * a);
  // The listing shows the fused entry by its argument's name.
  const std::string listing = fmt::format("{}", tape);
  const std::string line = listing.substr(listing.find(fmt::format("#{} ", y.index())));
  const std::string first = line.substr(0, line.find('\n'));
  CHECK(first.find("expr") != std::string::npos);
  CHECK(first.find("(x)") != std::string::npos);
}

TEST_CASE("scalar: more than two Vars split into entries of at most two") {
  ad::Tape tape;
  const double a = 0.6, b = -1.1, c = 0.9, d = 1.4;
  Var x = tape.variable(a), y = tape.variable(b), z = tape.variable(c), w = tape.variable(d);
  const auto before = tape.entries();
  Var r = tanh(x * y) + exp(z) * w;  // (x, y) fused, (z, w) elementary, then the add
  CHECK(tape.entries() == before + 3);
  CHECK(tape.op(r.index()) == Op::add);
  const auto args = tape.args(r.index());
  REQUIRE(args.size() == 2);
  CHECK(tape.op(args[0]) == Op::expr);
  CHECK(tape.op(args[1]) == Op::expr);
  auto g = tape.gradient(r);
  const double t = std::tanh(a * b);
  CHECK(rel_diff(g[x], (1 - t * t) * b) <= 1e-15);
  CHECK(rel_diff(g[y], (1 - t * t) * a) <= 1e-15);
  CHECK(rel_diff(g[z], std::exp(c) * d) <= 1e-15);
  CHECK(rel_diff(g[w], std::exp(c)) <= 1e-15);

  // Three Vars where one operand is a plain Var: the other operand is one entry, then the op.
  Var q = (x * y + z) * 2.0;
  CHECK(tape.op(q.index()) == Op::expr);  // (m + z) * 2 over the recorded m = x * y and z
  const auto qa = tape.args(q.index());
  REQUIRE(qa.size() == 2);
  CHECK(tape.op(qa[0]) == Op::mul);
  CHECK(qa[1] == z.index());
  auto gq = tape.gradient(q);
  CHECK(gq[x] == 2.0 * b);
  CHECK(gq[z] == 2.0);

  // A long expression over four Vars, against forward mode in each direction.
  const auto f = [](auto p, auto q2, auto u, auto v) {
    return sin(p * q2) * u + v / (1.0 + u * u) - p * v * cos(q2) + sqrt(u * u + v * v) * p;
  };
  Var s = f(x, y, z, w);
  auto gs = tape.gradient(s);
  const std::array<double, 4> at = {a, b, c, d};
  const std::array<Var, 4> vars = {x, y, z, w};
  for (int k = 0; k < 4; ++k) {
    std::array<Fwd, 4> v;
    for (int j = 0; j < 4; ++j) v[j] = Fwd(at[j], j == k);
    const Fwd fr = f(v[0], v[1], v[2], v[3]);
    CAPTURE(k);
    CHECK(rel_diff(s.value(), fr.derivative(0)) <= engine_tol);
    CHECK(rel_diff(gs[vars[k]], fr.derivative(1)) <= engine_tol);
  }
}

TEST_CASE("scalar: edge cases inside fused expressions") {
  ad::Tape tape;
  SUBCASE("relu'(0) = 0 and abs'(0) = 0") {
    Var x = tape.variable(0.0), y = tape.variable(2.0);
    Var r = relu(x) * 3.0 + x * 0.5;
    CHECK(tape.op(r.index()) == Op::expr);
    CHECK(tape.gradient(r)[x] == 0.5);
    Var m = abs(x) * y + y;
    auto g = tape.gradient(m);
    CHECK(g[x] == 0.0);
    CHECK(g[y] == 1.0);
  }
  SUBCASE("min and max ties go to the first argument") {
    Var x = tape.variable(2.0), y = tape.variable(2.0);
    Var lo = min(x, y) * 3.0;
    auto g = tape.gradient(lo);
    CHECK(g[x] == 3.0);
    CHECK(g[y] == 0.0);
    Var hi = max(y, x) * 3.0;
    auto h = tape.gradient(hi);
    CHECK(h[y] == 3.0);
    CHECK(h[x] == 0.0);
  }
  SUBCASE("pow(0, y) has d/dy = 0") {
    Var x = tape.variable(0.0), y = tape.variable(2.5);
    Var p = pow(x, y) * 2.0 + y;
    auto g = tape.gradient(p);
    CHECK(g[y] == 1.0);
    CHECK(g[x] == 0.0);
  }
  SUBCASE("an infinite derivative behind a zero one gives 0, not NaN") {
    Var x = tape.variable(0.0);
    Var y = sqrt(x) * 0.0 + 0.0 * log(x) + x * 3.0;  // sqrt′(0) = log′(0) = inf, multiplied by 0
    CHECK(tape.op(y.index()) == Op::expr);
    CHECK(tape.partial(y.index(), 0) == 3.0);
    CHECK(tape.gradient(y)[x] == 3.0);
    Var z = relu(x) * sqrt(x) + x;  // sqrt(x) has d 0 here: relu(0) = 0 multiplies it
    CHECK(tape.gradient(z)[x] == 1.0);
  }
  SUBCASE("a used infinite derivative and NaN values follow IEEE arithmetic") {
    Var x = tape.variable(0.0);
    Var s = sqrt(x) + x;
    CHECK(tape.gradient(s)[x] == inf);
    Var half = tape.variable(0.5);
    Var l = log(half - 1.0) + half;  // log(-0.5) is NaN; its derivative 1/(-0.5) is not
    CHECK(std::isnan(l.value()));
    CHECK(tape.gradient(l)[half] == -1.0);
    Var n = log(x) * x + x;  // log(0) * 0: the value is NaN (-inf * 0), and so is the partial
    CHECK(std::isnan(n.value()));
  }
}

TEST_CASE("scalar: an auto expression is recorded each time it becomes a Var") {
  ad::Tape tape;
  Var x = tape.variable(1.5), y = tape.variable(-0.5);
  const auto before = tape.entries();
  auto e = x * y + 1.0;  // an ad::Expr: nothing recorded yet
  static_assert(std::is_same_v<decltype(e), ad::Expr>);
  static_assert(sizeof(ad::Expr) <= 48);  // the size README.md states
  CHECK(tape.entries() == before);
  CHECK(e.value() == 0.25);
  CHECK(fmt::format("{}", e) == "0.25");
  Var a = e;
  Var b = e;
  CHECK(tape.entries() == before + 2);  // two entries with the same value
  CHECK(a.index() != b.index());
  Var p = a * b;
  auto g = tape.gradient(p);
  CHECK(g[a] == 0.25);
  CHECK(g[x] == 2.0 * 0.25 * -0.5);  // through both copies
  // Used inside larger expressions, e is copied with its value and derivatives.
  Var q = e * e + e;
  CHECK(tape.op(q.index()) == Op::expr);
  CHECK(rel_diff(tape.gradient(q)[y], (2.0 * 0.25 + 1.0) * 1.5) <= 1e-15);
}

TEST_CASE("core: ops on UnfusedVar are recorded one per entry, with their own op codes") {
  // The bench term tanh(x y) + exp(-(x x)) sin(x): mul, tanh, mul, neg, exp, sin, mul and add last
  // (the operands of + and * are evaluated in an order C++ leaves open).
  std::vector<Op> ops = {Op::mul, Op::tanh, Op::mul, Op::neg, Op::exp, Op::sin, Op::mul, Op::add};
  ad::Tape tape;
  const ad::UnfusedVar x = tape.variable(0.8), y = tape.variable(1.3);
  const auto r = f_bench(x, y);
  static_assert(std::is_same_v<std::remove_const_t<decltype(r)>, ad::UnfusedVar>);
  REQUIRE(tape.entries() == 2 + ops.size());
  CHECK(tape.op(r.index()) == Op::add);
  std::vector<Op> recorded;
  for (std::uint32_t e = 3; e < tape.size(); ++e) recorded.push_back(tape.op(e));
  std::sort(ops.begin(), ops.end());
  std::sort(recorded.begin(), recorded.end());
  CHECK(recorded == ops);
  // The same values and gradient as the fused expression, which forward mode checks above.
  const auto [value, dx, dy] = forward_mode(f_bench, 0.8, 1.3);
  const ad::Gradients g = tape.gradient(r);
  CHECK(rel_diff(r.value(), value) <= engine_tol);
  CHECK(rel_diff(g[x], dx) <= engine_tol);
  CHECK(rel_diff(g[y], dy) <= engine_tol);
  // Every expression of the fused tests, in both modes: no `expr` entry, same value and gradient.
  for (auto [a, b] : {std::pair{0.8, 1.3}, std::pair{1.7, 0.45}}) {
    for (const auto& c : std::vector<std::pair<const char*, std::array<double, 3> (*)(bool, double, double)>>{
             {"quotient", [](bool u, double a, double b) { return record_both(f_quotient, u, a, b); }},
             {"powers", [](bool u, double a, double b) { return record_both(f_powers, u, a, b); }},
             {"repeated Vars", [](bool u, double a, double b) { return record_both(f_repeat, u, a, b); }}}) {
      CAPTURE(std::string(c.first));
      const auto fused = c.second(false, a, b), unfused = c.second(true, a, b);
      for (int k = 0; k < 3; ++k) CHECK(rel_diff(fused[k], unfused[k]) <= engine_tol);
    }
  }
}

TEST_CASE("core: UnfusedVar mixed with Var and expressions, compound assignment and bad handles") {
  ad::Tape tape;
  const Var x = tape.variable(2.0), y = tape.variable(3.0);
  ad::UnfusedVar u = x;  // the same entry, read op by op from now on
  CHECK(u.index() == x.index());
  const auto before = tape.entries();
  const auto m = u * y;  // an UnfusedVar operand: recorded at once
  static_assert(std::is_same_v<std::remove_const_t<decltype(m)>, ad::UnfusedVar>);
  CHECK(tape.entries() == before + 1);
  CHECK(tape.op(m.index()) == Op::mul);
  // An Expr operand is recorded first, as one fused entry, then the op over it.
  const auto s = u + tanh(x * y);
  CHECK(tape.entries() == before + 3);
  CHECK(tape.op(s.index()) == Op::add);
  CHECK(tape.op(s.index() - 1) == Op::expr);
  // Compound assignment keeps the type and records one entry.
  u += y;
  u *= 2.0;
  CHECK(tape.entries() == before + 5);
  CHECK(tape.op(u.index()) == Op::mul_c);
  CHECK(u.value() == 10.0);
  const ad::Gradients g = tape.gradient(u);
  CHECK(g[x] == 2.0);
  CHECK(g[y] == 2.0);
  CHECK(fmt::format("{}", u) == "10");
  // Bad handles throw the same typed errors as the fused ops, before anything is recorded.
  ad::Tape other;
  const ad::UnfusedVar f = other.variable(1.0);
  const auto entries = tape.entries();
  CHECK_THROWS_AS((void)(u * f), ad::ForeignHandleError);
  CHECK_THROWS_WITH_AS((void)(ad::UnfusedVar() + 1.0), doctest::Contains("empty Var"), ad::InvalidArgument);
  CHECK(tape.entries() == entries);
  tape.clear();
  CHECK_THROWS_AS((void)exp(u), ad::StaleHandleError);
  CHECK(tape.entries() == 0);
}

TEST_CASE("scalar: bad handles in expressions throw before anything is recorded") {
  ad::Tape tape, other;
  Var x = tape.variable(2.0), y = tape.variable(3.0);
  Var f = other.variable(5.0);
  SUBCASE("an expression kept across clear()") {
    auto e = x * y * 2.0;
    tape.clear();
    Var fresh = tape.variable(1.0);
    CHECK_THROWS_AS((void)Var(e), ad::StaleHandleError);
    CHECK_THROWS_AS((void)(e + fresh), ad::StaleHandleError);
    CHECK_THROWS_AS((void)(fresh + e), ad::StaleHandleError);
    CHECK(tape.entries() == 1);
  }
  SUBCASE("expressions on two tapes") {
    const auto entries = tape.entries(), other_entries = other.entries();
    auto e = tanh(x * y);
    auto h = f * f;
    try {
      (void)(e + h);  // four reads, would split: the check comes before any recording
      FAIL("expected ForeignHandleError");
    } catch (const ad::ForeignHandleError& err) {
      CHECK(std::string(err.what()) == "add: the handle belongs to another tape");
    }
    CHECK_THROWS_AS((void)(e * f), ad::ForeignHandleError);
    CHECK(tape.entries() == entries);
    CHECK(other.entries() == other_entries);
  }
  SUBCASE("an empty Var in an expression") {
    const Var empty;
    try {
      (void)(tanh(x * y) - empty);
      FAIL("expected InvalidArgument");
    } catch (const ad::InvalidArgument& err) {
      CHECK(std::string(err.what()) == "sub: empty Var (default-constructed handle)");
    }
  }
}

// Looking up an unrecorded expression would record it after the sweep: it must not compile, while
// the lookup of a Var does.  (The check sits in a concept: outside a template an invalid requirement
// is a hard error rather than false.)
template <class T>
concept LookedUpInGradients = requires(const ad::Gradients& g, const T& v) { g[v]; };
static_assert(!LookedUpInGradients<ad::Expr>);
static_assert(LookedUpInGradients<ad::Var>);

namespace {
/// A chain over every kind of stored partials: two (x * y, u / y), one (sin, * c), none (unary
/// minus, +, -, c - u, u + u).  Returns every intermediate value.
template <class T>
std::array<T, 9> mixed_chain(T x, T y) {
  const T u1 = x * y, u2 = -u1, u3 = u2 + x, u4 = sin(u3), u5 = u4 - 2.0, u6 = 3.0 - u5, u7 = u6 * 0.5,
          u8 = u7 / y, u9 = u8 + u8;
  return {u1, u2, u3, u4, u5, u6, u7, u8, u9};
}
}  // namespace

TEST_CASE("core: constant partials are not stored, and a sweep from any entry reads the right ones") {
  const double a = 0.7, b = 1.9;
  ad::Tape tape;
  const ad::UnfusedVar x = tape.variable(a), y = tape.variable(b);
  const auto u = mixed_chain(x, y);
  REQUIRE(tape.entries() == 2 + u.size());
  // Stored: x*y 2, sin 1, *0.5 1, /y 2; the rest are constants the sweep takes from a table.
  CHECK(tape.stored_partials() == 6);
  CHECK(tape.bytes_used() == tape.size() * (sizeof(double) + sizeof(std::uint64_t)) + 6 * sizeof(double));
  // The partials each entry reports, stored or constant.
  const auto p = [&](int k, int arg) { return tape.partial(u[static_cast<std::size_t>(k)].index(), arg); };
  const double v3 = u[2].value(), v7 = u[6].value();
  CHECK(p(0, 0) == b);
  CHECK(p(0, 1) == a);
  CHECK(p(1, 0) == -1.0);
  CHECK(p(1, 1) == 0.0);
  CHECK(p(2, 0) == 1.0);
  CHECK(p(2, 1) == 1.0);
  CHECK(p(3, 0) == std::cos(v3));
  CHECK(p(3, 1) == 0.0);
  CHECK(p(4, 0) == 1.0);
  CHECK(p(5, 0) == -1.0);
  CHECK(p(6, 0) == 0.5);
  CHECK(p(7, 0) == 1.0 / b);
  CHECK(p(7, 1) == -(v7 / b) / b);
  CHECK(p(8, 0) == 1.0);
  CHECK(p(8, 1) == 1.0);
  CHECK(tape.partial(x.index(), 0) == 0.0);
  // A sweep started at each intermediate (not only the last entry) against forward mode, with and
  // without hooks (the hooked sweep is a separate loop).
  const ad::SweepHooks hooks{.after = [](const ad::SweepStep&) {}};
  for (std::size_t k = 0; k < u.size(); ++k) {
    CAPTURE(k);
    const Fwd fx = mixed_chain(Fwd(a, true), Fwd(b, false))[k], fy = mixed_chain(Fwd(a, false), Fwd(b, true))[k];
    const ad::Gradients g = tape.gradient(u[k]);
    CHECK(rel_diff(g[x], fx.derivative(1)) <= engine_tol);
    CHECK(rel_diff(g[y], fy.derivative(1)) <= engine_tol);
    const ad::Gradients h = tape.gradient(u[k], hooks);
    CHECK(h[x] == g[x]);
    CHECK(h[y] == g[y]);
  }
}
