// Element-wise tensor ops: Jacobians (with broadcasting, Var and double operands), values against
// the scalar engine, float32 against float64, edge cases and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "autodiff/autodiff.hpp"
#include "autodiff/ops/broadcast.hpp"
#include "autodiff/ops/record.hpp"
#include "jacobian.hpp"

using ad::Shape;
using ad::Tensor;
using X = std::span<const Tensor>;

namespace {

/// A float64 array with elements in ±[lo, hi] (random sign): away from 0 by at least lo.
ad::Array<double> away_from_zero(std::initializer_list<std::int64_t> shape, unsigned seed, double lo = 0.2,
                                 double hi = 1.5) {
  ad::Array<double> a = jacobian::random(shape, seed, lo, hi);
  for (std::int64_t i = 0; i < a.size(); i += 2) a[i] = -a[i];
  return a;
}

struct ShapePair {
  std::initializer_list<std::int64_t> a, b;
};

// Same shapes, size-1 dimensions stretched on either side, missing leading dimensions, rank 0.
const ShapePair broadcast_cases[] = {
    {{2, 3}, {2, 3}},       {{3, 1}, {1, 4}},    {{2, 3, 4}, {4}},       {{4}, {2, 3, 4}}, {{}, {2, 2}},
    {{2, 2}, {}},           {{2, 1, 3}, {4, 1}}, {{1}, {1}},             {{3, 1}, {3}},    {{2, 1, 2, 1}, {3, 1, 2}},
    {{1, 1, 3}, {2, 1, 1}}, {{5}, {1}},
};

}  // namespace

TEST_CASE("ops: broadcast_shape follows NumPy's rule") {
  using ad::ops::broadcast_shape;
  CHECK(*broadcast_shape(Shape{3, 1}, Shape{1, 4}) == Shape{3, 4});
  CHECK(*broadcast_shape(Shape{2, 3, 4}, Shape{4}) == Shape{2, 3, 4});
  CHECK(*broadcast_shape(Shape{}, Shape{2}) == Shape{2});
  CHECK(*broadcast_shape(Shape{2, 1}, Shape{3, 1, 1}) == Shape{3, 2, 1});
  CHECK(*broadcast_shape(Shape{2, 0}, Shape{1}) == Shape{2, 0});
  CHECK(*broadcast_shape(Shape{0}, Shape{1, 1}) == Shape{1, 0});
  CHECK_FALSE(broadcast_shape(Shape{3}, Shape{4}));
  CHECK_FALSE(broadcast_shape(Shape{2, 3}, Shape{3, 2}));
  CHECK_FALSE(broadcast_shape(Shape{2, 0}, Shape{2}));
}

TEST_CASE("ops: sum_to_operand sums a broadcast gradient back to each operand's shape") {
  // out[i, j] = a[i, 0] ⊗ b[0, j] for a [3,1], b [1,4]: a[i] is read by row i, b[j] by column j.
  const ad::ops::Broadcast p(Shape{3, 1}, Shape{1, 4});
  REQUIRE(p.out() == Shape{3, 4});
  double g[12];
  for (int o = 0; o < 12; ++o) g[o] = o + 1;  // 1..12, row-major
  double da[3] = {100, 200, 300}, db[4] = {};  // a's adjoint already holds something: we add to it
  auto local = [&](std::int64_t o, std::int64_t, std::int64_t) { return g[o]; };
  ad::ops::sum_to_operand(da, 0, p, local);
  ad::ops::sum_to_operand(db, 1, p, local);
  CHECK(da[0] == 100 + 1 + 2 + 3 + 4);
  CHECK(da[1] == 200 + 5 + 6 + 7 + 8);
  CHECK(da[2] == 300 + 9 + 10 + 11 + 12);
  CHECK(db[0] == 1 + 5 + 9);
  CHECK(db[3] == 4 + 8 + 12);
  double all = 0;  // a rank-0 operand receives the sum of everything
  ad::ops::sum_to_operand(&all, 1, ad::ops::Broadcast(Shape{3, 4}, Shape{}), local);
  CHECK(all == 78);
}

