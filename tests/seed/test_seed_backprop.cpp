// The comparison suite: the hand-derived backward pass (nn/backprop) against the tape.
//
// For every hidden activation × output/loss pair, every depth 1–4, batch 1 and 32, and λ 0 and
// 0.01, on random non-square networks, every δ^(l), ∂J/∂W^(l), ∂J/∂b^(l) of the hand formulas
// must equal what one reverse sweep of the tape gives, to 1e-10 relative (float64; the two differ
// only by rounding, ~1e-15).
//
// Batch and residual: the tape's J is the batch mean (1/m) Σ_n J_n + (λ/2) Σ ‖W‖², so the adjoint
// the tape holds for z^(l) is ∂J/∂z^(l) = δ^(l)/m, where δ_n^(l) = ∂J_n/∂z_n^(l) is the seed's
// per-sample residual.  The tests compare δ^(l)/m with the tape's adjoint.
#include <doctest/doctest.h>

#include <cmath>

#include "seed/seed_support.hpp"

using namespace seed_test;
using nn::backprop::Formulas;
using nn::backprop::Pass;

namespace {

constexpr double tol = 1e-10;

/// Runs every depth × batch × λ for one (hidden, output, loss) and returns how many networks
/// were compared.
int compare_with_tape(Act hidden, Act output, Loss loss, std::uint64_t salt) {
  int compared = 0;
  for (int depth = 1; depth <= 4; ++depth)
    for (std::int64_t m : {1, 32})
      for (double lambda : {0.0, 0.01}) {
        const std::uint64_t seed = salt * 1000 + static_cast<std::uint64_t>(depth * 100 + m * 2 + (lambda > 0));
        std::mt19937_64 rng(seed);
        const auto sizes = non_square_sizes(depth, rng);
        const Network net = random_network(sizes, hidden, output, rng);
        const Mat x = random_batch(m, sizes.front(), rng);
        const Mat y = random_targets(m, sizes.back(), output, loss, rng);
        INFO(describe(sizes, m, lambda, seed));

        const Pass hand = nn::backprop::forward_backward(net, x, y, loss, lambda);
        const TapeAnswer tape = on_tape(net, x, y, loss, lambda);
        CHECK(std::fabs(hand.loss - tape.loss) <= 1e-13 * std::max(1.0, std::fabs(tape.loss)));
        for (std::int64_t l = 1; l <= net.layers(); ++l) {
          const auto k = static_cast<std::size_t>(l - 1);
          INFO("layer ", l);
          CHECK(relative_difference(hand.layer(l).z, tape.z[k]) <= 1e-14);
          CHECK(relative_difference(hand.layer(l).a, tape.a[k]) <= 1e-14);
          // The tape's adjoint of layer<l>.z is δ^(l)/m (the loss is a batch mean).
          CHECK(relative_difference(scaled(hand.layer(l).delta, 1.0 / static_cast<double>(m)), tape.z_adjoint[k]) <= tol);
          CHECK(relative_difference(hand.layer(l).dW, tape.dW[k]) <= tol);
          CHECK(relative_difference(hand.layer(l).db, tape.db[k]) <= tol);
        }
        ++compared;
      }
  return compared;
}

}  // namespace

