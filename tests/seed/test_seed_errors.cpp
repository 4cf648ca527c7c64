// The seed's formulas as printed, held against the tape: where each one goes wrong, and that the
// corrected form agrees everywhere.  See docs/backprop.md for the derivations.
#include <doctest/doctest.h>

#include <cmath>

#include "seed/seed_support.hpp"

using namespace seed_test;
using nn::backprop::Formulas;
using nn::backprop::Pass;

namespace {

double max_abs(const Mat& a) {
  double r = 0.0;
  for (double v : a.values()) r = std::max(r, std::fabs(v));
  return r;
}

}  // namespace

// 9.17/9.18: ∂z_j^(l+1)/∂z_i^(l).  z_j^(l+1) = Σ_k W_jk^(l+1) f(z_k^(l)) + b_j^(l+1), so the entry is
// W_ji^(l+1) f′(z_i^(l)); the seed prints W_ij^(l) f′(z_i^(l)).
TEST_CASE("seed: 9.18 corrected Jacobian entry W_ji^(l+1) f'(z_i^(l)) matches the tape and the printed W_ij^(l) does not") {
  std::mt19937_64 rng(1918);
  // 5-4-3: W^(1) is [4,5] and W^(2) is [3,4]; the printed W_ij^(1) exists for i < 4, j < 3.
  const Network net = random_network({5, 4, 3}, Act::tanh, Act::identity, rng);
  const Mat x = random_batch(2, 5, rng);
  const nn::backprop::Pass p = nn::backprop::forward(net, x, Mat({2, 3}), Loss::squared_error, 0.0);
  for (std::int64_t n = 0; n < 2; ++n) {
    const Mat tape = tape_dz_next_dz(net, x, 1, n);
    Mat corrected(tape.shape()), printed(tape.shape());
    for (std::int64_t j = 0; j < 3; ++j)
      for (std::int64_t i = 0; i < 4; ++i) {
        corrected(j, i) = nn::backprop::dz_next_dz(net.W[1], p.layer(1).z, n, j, i, Act::tanh);
        printed(j, i) = nn::backprop::seed_literal::dz_next_dz(net.W[0], p.layer(1).z, n, j, i, Act::tanh);
      }
    CHECK(relative_difference(corrected, tape) <= 1e-14);
    CHECK(relative_difference(printed, tape) > 0.1);
  }
  // 3-4-5: the printed entry W_ij^(1) with j up to s_2 = 5 does not exist in W^(1) [4,3].
  const Network wide = random_network({3, 4, 5}, Act::tanh, Act::identity, rng);
  const Mat z1({1, 4});
  CHECK_THROWS_AS(nn::backprop::seed_literal::dz_next_dz(wide.W[0], z1, 0, 4, 0, Act::tanh), ad::ShapeError);
}

// 9.19: δ^(l) = ((W^(l+1))ᵀ δ^(l+1)) ⊙ f′(z^(l)); the seed prints Σ_j W_ij^(l) δ_j^(l+1).
TEST_CASE("seed: 9.19 as printed disagrees with the tape on a non-square layer and the corrected form agrees") {
  std::mt19937_64 rng(1919);
  const Network net = random_network({5, 4, 3}, Act::sigmoid, Act::softmax, rng);
  const std::int64_t m = 8;
  const Mat x = random_batch(m, 5, rng);
  const Mat y = random_targets(m, 3, Act::softmax, Loss::cross_entropy, rng);
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, 0.0);
  const Pass corrected = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0);
  const Pass printed = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0, {.printed_9_19 = true});
  const double inv_m = 1.0 / static_cast<double>(m);
  // The output layer does not use 9.19: both agree there.
  CHECK(relative_difference(scaled(printed.layer(2).delta, inv_m), tape.z_adjoint[1]) <= 1e-10);
  // Layer 1 is where 9.19 is used: the printed form reads W^(1) [4,5] at (i, j), j < 3.
  CHECK(relative_difference(scaled(corrected.layer(1).delta, inv_m), tape.z_adjoint[0]) <= 1e-10);
  CHECK(relative_difference(scaled(printed.layer(1).delta, inv_m), tape.z_adjoint[0]) > 0.1);
  CHECK(relative_difference(printed.layer(1).dW, tape.dW[0]) > 0.1);
  CHECK(relative_difference(corrected.layer(1).dW, tape.dW[0]) <= 1e-10);

  // 3-4-5: 9.19 as printed asks for W_ij^(1), j < s_2 = 5, of W^(1) [4,3]: those weights do not exist.
  const Network wide = random_network({3, 4, 5}, Act::sigmoid, Act::softmax, rng);
  const Mat xw = random_batch(2, 3, rng);
  const Mat yw = random_targets(2, 5, Act::softmax, Loss::cross_entropy, rng);
  CHECK_THROWS_AS(nn::backprop::forward_backward(wide, xw, yw, Loss::cross_entropy, 0.0, {.printed_9_19 = true}),
                  ad::ShapeError);
}

