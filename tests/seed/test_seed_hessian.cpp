// The last layer of softmax + cross-entropy, second order: the hand formula of nn/backprop
// (batch mean of (diag(a) − a aᵀ) ⊗ x xᵀ) against the Hessian the tape computes by forward over
// reverse, on random seed networks, the way the first-order formulas are compared.
#include <doctest/doctest.h>

#include <cmath>

#include "autodiff/check.hpp"
#include "nn/second_order.hpp"
#include "seed/seed_support.hpp"

using namespace seed_test;

namespace {

/// Every depth 1-3 and batch 1 and 8 for one hidden activation; returns the networks compared.
int compare_last_layer_hessian(Act hidden, std::uint64_t salt) {
  int compared = 0;
  for (int depth = 1; depth <= 3; ++depth)
    for (std::int64_t m : {1, 8}) {
      const std::uint64_t seed = salt * 1000 + static_cast<std::uint64_t>(depth * 100 + m);
      std::mt19937_64 rng(seed);
      const auto sizes = non_square_sizes(depth, rng);
      const Network net = random_network(sizes, hidden, Act::softmax, rng);
      const Mat x = random_batch(m, sizes.front(), rng);
      const Mat y = random_targets(m, sizes.back(), Act::softmax, Loss::cross_entropy, rng);
      INFO(describe(sizes, m, 0.0, seed));

      // By hand: x^(L) is the data for one layer, else a^(L-1).
      const nn::backprop::Pass pass = nn::backprop::forward(net, x, y, Loss::cross_entropy, 0.0);
      const std::int64_t L = net.layers();
      const Mat& xL = L == 1 ? x : pass.layer(L - 1).a;
      Mat H;
      nn::backprop::softmax_cross_entropy_hessian(H, xL, pass.layer(L).a);

      // On the tape: ∂²J/∂W^(L)² by one Hessian-vector product per column.
      nn::MLP mlp = to_mlp(net);
      ad::Tape tape;
      const ad::Tensor a = mlp(tape, x);
      const ad::Tensor J = nn::cross_entropy(a, tape.constant(y));
      const Mat Ht = nn::hessian({mlp.linear(static_cast<int>(L)).shared_weight()}, tape, J);
      REQUIRE(Ht.shape() == H.shape());
      CHECK(relative_difference(H, Ht) <= 1e-10);
      ++compared;
    }
  return compared;
}

}  // namespace

TEST_CASE("second-order: last-layer Hessian of softmax + cross-entropy, hand formula against the tape / sigmoid hidden") {
  CHECK(compare_last_layer_hessian(Act::sigmoid, 61) == 6);
}
TEST_CASE("second-order: last-layer Hessian of softmax + cross-entropy, hand formula against the tape / tanh hidden") {
  CHECK(compare_last_layer_hessian(Act::tanh, 62) == 6);
}
TEST_CASE("second-order: last-layer Hessian of softmax + cross-entropy, hand formula against the tape / relu hidden") {
  CHECK(compare_last_layer_hessian(Act::relu, 63) == 6);
}

TEST_CASE("second-order: the last-layer Hessian formula checks its shapes") {
  Mat H;
  CHECK_THROWS_AS(nn::backprop::softmax_cross_entropy_hessian(H, Mat({3, 2}), Mat({4, 5})), ad::ShapeError);
}

TEST_CASE("second-order: Hessian of a seed network's loss with respect to a hidden layer's W and b, against differences of gradients") {
  std::mt19937_64 rng(64);
  const std::vector<std::int64_t> sizes = {3, 4, 3};
  const Network net = random_network(sizes, Act::tanh, Act::softmax, rng);
  const Mat x = random_batch(5, 3, rng);
  const Mat y = random_targets(5, 3, Act::softmax, Loss::cross_entropy, rng);
  nn::MLP mlp = to_mlp(net);
  const nn::ParameterList layer1 = {mlp.linear(1).shared_weight(), mlp.linear(1).shared_bias()};
  ad::Tape tape;
  const ad::Tensor J = nn::cross_entropy(mlp(tape, x), tape.constant(y));
  const Mat H = nn::hessian(layer1, tape, J);
  const std::int64_t n = 4 * 3 + 4;
  REQUIRE(H.shape() == ad::Shape{n, n});
  // The gradient of layer 1's W and b laid end to end, at W, b moved by ε along e_j.
  const auto gradient_at = [&](std::int64_t j, double eps, std::int64_t i) {
    Mat& W = mlp.linear(1).weight().array<double>();
    Mat& b = mlp.linear(1).bias().array<double>();
    const Mat W0 = W, b0 = b;
    if (j < 12) W[j] += eps;
    else b[j - 12] += eps;
    ad::Tape t;
    const ad::Tensor Jt = nn::cross_entropy(mlp(t, x), t.constant(y));
    const ad::Gradients g = t.gradient(Jt);
    const double r = i < 12 ? g[mlp.linear(1).weight().recorded()].flat(i) : g[mlp.linear(1).bias().recorded()].flat(i - 12);
    W = W0;
    b = b0;
    return r;
  };
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < n; ++i) {
      const ad::Difference d = ad::central_difference([&](double e) { return gradient_at(j, e, i); }, 0.0, 1.0);
      const ad::JacobianElement e = ad::compare(H(i, j), d, ad::DType::f64);
      CHECK_MESSAGE(e.error <= e.allowed, "H[", i, ",", j, "] = ", H(i, j), ", difference ", d.value);
      CHECK(std::fabs(H(i, j) - H(j, i)) <= 1e-15 * std::max(1.0, std::fabs(H(i, j))));
    }
}
