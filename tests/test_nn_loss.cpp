// nn/loss: values by hand, gradients against finite differences (float64), the fused
// softmax-cross-entropy against softmax followed by cross-entropy, stability, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "nn/nn.hpp"

namespace {

using Loss = std::function<ad::Tensor(const ad::Tensor&)>;

ad::Array<double> values(const ad::Shape& s, std::initializer_list<double> v) { return ad::Array<double>(s, v); }

/// J(a) for a loss recorded on a fresh tape.
double value_at(const Loss& loss, const ad::Array<double>& a) {
  ad::Tape tape;
  return loss(tape.leaf(a)).item();
}

/// Checks the tape's ∂J/∂a against the five-point central difference
///   f'(x) ≈ (−f(x+2h) + 8f(x+h) − 8f(x−h) + f(x−2h)) / 12h,
/// whose truncation error is h⁴ f⁽⁵⁾/30 (at h = 1e-4 and inputs >= 0.1, where ln's fifth derivative
/// is at most 2.4e6, below 1e-11) and rounding error about ε|J|/h ≈ 1e-12: agreement to 1e-9
/// relative (plus 1e-10 absolute for entries near 0).
void check_gradient(const Loss& loss, const ad::Array<double>& a0) {
  ad::Tape tape;
  ad::Tensor a = tape.leaf(a0);
  auto g = tape.gradient(loss(a));
  const ad::View ga = g[a];
  const double h = 1e-4;
  for (std::int64_t i = 0; i < a0.size(); ++i) {
    auto at = [&](double d) {
      ad::Array<double> p = a0;
      p[i] += d;
      return value_at(loss, p);
    };
    const double fd = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
    CAPTURE(i);
    CHECK(std::abs(ga.flat(i) - fd) <= 1e-9 * std::abs(fd) + 1e-10);
  }
}

const std::vector<std::int32_t> labels{2, 0, 1};
const ad::Array<double> logits = values({3, 4}, {0.5, -1.2, 2.0, 0.1, 1.5, 0.3, -0.7, 0.0, -2.0, 3.0, 0.25, 1.0});

}  // namespace

TEST_CASE("nn: squared error is ½‖y − a‖² averaged over the batch (9.22), gradient (a − y)/B") {
  const ad::Array<double> a = values({2, 3}, {0.2, 0.9, -0.4, 1.0, 0.0, 0.5});
  const ad::Array<double> y = values({2, 3}, {0.0, 1.0, 0.0, 1.0, 1.0, 0.0});
  double want = 0;
  for (std::int64_t i = 0; i < 6; ++i) want += 0.5 * (y[i] - a[i]) * (y[i] - a[i]);
  want /= 2;
  ad::Tape tape;
  ad::Tensor at = tape.leaf(a);
  ad::Tensor J = nn::squared_error(at, y);
  CHECK(J.shape().empty());
  CHECK(J.item() == doctest::Approx(want).epsilon(1e-15));
  auto g = tape.gradient(J);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(g[at].flat(i) == doctest::Approx((a[i] - y[i]) / 2).epsilon(1e-15));
  check_gradient([&](const ad::Tensor& t) { return nn::squared_error(t, y); }, a);
}

TEST_CASE("nn: cross-entropy on probabilities (9.24), with one-hot targets or labels (9.25)") {
  const ad::Array<double> p = values({2, 3}, {0.2, 0.5, 0.3, 0.6, 0.1, 0.3});
  const ad::Array<double> y = values({2, 3}, {0, 1, 0, 1, 0, 0});
  const std::vector<std::int32_t> lab{1, 0};
  ad::Tape tape;
  const double want = -(std::log(0.5) + std::log(0.6)) / 2;
  CHECK(nn::cross_entropy(tape.leaf(p), tape.constant(y)).item() == doctest::Approx(want).epsilon(1e-15));
  CHECK(nn::cross_entropy(tape.leaf(p), lab).item() == doctest::Approx(want).epsilon(1e-15));
  // Soft targets are allowed too.
  const ad::Array<double> soft = values({2, 3}, {0.1, 0.7, 0.2, 0.5, 0.25, 0.25});
  check_gradient([&](const ad::Tensor& t) { return nn::cross_entropy(t, t.tape()->constant(soft)); }, p);
  check_gradient([&](const ad::Tensor& t) { return nn::cross_entropy(t, lab); }, p);
}

