// Composite scalar expressions: the tape against Boost.Math's forward-mode autodiff as an
// independent engine; multi-output seeding; intermediate adjoints by hand; names and the listing;
// bad handles; very long chains and sums; clear() keeping its memory.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include <boost/math/differentiation/autodiff.hpp>
#include <fmt/format.h>

#include "autodiff/autodiff.hpp"

namespace {

using ad::Var;
// A first-order forward-mode number: a value and its derivative along one seeded direction.
using Fwd = boost::math::differentiation::autodiff_fvar<double, 1>;

/// |a - b| relative to the larger magnitude (0 when both are 0).
double rel_diff(double a, double b) {
  const double scale = std::max(std::fabs(a), std::fabs(b));
  return scale == 0.0 ? 0.0 : std::fabs(a - b) / scale;
}

// The functions Boost's fvar lacks, written from its primitives; a Var (or an unrecorded expression,
// converted to a Var) uses the tape's own op.
Var sigmoid_of(const Var& x) { return sigmoid(x); }
Var softplus_of(const Var& x) { return softplus(x); }
Var relu_of(const Var& x) { return relu(x); }
Var square_of(const Var& x) { return square(x); }
Var log1p_of(const Var& x) { return log1p(x); }
Var min_of(const Var& x, const Var& y) { return min(x, y); }
Var max_of(const Var& x, const Var& y) { return max(x, y); }
template <class F> requires(!ad::Operand<F>) F sigmoid_of(const F& x) { return 1.0 / (1.0 + exp(-x)); }
template <class F> requires(!ad::Operand<F>) F softplus_of(const F& x) { return log(1.0 + exp(x)); }
template <class F> requires(!ad::Operand<F>) F relu_of(const F& x) { return x > 0.0 ? x : x * 0.0; }
template <class F> requires(!ad::Operand<F>) F square_of(const F& x) { return x * x; }
template <class F> requires(!ad::Operand<F>) F log1p_of(const F& x) { return log(1.0 + x); }
template <class F> requires(!ad::Operand<F>) F min_of(const F& x, const F& y) { return x <= y ? x : y; }
template <class F> requires(!ad::Operand<F>) F max_of(const F& x, const F& y) { return x >= y ? x : y; }

// Five composite expressions in three variables, written once for both engines.  Each reuses
// subexpressions (u, v, x) on several paths, so the tape must add the contributions.

// The benchmark's term, plus a second link of the chain.
const auto f_bench = [](auto x, auto y, auto z) { return tanh(x * y) + exp(-square_of(x)) * sin(x) + tanh(y * z); };
// One shared subexpression u used five times.  Needs u = xy + z > 0.
const auto f_shared = [](auto x, auto y, auto z) {
  auto u = x * y + z;
  auto v = sin(u) * u;
  return v / (1.0 + u * u) + pow(u, 2.5) * log(u) - v * x;
};
// Activations and piecewise ops, away from their kinks.
const auto f_activations = [](auto x, auto y, auto z) {
  return sigmoid_of(x - y) * softplus_of(z) + log1p_of(x * x) - sqrt(y * y + z * z) + relu_of(x + z) * abs(y - 2.0);
};
// Powers in all three forms, quotients and min/max.  Needs x, y > 0.
const auto f_powers = [](auto x, auto y, auto z) {
  return pow(x, y) + pow(2.0, z) * pow(y, 1.5) / cos(z) + tan(x * 0.3) + min_of(x, y) * max_of(y, z) - 1.0 / (x + z);
};
// A loop: 20 steps, each reusing the running value v three times and x, y, z once.
const auto f_loop = [](auto x, auto y, auto z) {
  auto v = x;
  for (int k = 0; k < 20; ++k) v = v * 0.9 + sin(v * y) * z - cos(x * v) / (k + 2.0);
  return v;
};
// Compound assignment throughout.
const auto f_compound = [](auto x, auto y, auto z) {
  auto acc = x;
  acc *= y;
  acc += z;
  acc /= 1.0 + x * x;
  acc -= exp(z) * 0.1;
  acc += 2.0 / y - 3.0;
  acc *= acc;
  return acc;
};

struct Point {
  double x, y, z;
};
const std::vector<Point> test_points = {{0.8, 1.3, 0.6}, {1.7, 0.45, 2.2}, {0.35, 2.4, 1.1}};

// Forward and reverse mode round differently but compute the same partial derivatives: without
// cancellation they agree to a few ulps.  1e-13 relative leaves room for the ~100 roundings of the
// longest expression (the loop) while any wrong rule is off by far more.
constexpr double engine_tol = 1e-13;

/// Value and the three partials of f at p in forward mode: one pass per seeded variable.
template <class F>
std::array<double, 4> forward_mode(F f, Point p) {
  std::array<double, 4> r{};
  for (int k = 0; k < 3; ++k) {
    const Fwd fr = f(Fwd(p.x, k == 0), Fwd(p.y, k == 1), Fwd(p.z, k == 2));
    r[0] = fr.derivative(0);
    r[1 + k] = fr.derivative(1);
  }
  return r;
}

/// Value and gradient of f at p, on the tape and with Boost's forward mode; checks they agree.
template <class F>
void check_against_forward_mode(const char* name, F f, Point p) {
  CAPTURE(std::string(name));
  CAPTURE(p.x);
  CAPTURE(p.y);
  CAPTURE(p.z);
  ad::Tape tape;
  Var x = tape.variable(p.x), y = tape.variable(p.y), z = tape.variable(p.z);
  Var r = f(x, y, z);
  auto g = tape.gradient(r);

  const auto fm = forward_mode(f, p);
  const double value = std::get<0>(fm), dx = std::get<1>(fm), dy = std::get<2>(fm), dz = std::get<3>(fm);
  REQUIRE(std::isfinite(value));
  CAPTURE(dx);
  CAPTURE(dy);
  CAPTURE(dz);
  CHECK(rel_diff(r.value(), value) <= engine_tol);
  CHECK(rel_diff(g[x], dx) <= engine_tol);
  CHECK(rel_diff(g[y], dy) <= engine_tol);
  CHECK(rel_diff(g[z], dz) <= engine_tol);
}

/// Runs f and returns the exception of type E it throws (its message); fails the check if none.
template <class E, class F>
std::string thrown(F&& f) {
  static_assert(std::is_base_of_v<ad::Error, E>);
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL_CHECK("expected an exception");
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("scalar: composite expressions against forward-mode autodiff") {
  for (const Point& p : test_points) {
    check_against_forward_mode("bench term", f_bench, p);
    check_against_forward_mode("shared subexpression", f_shared, p);
    check_against_forward_mode("activations", f_activations, p);
    check_against_forward_mode("powers", f_powers, p);
    check_against_forward_mode("loop", f_loop, p);
    check_against_forward_mode("compound assignment", f_compound, p);
  }
}

TEST_CASE("scalar: gradient of several weighted outputs") {
  const Point p = test_points[1];
  ad::Tape tape;
  Var x = tape.variable(p.x), y = tape.variable(p.y), z = tape.variable(p.z);
  const std::vector<Var> ys = {f_bench(x, y, z), f_activations(x, y, z), f_compound(x, y, z)};
  const std::vector<double> w = {0.5, -2.0, 1.25};
  auto g = tape.gradient(ys, w);
  const double gx = g[x], gy = g[y], gz = g[z];
  for (std::size_t k = 0; k < ys.size(); ++k) CHECK(g[ys[k]] == w[k]);  // no output feeds another

  // The same from three single-output sweeps.
  double sx = 0, sy = 0, sz = 0;
  for (std::size_t k = 0; k < ys.size(); ++k) {
    auto gk = tape.gradient(ys[k]);
    sx += w[k] * gk[x];
    sy += w[k] * gk[y];
    sz += w[k] * gk[z];
  }
  CHECK(rel_diff(gx, sx) <= engine_tol);
  CHECK(rel_diff(gy, sy) <= engine_tol);
  CHECK(rel_diff(gz, sz) <= engine_tol);

  // And from forward mode on the weighted sum.
  const auto weighted = [&](auto a, auto b, auto c) {
    return w[0] * f_bench(a, b, c) + w[1] * f_activations(a, b, c) + w[2] * f_compound(a, b, c);
  };
  const auto [value, dx, dy, dz] = forward_mode(weighted, p);
  CHECK(rel_diff(gx, dx) <= engine_tol);
  CHECK(rel_diff(gy, dy) <= engine_tol);
  CHECK(rel_diff(gz, dz) <= engine_tol);

  // An output listed twice has its weights added; one output that feeds another adds up too.
  Var u = x * y;
  Var v = u * u;
  const std::vector<Var> twice = {u, u}, chained = {u, v};
  const std::vector<double> w2 = {2.0, 3.0};
  auto gt = tape.gradient(twice, w2);
  CHECK(gt[u] == 5.0);
  CHECK(gt[x] == 5.0 * p.y);
  auto gc = tape.gradient(chained, w2);
  CHECK(gc[v] == 3.0);
  CHECK(gc[u] == 2.0 + 3.0 * 2.0 * u.value());

  const std::vector<double> one = {1.0};
  const std::string msg = thrown<ad::InvalidArgument>([&] { tape.gradient(twice, one); });
  CHECK(contains(msg, "gradient"));
  CHECK(contains(msg, "2 outputs but 1 weights"));
}

TEST_CASE("scalar: adjoints of intermediates, by hand") {
  ad::Tape tape;
  SUBCASE("a unary chain over a product: r = sin(xy)² + xy") {
    Var x = tape.variable(1.5), y = tape.variable(-0.5);
    Var p = x * y;
    Var q = sin(p);
    Var r = q * q + p;
    auto g = tape.gradient(r);
    const double pv = 1.5 * -0.5, qv = std::sin(pv);
    CHECK(g[r] == 1.0);
    CHECK(g[q] == 2.0 * qv);                     // q used twice by one mul
    CHECK(g[p] == 2.0 * qv * std::cos(pv) + 1.0);  // through q, and directly
    CHECK(g[x] == g[p] * -0.5);
    CHECK(g[y] == g[p] * 1.5);
  }
  SUBCASE("the same handle on both sides: x*x, x/x, x-x") {
    Var x = tape.variable(1.75);
    CHECK(tape.gradient(x * x)[x] == 3.5);
    CHECK(tape.gradient(x / x)[x] == 0.0);
    CHECK(tape.gradient(x - x)[x] == 0.0);
    CHECK(tape.gradient(x + x)[x] == 2.0);
  }
  SUBCASE("a quotient and a log: c = log(exp(xy) / y) = xy - ln y") {
    Var x = tape.variable(2.0), y = tape.variable(0.5);
    Var a = exp(x * y);
    Var b = a / y;
    Var c = log(b);
    auto g = tape.gradient(c);
    const double av = std::exp(1.0), bv = av / 0.5;
    CHECK(g[b] == doctest::Approx(1.0 / bv).epsilon(1e-15));
    CHECK(g[a] == doctest::Approx(1.0 / (bv * 0.5)).epsilon(1e-15));  // = 1/a
    CHECK(g[x] == doctest::Approx(0.5).epsilon(1e-15));                // = y
    // x - 1/y = 0: two contributions of size 2 cancel, leaving at most a few ulps of 2.
    CHECK(std::fabs(g[y]) <= 1e-14);
  }
  SUBCASE("branches the output does not use get adjoint 0 and are not reached") {
    Var x = tape.variable(0.3), y = tape.variable(4.0);
    Var dead = exp(x) * y;
    Var live = tanh(x);
    auto g = tape.gradient(live);
    CHECK(g[dead] == 0.0);
    CHECK_FALSE(g.reached(dead.index()));
    CHECK_FALSE(g.reached(y.index()));
    CHECK(g.reached(x.index()));
    CHECK(g[x] == 1.0 - std::tanh(0.3) * std::tanh(0.3));
  }
  SUBCASE("the gradient of an intermediate sweeps only what it depends on") {
    Var x = tape.variable(0.9);
    Var u = square(x);
    Var later = u * 100.0;  // recorded after u, must not leak into the gradient of u
    auto g = tape.gradient(u);
    CHECK(g[x] == 1.8);
    CHECK(g[later] == 0.0);
  }
}

TEST_CASE("scalar: names, lookup by name, and the listing") {
  ad::Tape tape;
  Var x = tape.name(tape.variable(1.25), "x");
  Var y = tape.name(tape.variable(-3.0), "y");
  Var z1 = tape.name(x * y, "z1");
  Var t = tanh(z1);
  Var e = exp(x);
  Var out = tape.name(t + e, "out");
  CHECK(tape.name_of(z1.index()) == "z1");
  CHECK(tape.find("out") == out.index());

  // Before any gradient the listing has values but no adjoints.
  const std::string before = fmt::format("{}", tape);
  CHECK(contains(before, "z1"));
  CHECK_FALSE(contains(before, "adj"));

  auto g = tape.gradient(out);
  CHECK(g["z1"].flat(0) == g[z1]);
  CHECK(g["x"].flat(0) == g[x]);
  CHECK(g["out"].flat(0) == 1.0);
  CHECK(g["y"].rank() == 0);
  CHECK(thrown<ad::InvalidArgument>([&] { (void)g["nope"]; }) == "Gradients[\"nope\"]: no entry of the tape has this name");

  // One line per entry with the index, name, op, arguments, value and adjoint.
  const std::string listing = fmt::format("{}", tape);
  std::vector<std::string> lines;
  for (std::size_t a = 0, b; (b = listing.find('\n', a)) != std::string::npos; a = b + 1)
    lines.push_back(listing.substr(a, b - a));
  REQUIRE(lines.size() == tape.entries());
  const auto line_of = [&](const Var& v) { return lines[v.index() - 1]; };
  const std::string zl = line_of(z1);
  CAPTURE(zl);
  CHECK(zl.starts_with(fmt::format("#{}", z1.index())));
  CHECK(contains(zl, "z1"));
  CHECK(contains(zl, "mul"));
  CHECK(contains(zl, "(x, y)"));
  CHECK(contains(zl, fmt::format("= {:.6g}", z1.value())));
  CHECK(contains(zl, fmt::format("adj = {:.6g}", g[z1])));
  const std::string ol = line_of(out);
  CHECK(contains(ol, "out"));
  CHECK(contains(ol, "add"));
  CHECK(contains(ol, "adj = 1"));
  for (const std::string& l : lines) CHECK(contains(l, "adj = "));
  // Unnamed arguments appear by index.
  CHECK(contains(ol, fmt::format("(#{}, #{})", t.index(), e.index())));
  CHECK(contains(line_of(t), "tanh"));
  CHECK(contains(line_of(t), "(z1)"));
  CHECK(contains(line_of(e), "exp"));

  // A name given again points at the newer entry.
  Var w = tape.name(out * 2.0, "out");
  CHECK(tape.find("out") == w.index());
  // Recording after the gradient makes it out of date for the listing: no adjoints shown.
  CHECK_FALSE(contains(fmt::format("{}", tape), "adj"));
  // After clear() the names are gone and the listing is empty.
  tape.clear();
  CHECK(tape.find("z1") == 0);
  CHECK(fmt::format("{}", tape).empty());
}

TEST_CASE("scalar: bad handles throw typed errors that say what happened") {
  ad::Tape tape, other;
  Var x = tape.variable(2.0);
  Var f = other.variable(5.0);
  const auto entries = tape.entries();

  SUBCASE("a Var from another tape") {
    std::string m = thrown<ad::ForeignHandleError>([&] { (void)(x + f); });
    CHECK(m == "add: the handle belongs to another tape");
    m = thrown<ad::ForeignHandleError>([&] { (void)pow(x, f); });
    CHECK(m == "pow: the handle belongs to another tape");
    m = thrown<ad::ForeignHandleError>([&] { tape.gradient(f); });
    CHECK(m == "gradient: the handle belongs to another tape");
    m = thrown<ad::ForeignHandleError>([&] { (void)tape.gradient(x)[f]; });
    CHECK(contains(m, "Gradients[Var]"));
    m = thrown<ad::ForeignHandleError>([&] { tape.name(f, "f"); });
    CHECK(contains(m, "Tape::name"));
    CHECK(tape.entries() == entries);  // nothing was recorded by the failed calls
  }
  SUBCASE("a Var from before tape.clear()") {
    Var y = exp(x);
    auto g = tape.gradient(y);
    tape.clear();
    Var fresh = tape.variable(1.0);  // reuses the index x had
    CHECK(fresh.index() == x.index());
    std::string m = thrown<ad::StaleHandleError>([&] { (void)(fresh * x); });
    CHECK(contains(m, "mul: stale handle"));
    CHECK(contains(m, "recorded before tape.clear()"));
    m = thrown<ad::StaleHandleError>([&] { (void)x.value(); });
    CHECK(contains(m, "Var::value: stale handle"));
    m = thrown<ad::StaleHandleError>([&] { tape.gradient(y); });
    CHECK(contains(m, "gradient: stale handle"));
    m = thrown<ad::StaleHandleError>([&] { (void)g[x]; });
    CHECK(m == "Gradients[Var]: these gradients were taken before tape.clear()");
    m = thrown<ad::StaleHandleError>([&] { (void)g["anything"]; });
    CHECK(contains(m, "before tape.clear()"));
    CHECK(tape.entries() == 1);
  }
  SUBCASE("a gradient of something not on the tape") {
    std::string m = thrown<ad::StaleHandleError>([&] { tape.gradient(Var(&tape, 12345, tape.generation())); });
    CHECK(m == "gradient: the handle does not name a recorded entry of this tape");
    m = thrown<ad::StaleHandleError>([&] { tape.gradient(Var(&tape, 0, tape.generation())); });  // the sink
    CHECK(contains(m, "does not name a recorded entry"));
    m = thrown<ad::ForeignHandleError>([&] { tape.gradient(f * 2.0); });
    CHECK(m == "gradient: the handle belongs to another tape");
    Var later = tape.variable(1.0);
    auto g = tape.gradient(x);
    Var after = later * 2.0;
    m = thrown<ad::InvalidArgument>([&] { (void)g[after]; });
    CHECK(m == "Gradients[Var]: the value was recorded after this gradient was taken");
  }
  SUBCASE("an empty handle") {
    const Var empty;
    CHECK(empty.empty());
    std::string m = thrown<ad::InvalidArgument>([&] { (void)(empty * 2.0); });
    CHECK(m == "mul: empty Var (default-constructed handle)");
    m = thrown<ad::InvalidArgument>([&] { (void)(x - empty); });
    CHECK(m == "sub: empty Var (default-constructed handle)");
    m = thrown<ad::InvalidArgument>([&] { (void)sigmoid(empty); });
    CHECK(contains(m, "sigmoid: empty Var"));
    m = thrown<ad::InvalidArgument>([&] { (void)empty.value(); });
    CHECK(contains(m, "Var::value: empty"));
    m = thrown<ad::InvalidArgument>([&] { tape.gradient(empty); });
    CHECK(m == "gradient: empty handle (default-constructed)");
    m = thrown<ad::InvalidArgument>([&] { (void)tape.gradient(x)[empty]; });
    CHECK(contains(m, "Gradients[Var]: empty handle"));
    m = thrown<ad::InvalidArgument>([&] { tape.name(empty, "e"); });
    CHECK(contains(m, "Tape::name: empty handle"));
    CHECK(tape.entries() == entries);
  }
}

TEST_CASE("scalar: a chain of 10^6 steps differentiates without recursion") {
  // v ← sin(v)/2 + x/2, repeated: 10^6 entries deep (each step reads two Vars, v and h, so it is
  // one fused entry), with x feeding every step.  dv/dx follows
  // the forward recurrence d ← cos(v) d / 2 + 1/2, computed here in plain double, and tends to the
  // fixed point's derivative 1/2 / (1 - cos(v*)/2).  The recurrence contracts by at least 1/2 a
  // step, so rounding does not accumulate: both agree to ~1e-15, checked at 1e-13.
  constexpr int steps = 1'000'000;
  ad::Tape tape;
  Var x = tape.variable(0.8);
  Var h = x * 0.5;
  Var v = x;
  double vd = 0.8, d = 1.0;
  for (int k = 0; k < steps; ++k) {
    d = std::cos(vd) * d * 0.5 + 0.5;
    vd = std::sin(vd) * 0.5 + 0.4;
    v = sin(v) * 0.5 + h;
  }
  CHECK(tape.entries() == 2 + std::size_t{steps});
  CHECK(tape.op(v.index()) == ad::Op::expr);
  CHECK(v.value() == vd);
  auto g = tape.gradient(v);
  CHECK(rel_diff(g[x], d) <= 1e-13);
  CHECK(rel_diff(g[x], 0.5 / (1.0 - 0.5 * std::cos(vd))) <= 1e-13);
  CHECK(g[h] == doctest::Approx(2.0 * g[x]).epsilon(1e-15));  // all of x's influence goes through h
}

TEST_CASE("scalar: a sum of 10^6 terms differentiates without recursion") {
  // s = Σ x_i² over 10^6 leaves, accumulated with +=: a chain of 10^6 adds.  Every adjoint is
  // exactly 2 x_i (the adds pass 1 down unchanged), and the value is the same sum in double.
  constexpr int n = 1'000'000;
  ad::Tape tape;
  std::vector<Var> xs;
  xs.reserve(n);
  for (int i = 0; i < n; ++i) xs.push_back(tape.variable(std::sin(0.001 * i) + 0.25));
  Var s = square(xs[0]);
  double sd = xs[0].value() * xs[0].value();
  for (int i = 1; i < n; ++i) {
    s += square(xs[i]);
    sd += xs[i].value() * xs[i].value();
  }
  CHECK(s.value() == sd);
  auto g = tape.gradient(s);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += g[xs[i]] != 2.0 * xs[i].value();
  CHECK(wrong == 0);
}

TEST_CASE("scalar: clear() keeps the tape's memory") {
  ad::Tape tape;
  const auto record = [&] {
    Var x = tape.variable(0.3), acc = x;
    for (int k = 0; k < 5000; ++k) acc = acc * 0.999 + sin(x * acc);  // grows past the initial capacity
    return std::pair{x, acc};
  };
  auto [x1, y1] = record();
  const double d1 = tape.gradient(y1)[x1];
  const std::size_t reserved = tape.bytes_reserved(), used = tape.bytes_used(), entries = tape.entries();
  // A value and an op word per entry, and the partials the ops stored (x * 0.999 stores one, the
  // fused expr two).
  CHECK(used == tape.size() * (sizeof(double) + sizeof(std::uint64_t)) + tape.stored_partials() * sizeof(double));
  CHECK(used <= tape.size() * ad::Tape::bytes_per_scalar_entry);
  CHECK(reserved >= used);

  tape.clear();
  CHECK(tape.entries() == 0);
  CHECK(tape.bytes_reserved() == reserved);
  CHECK(tape.bytes_used() < used);

  auto [x2, y2] = record();
  CHECK(tape.entries() == entries);
  CHECK(tape.bytes_used() == used);
  CHECK(tape.bytes_reserved() == reserved);
  CHECK(tape.gradient(y2)[x2] == d1);
}