TEST_CASE("ops: + - * / between tensors, Jacobians with broadcasting and size-1 dimensions") {
  unsigned seed = 1;
  for (const auto& shapes : broadcast_cases) {
    const auto& sa = shapes.a;
    const auto& sb = shapes.b;
    CAPTURE(ad::to_string(ad::make_shape(sa)));
    CAPTURE(ad::to_string(ad::make_shape(sb)));
    const auto a = away_from_zero(sa, seed++), b = away_from_zero(sb, seed++);
    jacobian::check([](ad::Tape&, X x) { return x[0] + x[1]; }, {a, b});
    jacobian::check([](ad::Tape&, X x) { return x[0] - x[1]; }, {a, b});
    jacobian::check([](ad::Tape&, X x) { return x[0] * x[1]; }, {a, b});
    jacobian::check([](ad::Tape&, X x) { return x[0] / x[1]; }, {a, b});
  }
}

TEST_CASE("ops: an operand used twice gets both contributions") {
  const auto a = away_from_zero({2, 3}, 7);
  jacobian::check([](ad::Tape&, X x) { return x[0] * x[0]; }, {a});
  jacobian::check([](ad::Tape&, X x) { return x[0] / (x[0] + x[0] * x[0]); }, {a});
  jacobian::check([](ad::Tape&, X x) { return x[0] - x[0] * 3.0; }, {a});
}

TEST_CASE("ops: tensor with Var, Var with tensor: the Var's adjoint sums its contributions") {
  // The Var is to_var() of a rank-0 input, so its column of the Jacobian is checked too.
  for (auto shape : {std::initializer_list<std::int64_t>{4}, {2, 3}, {1}, {2, 1, 2}}) {
    const auto t = away_from_zero(shape, 11), v = jacobian::random({}, 12, 0.4, 0.9);
    jacobian::check([](ad::Tape&, X x) { return x[0] + to_var(x[1]); }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return to_var(x[1]) + x[0]; }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return x[0] - to_var(x[1]); }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return to_var(x[1]) - x[0]; }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return x[0] * to_var(x[1]); }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return to_var(x[1]) * x[0]; }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return x[0] / to_var(x[1]); }, {t, v});
    jacobian::check([](ad::Tape&, X x) { return to_var(x[1]) / x[0]; }, {t, v});
  }
  // The Var's adjoint by hand: y = Σ_i t_i · v, so dy/dv = Σ t_i.
  ad::Tape tape;
  ad::Array<double> ta(Shape{3}, {1.0, 2.0, 4.0});
  ad::Var v = tape.variable(0.5);
  auto g = tape.gradient(to_var(sum(tape.leaf(ta) * v)));
  CHECK(g[v] == 7.0);
}

TEST_CASE("ops: tensor with double and negation") {
  const auto a = away_from_zero({2, 3}, 21);
  jacobian::check([](ad::Tape&, X x) { return x[0] + 0.7; }, {a});
  jacobian::check([](ad::Tape&, X x) { return 0.7 + x[0]; }, {a});
  jacobian::check([](ad::Tape&, X x) { return x[0] - 0.7; }, {a});
  jacobian::check([](ad::Tape&, X x) { return 0.7 - x[0]; }, {a});
  jacobian::check([](ad::Tape&, X x) { return x[0] * -1.3; }, {a});
  jacobian::check([](ad::Tape&, X x) { return -1.3 * x[0]; }, {a});
  jacobian::check([](ad::Tape&, X x) { return x[0] / 0.3; }, {a});
  jacobian::check([](ad::Tape&, X x) { return 0.3 / x[0]; }, {a});
  jacobian::check([](ad::Tape&, X x) { return -x[0]; }, {a});
}

