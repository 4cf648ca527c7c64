// A third opinion: the hand-derived gradients against finite differences of J, and one step of
// gradient descent (9.14, 9.15) checked by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "seed/seed_support.hpp"

using namespace seed_test;
using nn::backprop::Pass;

namespace {

/// Five-point central difference of g at v: truncation error O(h⁴) (about h⁴ g⁽⁵⁾/30) and
/// rounding error about ε|g|/h.  h = 1e-3 balances the two for these smooth, O(1) functions: the
/// largest relative difference over this file's networks is 2.7e-10 (5e-4 gives 3.4e-10, 2e-3
/// gives 4.2e-9), hence the tolerance 1e-9 below.
double derivative_5pt(const std::function<double(double)>& g, double v, double h = 1e-3) {
  return (-g(v + 2 * h) + 8 * g(v + h) - 8 * g(v - h) + g(v - 2 * h)) / (12 * h);
}

/// J as a function of z^(l) alone: a^(l) = f(z^(l)), the layers above, the loss, and the weight
/// decay (which does not depend on z).
double loss_from_z(const Network& net, std::int64_t l, const Mat& z, const Mat& y, Loss loss, double lambda) {
  using namespace nn::backprop;
  Mat a, next;
  activation_forward(a, z, net.activation(l), net.slope);
  for (std::int64_t k = l + 1; k <= net.layers(); ++k) {
    linear_forward(next, a, net.W[static_cast<std::size_t>(k - 1)], net.b[static_cast<std::size_t>(k - 1)]);
    activation_forward(a, next, net.activation(k), net.slope);
  }
  double penalty = 0.0;
  for (const Mat& W : net.W)
    for (double w : W.values()) penalty += 0.5 * lambda * w * w;
  return loss_forward(a, y, loss) + penalty;
}

struct Estimates {
  std::vector<Mat> dz, dW, db;  // [l-1]: ∂J/∂z^(l) (= δ^(l)/m), ∂J/∂W^(l), ∂J/∂b^(l)
};

Estimates finite_differences(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda) {
  Estimates e;
  const Pass p = nn::backprop::forward(net, x, y, loss, lambda);
  for (std::int64_t l = 1; l <= net.layers(); ++l) {
    const auto k = static_cast<std::size_t>(l - 1);
    Network copy = net;
    Mat dW(net.W[k].shape()), db(net.b[k].shape());
    for (std::int64_t i = 0; i < dW.size(); ++i) {
      dW[i] = derivative_5pt([&](double v) {
        copy.W[k][i] = v;
        return nn::backprop::loss_value(copy, x, y, loss, lambda);
      }, net.W[k][i]);
      copy.W[k][i] = net.W[k][i];
    }
    for (std::int64_t i = 0; i < db.size(); ++i) {
      db[i] = derivative_5pt([&](double v) {
        copy.b[k][i] = v;
        return nn::backprop::loss_value(copy, x, y, loss, lambda);
      }, net.b[k][i]);
      copy.b[k][i] = net.b[k][i];
    }
    Mat z = p.layer(l).z, dz(z.shape());
    for (std::int64_t i = 0; i < z.size(); ++i) {
      const double z0 = z[i];
      dz[i] = derivative_5pt([&](double v) {
        z[i] = v;
        return loss_from_z(net, l, z, y, loss, lambda);
      }, z0);
      z[i] = z0;
    }
    e.dz.push_back(std::move(dz));
    e.dW.push_back(std::move(dW));
    e.db.push_back(std::move(db));
  }
  return e;
}

/// Compares every δ^(l), ∂J/∂W^(l), ∂J/∂b^(l) with finite differences over depths 1–3 and returns
/// the number of networks compared.  Only smooth hidden activations: a finite difference across
/// the kink of relu at 0 measures neither one-sided derivative.
int compare_with_finite_differences(Act hidden, Act output, Loss loss, std::uint64_t salt) {
  int compared = 0;
  for (int depth = 1; depth <= 3; ++depth) {
    const std::uint64_t seed = salt * 10 + static_cast<std::uint64_t>(depth);
    std::mt19937_64 rng(seed);
    const auto sizes = non_square_sizes(depth, rng);
    const Network net = random_network(sizes, hidden, output, rng);
    const std::int64_t m = 4;
    const double lambda = 0.01;
    const Mat x = random_batch(m, sizes.front(), rng);
    const Mat y = random_targets(m, sizes.back(), output, loss, rng);
    INFO(describe(sizes, m, lambda, seed));
    const Pass hand = nn::backprop::forward_backward(net, x, y, loss, lambda);
    const Estimates fd = finite_differences(net, x, y, loss, lambda);
    for (std::int64_t l = 1; l <= net.layers(); ++l) {
      const auto k = static_cast<std::size_t>(l - 1);
      INFO("layer ", l);
      CHECK(relative_difference(scaled(hand.layer(l).delta, 1.0 / m), fd.dz[k]) <= 1e-9);
      CHECK(relative_difference(hand.layer(l).dW, fd.dW[k]) <= 1e-9);
      CHECK(relative_difference(hand.layer(l).db, fd.db[k]) <= 1e-9);
    }
    ++compared;
  }
  return compared;
}

}  // namespace

