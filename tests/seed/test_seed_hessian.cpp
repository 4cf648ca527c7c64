// The last layer of softmax + cross-entropy, second order: the hand formula of nn/backprop
// (batch mean of (diag(a) − a aᵀ) ⊗ x xᵀ) against the Hessian the tape computes by forward over
// reverse, on random seed networks, the way the first-order formulas are compared.
#include <doctest/doctest.h>

#include <cmath>

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
