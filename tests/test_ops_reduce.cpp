// Reductions: sum, mean (all / one axis, keepdims) and max over an axis.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autodiff/autodiff.hpp"
#include "jacobian.hpp"

using ad::Shape;
using ad::Tensor;
using X = std::span<const Tensor>;

namespace {

/// [2,3,4] with distinct values at least 0.05 apart, in a scrambled order: no near-ties for max.
ad::Array<double> distinct_234() {
  ad::Array<double> a(Shape{2, 3, 4});
  for (std::int64_t i = 0; i < 24; ++i) a[i] = 0.05 * static_cast<double>((i * 7) % 24) - 0.6;
  return a;
}

}  // namespace

TEST_CASE("ops: sum and mean, Jacobians over all elements and over each axis") {
  const auto a = jacobian::random({2, 3, 4}, 101);
  jacobian::check([](ad::Tape&, X x) { return sum(x[0]); }, {a});
  jacobian::check([](ad::Tape&, X x) { return mean(x[0]); }, {a});
  for (int axis : {0, 1, 2, -1, -3}) {
    for (bool keep : {false, true}) {
      CAPTURE(axis);
      CAPTURE(keep);
      jacobian::check([=](ad::Tape&, X x) { return sum(x[0], axis, keep); }, {a});
      jacobian::check([=](ad::Tape&, X x) { return mean(x[0], axis, keep); }, {a});
    }
  }
  // Size-1 and rank-0/1 cases.
  jacobian::check([](ad::Tape&, X x) { return sum(x[0], 1); }, {jacobian::random({3, 1}, 102)});
  jacobian::check([](ad::Tape&, X x) { return mean(x[0], 0); }, {jacobian::random({5}, 103)});
  jacobian::check([](ad::Tape&, X x) { return sum(x[0]); }, {jacobian::random({}, 104)});
  jacobian::check([](ad::Tape&, X x) { return mean(x[0], -2, true); }, {jacobian::random({2, 1, 3, 2}, 105)});
}

TEST_CASE("ops: sum and mean values and shapes") {
  ad::Tape tape;
  ad::Array<double> a(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor x = tape.leaf(a);
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x).item() == 21);
  CHECK(mean(x).item() == 3.5);
  const Tensor s0 = sum(x, 0), s1k = sum(x, 1, true), m1 = mean(x, -1);
  CHECK(s0.shape() == Shape{3});
  CHECK(s1k.shape() == Shape{2, 1});
  CHECK(m1.shape() == Shape{2});
  CHECK(s0.value().at({0}) == 5);
  CHECK(s0.value().at({2}) == 9);
  CHECK(s1k.value().at({1, 0}) == 15);
  CHECK(m1.value().at({0}) == 2);
  CHECK(m1.value().at({1}) == 5);
  // Gradients by hand: d mean / dx = 1/n everywhere.
  const auto g = tape.gradient(mean(x));
  for (std::int64_t i = 0; i < 6; ++i) CHECK(g[x].flat(i) == doctest::Approx(1.0 / 6).epsilon(1e-16));
  // An empty tensor sums to 0 and has a NaN mean.
  const Tensor e = tape.leaf(ad::Array<double>(Shape{0, 3}));
  CHECK(sum(e).item() == 0.0);
  CHECK(std::isnan(mean(e).item()));
  CHECK(sum(e, 0).shape() == Shape{3});
  CHECK(sum(e, 0).value().flat(2) == 0.0);
}

TEST_CASE("ops: float32 sums are accumulated in double") {
  // 100,000 × 0.1f: a float accumulator drifts by ~1e-3 relative; a double one is exact to float
  // rounding of the result.
  ad::Tape tape;
  const auto a = ad::Array<float>::full(Shape{100000}, 0.1f);
  const double exact = 100000.0 * static_cast<double>(0.1f);
  CHECK(sum(tape.leaf(a)).item() == static_cast<float>(exact));
  CHECK(mean(tape.leaf(a)).item() == 0.1f);
  CHECK(sum(tape.leaf(a.reshaped(Shape{1000, 100})), 0).value().flat(7) == static_cast<float>(1000.0 * 0.1f));
}

TEST_CASE("ops: max over an axis, Jacobians and values") {
  const auto a = distinct_234();
  for (int axis : {0, 1, 2, -1}) {
    for (bool keep : {false, true}) {
      CAPTURE(axis);
      jacobian::check([=](ad::Tape&, X x) { return max(x[0], axis, keep); }, {a});
    }
  }
  ad::Tape tape;
  ad::Array<double> b(Shape{2, 3}, {1, 7, 3, 9, -2, 9});
  const Tensor x = tape.leaf(b);
  const Tensor m1 = max(x, 1), m0 = max(x, 0, true);
  CHECK(m1.shape() == Shape{2});
  CHECK(m0.shape() == Shape{1, 3});
  CHECK(m1.value().at({0}) == 7);
  CHECK(m1.value().at({1}) == 9);
  CHECK(m0.value().at({0, 1}) == 7);
  // A tie goes to the first maximal element: row 1 has 9 at columns 0 and 2.
  const auto g = tape.gradient(sum(m1));
  const ad::Array<double> gx = g.array<double>(x);
  CHECK(gx(0, 1) == 1.0);
  CHECK(gx(1, 0) == 1.0);
  CHECK(gx(1, 2) == 0.0);
  double total = 0;
  for (auto v : gx.values()) total += v;
  CHECK(total == 2.0);
}

TEST_CASE("ops: max propagates NaN and sends its gradient there") {
  ad::Tape tape;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ad::Array<double> b(Shape{4}, {1.0, nan, 5.0, nan});
  const Tensor x = tape.leaf(b);
  const Tensor m = max(x, 0);
  CHECK(std::isnan(m.item()));
  const auto g = tape.gradient(m);
  CHECK(g[x].flat(1) == 1.0);
  CHECK(g[x].flat(2) == 0.0);
  CHECK(g[x].flat(3) == 0.0);
}

TEST_CASE("ops: reduction errors are typed and name the operand") {
  ad::Tape tape;
  const Tensor x = tape.name(tape.leaf(ad::Array<float>(Shape{3, 4})), "logits");
  const std::size_t before = tape.entries();
  CHECK_THROWS_WITH_AS(sum(x, 2), "sum: axis 2 is out of range for logits is f32[3,4] (rank 2)", ad::IndexError);
  CHECK_THROWS_WITH_AS(mean(x, -3), "mean: axis -3 is out of range for logits is f32[3,4] (rank 2)", ad::IndexError);
  CHECK_THROWS_AS(max(x, 5), ad::IndexError);
  const Tensor s = tape.leaf(ad::Array<double>(Shape{}));
  CHECK_THROWS_WITH_AS(sum(s, 0), "sum: axis 0 is out of range for x is f64[] (rank 0)", ad::IndexError);
  const Tensor e = tape.leaf(ad::Array<double>(Shape{2, 0}));
  CHECK_THROWS_WITH_AS(max(e, 1), "max: axis 1 of x is f64[2,0] is empty: an empty slice has no maximum",
                       ad::ShapeError);
  CHECK(tape.entries() == before + 2);
  tape.clear();
  CHECK_THROWS_AS(sum(x), ad::StaleHandleError);
  CHECK_THROWS_AS(max(Tensor{}, 0), ad::InvalidArgument);
}