TEST_CASE("ops: unary functions, Jacobians at several shapes") {
  unsigned seed = 31;
  for (auto shape : {std::initializer_list<std::int64_t>{5}, {2, 3}, {}, {2, 1, 2, 2}}) {
    CAPTURE(ad::to_string(ad::make_shape(shape)));
    const auto any = away_from_zero(shape, seed++, 0.1, 2.0);       // kinks at 0 are ≥ 0.1 away
    const auto positive = jacobian::random(shape, seed++, 0.2, 3.0);  // for log, sqrt, fractional powers
    jacobian::check([](ad::Tape&, X x) { return exp(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return log(x[0]); }, {positive});
    jacobian::check([](ad::Tape&, X x) { return sqrt(x[0]); }, {positive});
    jacobian::check([](ad::Tape&, X x) { return tanh(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return sigmoid(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return relu(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return leaky_relu(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return leaky_relu(x[0], 0.2); }, {any});
    jacobian::check([](ad::Tape&, X x) { return softplus(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return abs(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return square(x[0]); }, {any});
    jacobian::check([](ad::Tape&, X x) { return pow(x[0], 3.0); }, {any});
    jacobian::check([](ad::Tape&, X x) { return pow(x[0], 0.5); }, {positive});
    jacobian::check([](ad::Tape&, X x) { return pow(x[0], -1.5); }, {positive});
  }
}

TEST_CASE("ops: unary values and derivatives equal the scalar engine's") {
  // The same formulas as autodiff/var.hpp, element by element; a few ulps allowed for the compiler's
  // freedom in evaluating them.
  const auto a = away_from_zero({7}, 41, 0.05, 4.0);
  struct Case {
    const char* name;
    Tensor (*t)(const Tensor&);
    ad::Var (*v)(const ad::Var&);
  };
  const Case cases[] = {
      {"exp", [](const Tensor& x) { return exp(x); }, [](const ad::Var& x) -> ad::Var { return exp(x); }},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](const ad::Var& x) -> ad::Var { return tanh(x); }},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](const ad::Var& x) -> ad::Var { return sigmoid(x); }},
      {"relu", [](const Tensor& x) { return relu(x); }, [](const ad::Var& x) -> ad::Var { return relu(x); }},
      {"softplus", [](const Tensor& x) { return softplus(x); }, [](const ad::Var& x) -> ad::Var { return softplus(x); }},
      {"abs", [](const Tensor& x) { return abs(x); }, [](const ad::Var& x) -> ad::Var { return abs(x); }},
      {"square", [](const Tensor& x) { return square(x); }, [](const ad::Var& x) -> ad::Var { return square(x); }},
      {"neg", [](const Tensor& x) { return -x; }, [](const ad::Var& x) -> ad::Var { return -x; }},
      {"log|x|", [](const Tensor& x) { return log(abs(x)); }, [](const ad::Var& x) -> ad::Var { return log(abs(x)); }},
      {"sqrt|x|", [](const Tensor& x) { return sqrt(abs(x)); }, [](const ad::Var& x) -> ad::Var { return sqrt(abs(x)); }},
      {"pow", [](const Tensor& x) { return pow(abs(x), 2.5); }, [](const ad::Var& x) -> ad::Var { return pow(abs(x), 2.5); }},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    ad::Tape tape;
    const Tensor x = tape.leaf(a);
    const Tensor y = c.t(x);
    const auto gt = tape.gradient(sum(y));
    for (std::int64_t i = 0; i < a.size(); ++i) {
      ad::Var xv = tape.variable(a[i]);
      ad::Var yv = c.v(xv);
      CHECK(y.value().flat(i) == doctest::Approx(yv.value()).epsilon(1e-15));
      CHECK(gt[x].flat(i) == doctest::Approx(tape.gradient(yv)[xv]).epsilon(1e-15));
    }
  }
}

TEST_CASE("ops: float32 values and gradients agree with float64") {
  // A composite of every family here; float32 carries ~6e-8 relative rounding per operation, so
  // 1e-5 relative is a loose bound for a dozen chained operations on O(1) values.
  const auto a64 = away_from_zero({3, 4}, 51, 0.1, 1.5), b64 = jacobian::random({4}, 52, 0.5, 1.5);
  auto run = [&]<class T>() {
    ad::Tape tape;
    const Tensor a = tape.leaf(ad::to_array<T>(a64.view())), b = tape.leaf(ad::to_array<T>(b64.view()));
    ad::Var s = tape.variable(0.3);
    const Tensor y = sum(tanh(a * b + s) / sqrt(b) - sigmoid(a) * 2.0 + softplus(-a) + log(square(a) + 1.0) +
                         pow(b, 1.5) - leaky_relu(a, 0.1) + abs(a) * exp(-a) + relu(a - s) * s);
    const auto g = tape.gradient(y);
    return std::tuple{y.item(), ad::to_array<double>(g[a]), ad::to_array<double>(g[b]), g[s]};
  };
  const auto [y32, ga32, gb32, gs32] = run.template operator()<float>();
  const auto [y64, ga64, gb64, gs64] = run.template operator()<double>();
  CHECK(y32 == doctest::Approx(y64).epsilon(1e-5));
  for (std::int64_t i = 0; i < ga64.size(); ++i) CHECK(ga32[i] == doctest::Approx(ga64[i]).epsilon(1e-5));
  for (std::int64_t i = 0; i < gb64.size(); ++i) CHECK(gb32[i] == doctest::Approx(gb64[i]).epsilon(1e-5));
  CHECK(gs32 == doctest::Approx(gs64).epsilon(1e-5));
}

TEST_CASE("ops: edge cases follow the documented conventions") {
  ad::Tape tape;
  const double inf = std::numeric_limits<double>::infinity();
  ad::Array<double> a(Shape{5}, {0.0, -1000.0, 1000.0, -2.0, 3.0});
  const Tensor x = tape.leaf(a);
  auto grad_of = [&](const Tensor& y) { return ad::to_array<double>(tape.gradient(sum(y))[x]); };
  // relu′(0) = 0, abs′(0) = 0, leaky_relu′(0) = slope.
  CHECK(grad_of(relu(x))[0] == 0.0);
  CHECK(grad_of(abs(x))[0] == 0.0);
  CHECK(grad_of(leaky_relu(x, 0.25))[0] == 0.25);
  CHECK(grad_of(leaky_relu(x, 0.25))[3] == 0.25);
  CHECK(leaky_relu(x, 0.25).value().flat(3) == -0.5);
  // sigmoid and softplus never overflow at ±1000.
  const Tensor s = sigmoid(x), sp = softplus(x);
  CHECK(s.value().flat(1) == 0.0);
  CHECK(s.value().flat(2) == 1.0);
  CHECK(sp.value().flat(1) == 0.0);
  CHECK(sp.value().flat(2) == 1000.0);
  CHECK(grad_of(softplus(x))[2] == 1.0);
  // log(0) = -inf with derivative +inf, as IEEE arithmetic gives; exp overflows to inf.
  CHECK(log(x).value().flat(0) == -inf);
  CHECK(grad_of(log(x))[0] == inf);
  CHECK(exp(x).value().flat(2) == inf);
  // Gradients flow only into leaves that need them.
  const Tensor c = tape.constant(a);
  const auto g = tape.gradient(sum(x * c));
  CHECK_FALSE(g.reached(c.index()));
  CHECK(g.reached(x.index()));
  CHECK(g[x].flat(4) == 3.0);
}

TEST_CASE("ops: element-wise errors are typed, name the operands, and record nothing") {
  ad::Tape tape;
  const Tensor x = tape.name(tape.leaf(ad::Array<float>(Shape{64, 784})), "x");
  const Tensor w = tape.name(tape.leaf(ad::Array<float>(Shape{100, 10})), "W1");
  const std::size_t before = tape.entries();
  CHECK_THROWS_WITH_AS(x + w, "add: shapes cannot be broadcast: x is f32[64,784], W1 is f32[100,10]", ad::ShapeError);
  CHECK_THROWS_WITH_AS(w * x, "mul: shapes cannot be broadcast: W1 is f32[100,10], x is f32[64,784]", ad::ShapeError);
  const Tensor u = tape.leaf(ad::Array<double>(Shape{3}));
  const Tensor v = tape.leaf(ad::Array<double>(Shape{2}));
  CHECK_THROWS_WITH_AS(u / v, "div: shapes cannot be broadcast: lhs is f64[3], rhs is f64[2]", ad::ShapeError);
  CHECK_THROWS_WITH_AS(u - v, "sub: shapes cannot be broadcast: lhs is f64[3], rhs is f64[2]", ad::ShapeError);
  const Tensor d = tape.leaf(ad::Array<double>(Shape{64, 784}));
  CHECK_THROWS_WITH_AS(x + d, "add: element types differ: x is f32[64,784], rhs is f64[64,784]", ad::DTypeError);
  CHECK(tape.entries() == before + 3);  // the three leaves, nothing from the failed ops

  ad::Tape other;
  const Tensor z = other.leaf(ad::Array<float>(Shape{64, 784}));
  CHECK_THROWS_AS(x + z, ad::ForeignHandleError);
  CHECK_THROWS_AS(x * other.variable(2.0), ad::ForeignHandleError);
  CHECK_THROWS_AS(Tensor{} + x, ad::InvalidArgument);
  CHECK_THROWS_AS(x * ad::Var{}, ad::InvalidArgument);
  CHECK_THROWS_AS(exp(Tensor{}), ad::InvalidArgument);
  tape.clear();
  CHECK_THROWS_AS(exp(x), ad::StaleHandleError);
  CHECK_THROWS_AS(x * 2.0, ad::StaleHandleError);
  CHECK(tape.entries() == 0);
}

TEST_CASE("ops: a mixed Var and tensor expression, gradients by name") {
  // loss = a · Σ tanh(W ⊙ x + a) + a², with W a named tensor and a a named Var.  The same function
  // recorded with Vars alone gives the reference gradients.
  const ad::Array<double> wv = jacobian::random({2, 3}, 61), xv = jacobian::random({3}, 62);
  const double av = 0.4;
  ad::Tape tape;
  const Tensor W = tape.name(tape.leaf(wv), "W");
  const Tensor x = tape.constant(xv);
  const ad::Var a = tape.name(tape.variable(av), "a");
  const Tensor h = tape.name(tanh(W * x + a), "h");
  const ad::Var loss = a * to_var(sum(h)) + square(a);
  const auto g = tape.gradient(loss);

  ad::Tape ref;
  const ad::Var ar = ref.variable(av);
  std::vector<ad::Var> wr;
  ad::Var total = ref.variable(0.0);
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 3; ++j) {
      wr.push_back(ref.variable(wv(i, j)));
      total = total + tanh(wr.back() * xv[j] + ar);
    }
  const auto gr = ref.gradient(ar * total + square(ar));
  CHECK(loss.value() == doctest::Approx((ar * total + square(ar)).value()).epsilon(1e-15));
  CHECK(g[a] == doctest::Approx(gr[ar]).epsilon(1e-14));
  CHECK(g["a"].flat(0) == g[a]);
  const ad::View gW = g["W"];
  REQUIRE(gW.shape() == Shape{2, 3});
  for (std::int64_t k = 0; k < 6; ++k) CHECK(gW.flat(k) == doctest::Approx(gr[wr[k]]).epsilon(1e-14));
  // dloss/dh = a everywhere.
  for (std::int64_t k = 0; k < 6; ++k) CHECK(g["h"].flat(k) == doctest::Approx(av).epsilon(1e-15));
}

namespace {

/// A backward rule for y = 2x that is wrong by 1e-7 relative: the checker must notice.
constexpr ad::OpDescriptor wrong_twice_op{.name = "twice", .backward = [](ad::BackwardContext& c) {
  double* dx = c.arg_grad<double>(0);
  for (std::int64_t i = 0; i < ad::numel(c.node().shape); ++i) dx[i] += (2.0 + 2e-7) * c.grad<double>()[i];
}};

ad::Tensor twice_with_wrong_rule(const Tensor& x) {
  ad::Tape& tape = ad::ops::tape_of(x, "twice");
  double* y = tape.allocate_elements<double>(x.size());
  const auto xv = x.value().as<double>();
  for (std::int64_t i = 0; i < x.size(); ++i) y[i] = 2.0 * xv[i];
  return ad::ops::record_tensor(tape, wrong_twice_op, ad::DType::f64, x.shape(), y, {x.index()});
}

}  // namespace

TEST_CASE("ops: the Jacobian checker catches a wrong backward rule and passes a right one") {
  const auto a = jacobian::random({2, 2}, 71);
  const auto bad = jacobian::check([](ad::Tape&, X x) { return twice_with_wrong_rule(x[0]); }, {a}, {.check = false});
  CHECK(bad.rows == 4);
  CHECK(bad.cols == 4);
  CHECK(bad.failures == 4);  // the four diagonal entries
  CHECK(bad.max_tolerance_used > 50);
  CHECK(bad.max_abs_error == doctest::Approx(2e-7).epsilon(1e-3));
  const auto good = jacobian::check([](ad::Tape&, X x) { return x[0] * 2.0; }, {a}, {.check = false});
  CHECK(good.failures == 0);
  CHECK(good.max_tolerance_used < 0.01);  // y = 2x: the differences are nearly exact
}