TEST_CASE("nn: fused softmax-cross-entropy equals softmax then cross-entropy, values and gradients") {
  ad::Tape tape;
  ad::Tensor z1 = tape.leaf(logits);
  ad::Tensor fused = nn::softmax_cross_entropy(z1, labels);
  auto g1 = tape.gradient(fused);
  const ad::Array<double> d_fused = g1.array<double>(z1);

  ad::Tape tape2;
  ad::Tensor z2 = tape2.leaf(logits);
  ad::Tensor composed = nn::cross_entropy(nn::softmax(z2), ad::one_hot(tape2, labels, 4, ad::DType::f64));
  auto g2 = tape2.gradient(composed);
  CHECK(fused.item() == doctest::Approx(composed.item()).epsilon(1e-14));
  for (std::int64_t i = 0; i < logits.size(); ++i)
    CHECK(d_fused[i] == doctest::Approx(g2[z2].flat(i)).epsilon(1e-13));

  // ∂J/∂z = (softmax(z) − y)/B, the seed's corrected δ^(L) = a − y per sample.
  for (std::int64_t r = 0; r < 3; ++r) {
    double m = -INFINITY, s = 0;
    for (std::int64_t k = 0; k < 4; ++k) m = std::max(m, logits(r, k));
    for (std::int64_t k = 0; k < 4; ++k) s += std::exp(logits(r, k) - m);
    for (std::int64_t k = 0; k < 4; ++k) {
      const double a = std::exp(logits(r, k) - m) / s, y = k == labels[static_cast<std::size_t>(r)] ? 1.0 : 0.0;
      CHECK(d_fused(r, k) == doctest::Approx((a - y) / 3).epsilon(1e-14));
    }
  }
  check_gradient([&](const ad::Tensor& t) { return nn::softmax_cross_entropy(t, labels); }, logits);
}

TEST_CASE("nn: fused softmax-cross-entropy stays finite and exact at extreme logits") {
  ad::Tape tape;
  const ad::Array<double> big = values({2, 3}, {1000.0, -1000.0, 0.0, -1000.0, 999.0, 1000.0});
  ad::Tensor z = tape.leaf(big);
  const std::vector<std::int32_t> lab{1, 1};
  ad::Tensor J = nn::softmax_cross_entropy(z, lab);
  // Row 0: −log_softmax at −1000 = 2000 (exactly, to double precision); row 1: 1 + ln(1 + e^-1).
  const double want = (2000.0 + 1.0 + std::log1p(std::exp(-1.0))) / 2;
  CHECK(std::isfinite(J.item()));
  CHECK(J.item() == doctest::Approx(want).epsilon(1e-15));
  auto g = tape.gradient(J);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(std::isfinite(g[z].flat(i)));
  CHECK(g[z].at({0, 1}) == doctest::Approx(-0.5).epsilon(1e-15));

  ad::Tape t32;
  ad::Array<float> big32(ad::Shape{1, 2}, {88.0f, -88.0f});
  CHECK(std::isfinite(nn::softmax_cross_entropy(t32.leaf(big32), std::vector<std::int32_t>{1}).item()));
}

TEST_CASE("nn: binary cross-entropy, value and gradient") {
  const ad::Array<double> p = values({2, 2}, {0.9, 0.2, 0.35, 0.6});
  const ad::Array<double> y = values({2, 2}, {1.0, 0.0, 1.0, 0.25});
  double want = 0;
  for (std::int64_t i = 0; i < 4; ++i) want -= y[i] * std::log(p[i]) + (1 - y[i]) * std::log(1 - p[i]);
  want /= 2;
  ad::Tape tape;
  CHECK(nn::binary_cross_entropy(tape.leaf(p), tape.constant(y)).item() == doctest::Approx(want).epsilon(1e-15));
  check_gradient([&](const ad::Tensor& t) { return nn::binary_cross_entropy(t, t.tape()->constant(y)); }, p);
}

TEST_CASE("nn: losses refuse mismatched shapes and label counts, and labels out of range throw IndexError") {
  ad::Tape tape;
  ad::Tensor a = tape.leaf(ad::Array<double>(ad::Shape{2, 3}));
  ad::Tensor y = tape.constant(ad::Array<double>(ad::Shape{3, 2}));
  const std::size_t before = tape.entries();
  CHECK_THROWS_AS(nn::squared_error(a, y), ad::ShapeError);
  CHECK_THROWS_AS(nn::cross_entropy(a, y), ad::ShapeError);
  CHECK_THROWS_AS(nn::binary_cross_entropy(a, y), ad::ShapeError);
  CHECK_THROWS_AS(nn::softmax_cross_entropy(a, std::vector<std::int32_t>{0}), ad::ShapeError);
  CHECK(tape.entries() == before);
  CHECK_THROWS_AS(nn::softmax_cross_entropy(a, std::vector<std::int32_t>{0, 3}), ad::IndexError);
  CHECK_THROWS_AS(nn::squared_error(a, tape.constant(ad::Array<float>(ad::Shape{2, 3}))), ad::DTypeError);
}