// What exactly is wrong in 9.19: it uses W^(l) where (W^(l+1))ᵀ belongs.  With tied weights,
// W^(2) = (W^(1))ᵀ, the two coincide and the printed form gives the right numbers.
TEST_CASE("seed: 9.19 as printed is right only when W^(l) equals the transpose of W^(l+1)") {
  std::mt19937_64 rng(2019);
  Network net = random_network({3, 4, 3}, Act::tanh, Act::identity, rng);
  for (std::int64_t i = 0; i < 3; ++i)
    for (std::int64_t j = 0; j < 4; ++j) net.W[1](i, j) = net.W[0](j, i);
  const Mat x = random_batch(4, 3, rng);
  const Mat y = random_targets(4, 3, Act::identity, Loss::squared_error, rng);
  const Pass corrected = nn::backprop::forward_backward(net, x, y, Loss::squared_error, 0.0);
  const Pass printed = nn::backprop::forward_backward(net, x, y, Loss::squared_error, 0.0, Formulas::as_printed());
  CHECK(relative_difference(printed.layer(1).delta, corrected.layer(1).delta) <= 1e-15);
  // Untie one weight and the printed form is off again.
  net.W[1](0, 1) += 0.5;
  const Pass corrected2 = nn::backprop::forward_backward(net, x, y, Loss::squared_error, 0.0);
  const Pass printed2 = nn::backprop::forward_backward(net, x, y, Loss::squared_error, 0.0, Formulas::as_printed());
  CHECK(relative_difference(printed2.layer(1).delta, corrected2.layer(1).delta) > 1e-3);
}

// 9.26/9.27 for softmax: the seed takes f′ = f(1 − f) and gets δ = a_k̃ − 1 at the true class and 0
// elsewhere; the softmax Jacobian gives δ_i = a_i − 1[i = k̃].
TEST_CASE("seed: 9.27 as printed agrees at the true class and disagrees at every other class") {
  std::mt19937_64 rng(1927);
  const std::int64_t m = 32, classes = 4;
  const Network net = random_network({6, 5, classes}, Act::relu, Act::softmax, rng);
  const Mat x = random_batch(m, 6, rng);
  const Mat y = random_targets(m, classes, Act::softmax, Loss::cross_entropy, rng);
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, 0.0);
  const Pass corrected = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0);
  Mat printed;
  nn::backprop::seed_literal::softmax_cross_entropy_delta(printed, corrected.layer(2).a, y);
  const Mat tape_delta = scaled(tape.z_adjoint[1], static_cast<double>(m));  // per-sample δ = m × adjoint
  int true_class = 0, other = 0;
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t i = 0; i < classes; ++i) {
      const double t = tape_delta(n, i);
      CAPTURE(n);
      CAPTURE(i);
      CHECK(std::fabs(corrected.layer(2).delta(n, i) - t) <= 1e-12);
      if (y(n, i) == 1.0) {
        CHECK(std::fabs(printed(n, i) - t) <= 1e-12);  // a_k̃ − 1: right
        ++true_class;
      } else {
        CHECK(printed(n, i) == 0.0);  // the seed's value
        CHECK(t == doctest::Approx(corrected.layer(2).a(n, i)).epsilon(1e-12));  // the tape's: a_i
        CHECK(t > 1e-6);  // so they differ at every other class
        ++other;
      }
    }
  CHECK(true_class == m);
  CHECK(other == m * (classes - 1));
  // The error propagates: every earlier residual built from the printed δ^(L) is off too.
  const Pass printed_pass = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0, {.printed_9_27 = true});
  CHECK(relative_difference(scaled(printed_pass.layer(2).delta, 1.0 / m), tape.z_adjoint[1]) > 0.1);
  CHECK(relative_difference(printed_pass.layer(1).dW, tape.dW[0]) > 0.01);
}

// 9.26 itself is right for an element-wise f: for sigmoid outputs δ_k̃ = −f′/f = a_k̃ − 1 and 0 elsewhere,
// which is exactly what 9.27 as printed computes.  The seed's mistake is applying it to softmax.
TEST_CASE("seed: 9.26 is right for sigmoid outputs where it equals the printed 9.27 form") {
  std::mt19937_64 rng(1926);
  const std::int64_t m = 16;
  const Network net = random_network({4, 6, 3}, Act::tanh, Act::sigmoid, rng);
  const Mat x = random_batch(m, 4, rng);
  const Mat y = random_targets(m, 3, Act::sigmoid, Loss::cross_entropy, rng);
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, 0.0);
  const Pass hand = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0);
  Mat printed;
  nn::backprop::seed_literal::softmax_cross_entropy_delta(printed, hand.layer(2).a, y);
  CHECK(relative_difference(hand.layer(2).delta, printed) <= 1e-14);
  CHECK(relative_difference(scaled(printed, 1.0 / m), tape.z_adjoint[1]) <= 1e-10);
}

