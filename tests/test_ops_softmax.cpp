// softmax and log_softmax: Jacobians over each axis, values, extreme logits, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "autodiff/autodiff.hpp"
#include "jacobian.hpp"

using ad::Shape;
using ad::Tensor;
using X = std::span<const Tensor>;

TEST_CASE("ops: softmax and log_softmax, Jacobians over each axis") {
  const auto a = jacobian::random({2, 3, 4}, 201, -2.0, 2.0);
  for (int axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    jacobian::check([=](ad::Tape&, X x) { return softmax(x[0], axis); }, {a});
    jacobian::check([=](ad::Tape&, X x) { return log_softmax(x[0], axis); }, {a});
  }
  jacobian::check([](ad::Tape&, X x) { return softmax(x[0]); }, {jacobian::random({5}, 202)});
  jacobian::check([](ad::Tape&, X x) { return log_softmax(x[0]); }, {jacobian::random({3, 1}, 203)});
  // Composed with a non-uniform upstream gradient (the checker seeds one-hot, so this is covered
  // too, but a loss-like use reads better).
  const auto w = jacobian::random({2, 4}, 204);
  jacobian::check([](ad::Tape&, X x) { return sum(softmax(x[0]) * x[1]); }, {jacobian::random({2, 4}, 205), w});
}

TEST_CASE("ops: softmax values: rows sum to 1 and log_softmax is their logarithm") {
  ad::Tape tape;
  ad::Array<double> a(Shape{2, 3}, {1.0, 2.0, 3.0, -1.0, 0.0, 0.5});
  const Tensor x = tape.leaf(a);
  const ad::View s = softmax(x).value(), l = log_softmax(x).value(), s0 = softmax(x, 0).value();
  for (std::int64_t r = 0; r < 2; ++r) {
    double z = 0, total = 0;
    for (std::int64_t c = 0; c < 3; ++c) z += std::exp(a(r, c));
    for (std::int64_t c = 0; c < 3; ++c) {
      CHECK(s.at({r, c}) == doctest::Approx(std::exp(a(r, c)) / z).epsilon(1e-15));
      CHECK(l.at({r, c}) == doctest::Approx(a(r, c) - std::log(z)).epsilon(1e-15));
      total += s.at({r, c});
    }
    CHECK(total == doctest::Approx(1.0).epsilon(1e-15));
  }
  for (std::int64_t c = 0; c < 3; ++c)
    CHECK(s0.at({0, c}) + s0.at({1, c}) == doctest::Approx(1.0).epsilon(1e-15));
}

TEST_CASE("ops: softmax and log_softmax at ±1000 logits stay finite and correct") {
  // Row 0: one logit far above the rest; row 1: all far below 0; row 2: equal huge logits.
  const std::initializer_list<double> logits = {1000.0, 0.0, -1000.0, -1000.0, -1001.0, -1002.0, 1000.0, 1000.0, 1000.0};
  auto run = [&]<class T>() {
    ad::Tape tape;
    ad::Array<T> a(Shape{3, 3});
    std::int64_t i = 0;
    for (double v : logits) a[i++] = static_cast<T>(v);
    const Tensor x = tape.leaf(a);
    const Tensor s = softmax(x), l = log_softmax(x);
    for (std::int64_t k = 0; k < 9; ++k) {
      CHECK(std::isfinite(s.value().flat(k)));
      CHECK(std::isfinite(l.value().flat(k)));
    }
    CHECK(s.value().at({0, 0}) == 1.0);
    CHECK(s.value().at({0, 1}) == 0.0);                        // e^-1000 underflows, as it should
    CHECK(l.value().at({0, 1}) == -1000.0);                    // but its log is exact
    CHECK(l.value().at({0, 2}) == -2000.0);
    CHECK(s.value().at({2, 1}) == doctest::Approx(1.0 / 3).epsilon(1e-7));
    CHECK(l.value().at({1, 0}) == doctest::Approx(-std::log1p(std::exp(-1.0) + std::exp(-2.0))).epsilon(1e-7));
    // Cross-entropy-like loss: gradients finite, and for log_softmax g_x = onehot - softmax.
    const std::int32_t labels[] = {1, 0, 2};
    const auto g = tape.gradient(-mean(pick(l, labels)));
    const ad::Array<double> gx = g.array<double>(x);
    for (auto v : gx.values()) CHECK(std::isfinite(v));
    CHECK(gx(0, 0) == doctest::Approx(1.0 / 3).epsilon(1e-7));
    CHECK(gx(0, 1) == doctest::Approx(-1.0 / 3).epsilon(1e-7));
    const ad::Array<double> gs = tape.gradient(sum(softmax(x) * x)).array<double>(x);
    for (auto v : gs.values()) CHECK(std::isfinite(v));
  };
  run.operator()<double>();
  run.operator()<float>();
}

TEST_CASE("ops: softmax of -inf entries gives 0 and no NaN") {
  ad::Tape tape;
  const double inf = std::numeric_limits<double>::infinity();
  ad::Array<double> a(Shape{2, 2}, {-inf, 0.0, -inf, -inf});
  const Tensor x = tape.leaf(a);
  const ad::View s = softmax(x).value();
  CHECK(s.at({0, 0}) == 0.0);
  CHECK(s.at({0, 1}) == 1.0);
  CHECK(log_softmax(x).value().at({0, 0}) == -inf);
  CHECK(std::isnan(s.at({1, 0})));  // a row of only -inf has no distribution: 0/0
}

TEST_CASE("ops: float32 softmax agrees with float64") {
  const auto a = jacobian::random({4, 5}, 211, -3.0, 3.0);
  ad::Tape tape;
  const Tensor x64 = tape.leaf(a), x32 = tape.leaf(ad::to_array<float>(a.view()));
  const auto w = jacobian::random({4, 5}, 212);
  const Tensor w64 = tape.constant(w), w32 = tape.constant(ad::to_array<float>(w.view()));
  const Tensor y64 = log_softmax(x64, 0), y32 = log_softmax(x32, 0);
  for (std::int64_t k = 0; k < 20; ++k) CHECK(y32.value().flat(k) == doctest::Approx(y64.value().flat(k)).epsilon(1e-6));
  const auto g64 = tape.gradient(sum(softmax(x64) * w64)).array<double>(x64);
  const auto g32 = tape.gradient(sum(softmax(x32) * w32)).array<double>(x32);
  for (std::int64_t k = 0; k < 20; ++k) CHECK(g32[k] == doctest::Approx(g64[k]).epsilon(1e-5));
}

TEST_CASE("ops: softmax errors") {
  ad::Tape tape;
  const Tensor x = tape.name(tape.leaf(ad::Array<float>(Shape{2, 3})), "z");
  CHECK_THROWS_WITH_AS(softmax(x, 2), "softmax: axis 2 is out of range for z is f32[2,3] (rank 2)", ad::IndexError);
  CHECK_THROWS_WITH_AS(log_softmax(x, -3), "log_softmax: axis -3 is out of range for z is f32[2,3] (rank 2)",
                       ad::IndexError);
  ad::Tape other;
  CHECK_THROWS_AS(softmax(other.leaf(ad::Array<float>(Shape{2})) + x), ad::ForeignHandleError);
  tape.clear();
  CHECK_THROWS_AS(log_softmax(x), ad::StaleHandleError);
}