TEST_CASE("seed: finite differences agree with 9.19 9.21 9.23 for squared error outputs") {
  for (Act hidden : {Act::sigmoid, Act::tanh}) {
    CHECK(compare_with_finite_differences(hidden, Act::identity, Loss::squared_error, 71) == 3);
    CHECK(compare_with_finite_differences(hidden, Act::sigmoid, Loss::squared_error, 72) == 3);
    CHECK(compare_with_finite_differences(hidden, Act::softmax, Loss::squared_error, 73) == 3);
  }
}

TEST_CASE("seed: finite differences agree with 9.19 9.21 9.26 9.27 for cross-entropy outputs") {
  for (Act hidden : {Act::sigmoid, Act::tanh}) {
    CHECK(compare_with_finite_differences(hidden, Act::sigmoid, Loss::cross_entropy, 81) == 3);
    CHECK(compare_with_finite_differences(hidden, Act::softmax, Loss::cross_entropy, 82) == 3);
    CHECK(compare_with_finite_differences(hidden, Act::sigmoid, Loss::binary_cross_entropy, 83) == 3);
  }
}

// 9.14/9.15: W ← W − α ∂J/∂W, b ← b − α ∂J/∂b.  The hand step (with the hand gradients, λW included)
// against the same step from the tape's gradients, and against nn::SGD, which adds λW itself.
TEST_CASE("seed: 9.14 9.15 one gradient-descent step by hand") {
  std::mt19937_64 rng(1914);
  const Network net = random_network({4, 6, 3}, Act::tanh, Act::softmax, rng);
  const Mat x = random_batch(32, 4, rng);
  const Mat y = random_targets(32, 3, Act::softmax, Loss::cross_entropy, rng);
  const double alpha = 1e-3, lambda = 0.01;
  const TapeAnswer tape = on_tape(net, x, y, Loss::cross_entropy, lambda);
  const Pass hand = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, lambda);
  Network stepped = net;
  nn::backprop::gradient_descent_step(stepped, hand, alpha);
  double squared_norm = 0.0;
  for (std::size_t k = 0; k < 2; ++k) {
    for (std::int64_t i = 0; i < net.W[k].size(); ++i) {
      CHECK(stepped.W[k][i] == doctest::Approx(net.W[k][i] - alpha * tape.dW[k][i]).epsilon(1e-14));
      squared_norm += tape.dW[k][i] * tape.dW[k][i];
    }
    for (std::int64_t i = 0; i < net.b[k].size(); ++i) {
      CHECK(stepped.b[k][i] == doctest::Approx(net.b[k][i] - alpha * tape.db[k][i]).epsilon(1e-14));
      squared_norm += tape.db[k][i] * tape.db[k][i];
    }
  }
  // nn::SGD on the tape's gradient of the data loss alone, with weight_decay λ: the same step.
  nn::MLP mlp = to_mlp(net);
  ad::Tape t;
  const ad::Tensor data_loss = nn::cross_entropy(mlp(t, x), t.constant(y));
  nn::SGD opt(mlp.parameters(), {.lr = alpha, .weight_decay = lambda});
  opt.step(t.gradient(data_loss));
  for (int l = 1; l <= 2; ++l) {
    const auto k = static_cast<std::size_t>(l - 1);
    CHECK(relative_difference(mlp.linear(l).weight().array<double>(), stepped.W[k]) <= 1e-14);
    CHECK(relative_difference(mlp.linear(l).bias().array<double>(), stepped.b[k]) <= 1e-14);
  }
  // To first order the step lowers J by α‖∇J‖²; what is left is O(α²) (about α²‖∇J‖² ‖H‖).
  const double before = nn::backprop::loss_value(net, x, y, Loss::cross_entropy, lambda);
  const double after = nn::backprop::loss_value(stepped, x, y, Loss::cross_entropy, lambda);
  CHECK(after < before);
  CHECK(std::fabs((before - after) - alpha * squared_norm) <= 10 * alpha * alpha * squared_norm);
}
