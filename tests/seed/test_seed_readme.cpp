// The README's nn::backprop snippet ("The seed's derivation, checked"), compiled as written, and
// its comments checked against the tape.
#include <doctest/doctest.h>

#include "seed/seed_support.hpp"

TEST_CASE("seed: the README snippet computes what its comments say") {
  std::mt19937_64 rng(5);
  const seed_test::Network random = seed_test::random_network({3, 5, 4}, seed_test::Act::tanh,
                                                               seed_test::Act::softmax, rng);
  const nn::backprop::Mat W1 = random.W[0], W2 = random.W[1], b1 = random.b[0], b2 = random.b[1];
  const nn::backprop::Mat x = seed_test::random_batch(8, 3, rng);
  const nn::backprop::Mat y = seed_test::one_hot({0, 1, 2, 3, 0, 1, 2, 3}, 4);

  // ---- the snippet ----
  namespace bp = nn::backprop;
  bp::Network net{.W = {W1, W2}, .b = {b1, b2}, .hidden = bp::Act::tanh, .output = bp::Act::softmax};
  bp::Pass p = bp::forward_backward(net, x, y, bp::Loss::cross_entropy, /*lambda=*/0.01);
  const bp::Mat& delta1 = p.layer(1).delta;  // δ^(1), a row per sample: m × the tape's adjoint of layer1.z
  const bp::Mat& dW1 = p.layer(1).dW;        // ∂J/∂W^(1): the batch mean of δ xᵀ, plus λ W^(1)
  // ---- end of the snippet ----

  const seed_test::TapeAnswer tape = seed_test::on_tape(net, x, y, bp::Loss::cross_entropy, 0.01);
  CHECK(seed_test::relative_difference(delta1, seed_test::scaled(tape.z_adjoint[0], 8.0)) <= 1e-10);
  CHECK(seed_test::relative_difference(dW1, tape.dW[0]) <= 1e-10);
}