// Output layer: 9.23 with f = identity, where δ^(L) = a − y is literally the residual of the fit.
TEST_CASE("seed: 9.23 9.19 9.21 identity output + squared error / sigmoid hidden") {
  CHECK(compare_with_tape(Act::sigmoid, Act::identity, Loss::squared_error, 11) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 identity output + squared error / tanh hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::identity, Loss::squared_error, 12) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 identity output + squared error / relu hidden") {
  CHECK(compare_with_tape(Act::relu, Act::identity, Loss::squared_error, 13) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 identity output + squared error / leaky_relu hidden") {
  CHECK(compare_with_tape(Act::leaky_relu, Act::identity, Loss::squared_error, 14) == 16);
}

// Output layer: 9.23, δ^(L) = −(y − a) ⊙ f′(z) with f = sigmoid.
TEST_CASE("seed: 9.23 9.19 9.21 sigmoid output + squared error / sigmoid hidden") {
  CHECK(compare_with_tape(Act::sigmoid, Act::sigmoid, Loss::squared_error, 21) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 sigmoid output + squared error / tanh hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::sigmoid, Loss::squared_error, 22) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 sigmoid output + squared error / relu hidden") {
  CHECK(compare_with_tape(Act::relu, Act::sigmoid, Loss::squared_error, 23) == 16);
}
TEST_CASE("seed: 9.23 9.19 9.21 sigmoid output + squared error / leaky_relu hidden") {
  CHECK(compare_with_tape(Act::leaky_relu, Act::sigmoid, Loss::squared_error, 24) == 16);
}

// Output layer: squared error through softmax, δ^(L) = J_softmaxᵀ (a − y) (9.23 does not apply).
TEST_CASE("seed: 9.23 softmax Jacobian form 9.19 9.21 softmax output + squared error / sigmoid hidden") {
  CHECK(compare_with_tape(Act::sigmoid, Act::softmax, Loss::squared_error, 31) == 16);
}
TEST_CASE("seed: 9.23 softmax Jacobian form 9.19 9.21 softmax output + squared error / tanh hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::softmax, Loss::squared_error, 32) == 16);
}
TEST_CASE("seed: 9.23 softmax Jacobian form 9.19 9.21 softmax output + squared error / relu hidden") {
  CHECK(compare_with_tape(Act::relu, Act::softmax, Loss::squared_error, 33) == 16);
}
TEST_CASE("seed: 9.23 softmax Jacobian form 9.19 9.21 softmax output + squared error / leaky_relu hidden") {
  CHECK(compare_with_tape(Act::leaky_relu, Act::softmax, Loss::squared_error, 34) == 16);
}

// Output layer: 9.26, δ_k̃ = −f′(z_k̃)/f(z_k̃) = a_k̃ − 1 for sigmoid, 0 at the other outputs.
TEST_CASE("seed: 9.26 9.19 9.21 sigmoid output + cross-entropy / sigmoid hidden") {
  CHECK(compare_with_tape(Act::sigmoid, Act::sigmoid, Loss::cross_entropy, 41) == 16);
}
TEST_CASE("seed: 9.26 9.19 9.21 sigmoid output + cross-entropy / tanh hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::sigmoid, Loss::cross_entropy, 42) == 16);
}
TEST_CASE("seed: 9.26 9.19 9.21 sigmoid output + cross-entropy / relu hidden") {
  CHECK(compare_with_tape(Act::relu, Act::sigmoid, Loss::cross_entropy, 43) == 16);
}
TEST_CASE("seed: 9.26 9.19 9.21 sigmoid output + cross-entropy / leaky_relu hidden") {
  CHECK(compare_with_tape(Act::leaky_relu, Act::sigmoid, Loss::cross_entropy, 44) == 16);
}

// Output layer: corrected 9.27, δ^(L) = a − y.
TEST_CASE("seed: 9.27 corrected 9.19 9.21 softmax output + cross-entropy / sigmoid hidden") {
  CHECK(compare_with_tape(Act::sigmoid, Act::softmax, Loss::cross_entropy, 51) == 16);
}
TEST_CASE("seed: 9.27 corrected 9.19 9.21 softmax output + cross-entropy / tanh hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::softmax, Loss::cross_entropy, 52) == 16);
}
TEST_CASE("seed: 9.27 corrected 9.19 9.21 softmax output + cross-entropy / relu hidden") {
  CHECK(compare_with_tape(Act::relu, Act::softmax, Loss::cross_entropy, 53) == 16);
}
TEST_CASE("seed: 9.27 corrected 9.19 9.21 softmax output + cross-entropy / leaky_relu hidden") {
  CHECK(compare_with_tape(Act::leaky_relu, Act::softmax, Loss::cross_entropy, 54) == 16);
}

// Beyond the seed: binary cross-entropy on sigmoid outputs, δ^(L) = a − y (used by examples/mse_vs_ce).
TEST_CASE("seed: binary cross-entropy 9.19 9.21 sigmoid output / tanh and relu hidden") {
  CHECK(compare_with_tape(Act::tanh, Act::sigmoid, Loss::binary_cross_entropy, 61) == 16);
  CHECK(compare_with_tape(Act::relu, Act::sigmoid, Loss::binary_cross_entropy, 62) == 16);
}