// 9.21: two results glued into one aligned block.  Separately, for one sample and λ = 0:
// ∂J/∂W_ij^(l) = δ_i^(l) x_j^(l) = δ_i^(l) a_j^(l−1) and ∂J/∂b_i^(l) = δ_i^(l) (this project's
// convention: W^(l) maps layer l−1 to layer l, so the residual is that of the same layer l).
TEST_CASE("seed: 9.21 dJ/dW_ij = delta_i x_j and dJ/db_i = delta_i are two separate results") {
  std::mt19937_64 rng(1921);
  const Network net = random_network({3, 4, 3}, Act::sigmoid, Act::softmax, rng);
  const Mat x = random_batch(1, 3, rng);
  const Mat y = one_hot({2}, 3);
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, 0.0);
  for (std::int64_t l = 1; l <= 2; ++l) {
    const auto k = static_cast<std::size_t>(l - 1);
    const Mat& delta = tape.z_adjoint[k];            // m = 1: the adjoint is δ^(l) itself
    const Mat& input = l == 1 ? x : tape.a[k - 1];   // x^(l) = a^(l−1)
    for (std::int64_t i = 0; i < net.width(l); ++i) {
      CHECK(tape.db[k][i] == doctest::Approx(delta(0, i)).epsilon(1e-14));
      for (std::int64_t j = 0; j < net.width(l - 1); ++j)
        CHECK(tape.dW[k](i, j) == doctest::Approx(delta(0, i) * input(0, j)).epsilon(1e-14));
    }
  }
  CHECK(max_abs(tape.db[0]) > 0.0);
}

// 9.22 and 9.24/9.25: the losses the formulas differentiate.  With a one-hot y, −Σ_k y_k ln a_k is −ln a_k̃.
TEST_CASE("seed: 9.22 squared error and 9.24 9.25 cross-entropy equal the tape's loss") {
  std::mt19937_64 rng(1922);
  const Network net = random_network({4, 5, 3}, Act::tanh, Act::softmax, rng);
  const std::int64_t m = 5;
  const Mat x = random_batch(m, 4, rng);
  const Mat y = random_targets(m, 3, Act::softmax, Loss::cross_entropy, rng);
  const Pass p = nn::backprop::forward(net, x, y, Loss::cross_entropy, 0.0);
  double by_925 = 0.0;
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t k = 0; k < 3; ++k)
      if (y(n, k) == 1.0) by_925 -= std::log(p.layer(2).a(n, k));
  CHECK(p.data_loss == doctest::Approx(by_925 / m).epsilon(1e-15));
  CHECK(p.loss == doctest::Approx(on_tape(net, x, y, Loss::cross_entropy, 0.0).loss).epsilon(1e-14));
  const Pass se = nn::backprop::forward(net, x, y, Loss::squared_error, 0.3);
  CHECK(se.loss == doctest::Approx(on_tape(net, x, y, Loss::squared_error, 0.3).loss).epsilon(1e-14));
  CHECK(se.penalty > 0.0);
}

// Softmax with cross-entropy on targets that are not one-hot: δ = a Σ_k y_k − y (= a − y when Σ y = 1).
TEST_CASE("seed: 9.27 corrected with soft and unnormalised targets") {
  std::mt19937_64 rng(2027);
  const Network net = random_network({3, 4, 4}, Act::sigmoid, Act::softmax, rng);
  const Mat x = random_batch(6, 3, rng);
  Mat y({6, 4});
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (double& v : y.values()) v = u(rng);  // rows do not sum to 1
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, 0.01);
  const Pass hand = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.01);
  for (std::int64_t l = 1; l <= 2; ++l) {
    const auto k = static_cast<std::size_t>(l - 1);
    CHECK(relative_difference(scaled(hand.layer(l).delta, 1.0 / 6), tape.z_adjoint[k]) <= 1e-10);
    CHECK(relative_difference(hand.layer(l).dW, tape.dW[k]) <= 1e-10);
  }
}

TEST_CASE("seed: nn::backprop rejects shapes that do not chain with a ShapeError naming them") {
  std::mt19937_64 rng(7);
  Network net = random_network({3, 4, 2}, Act::tanh, Act::identity, rng);
  const Mat x = random_batch(2, 3, rng), y({2, 2});
  CHECK_THROWS_AS(nn::backprop::forward(net, random_batch(2, 4, rng), y, Loss::squared_error, 0.0), ad::ShapeError);
  CHECK_THROWS_AS(nn::backprop::forward(net, x, Mat({2, 3}), Loss::squared_error, 0.0), ad::ShapeError);
  net.W[1] = Mat({2, 5});
  try {
    nn::backprop::forward(net, x, y, Loss::squared_error, 0.0);
    FAIL("no exception");
  } catch (const ad::ShapeError& e) {
    CHECK(std::string(e.what()).find("layer 2 has W f64[2,5]") != std::string::npos);
  }
  CHECK_THROWS_AS(nn::backprop::output_delta(net.W[0], x, x, x, Act::softmax, Loss::binary_cross_entropy),
                  ad::InvalidArgument);
}
