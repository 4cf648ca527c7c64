// Shared by the tests of the seed's derivation: random networks, batches and targets, the tape's
// answer for the same network, and the relative difference used to compare them.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "nn/backprop.hpp"
#include "nn/nn.hpp"

namespace seed_test {

using nn::backprop::Act;
using nn::backprop::Loss;
using nn::backprop::Mat;
using nn::backprop::Network;

/// A random network with the given widths s_0..s_L; weights ~ N(0, 1/s_{l-1}) scaled by `gain`,
/// biases ~ N(0, 0.1²).
Network random_network(const std::vector<std::int64_t>& sizes, Act hidden, Act output, std::mt19937_64& rng,
                       double gain = 1.0);

/// Widths s_0..s_L for `depth` layers, each in [2, 7], adjacent widths always different, so that
/// no layer is square.
std::vector<std::int64_t> non_square_sizes(int depth, std::mt19937_64& rng);

/// A batch x [m, s_0] ~ N(0, 1).
Mat random_batch(std::int64_t m, std::int64_t s0, std::mt19937_64& rng);

/// Targets [m, s_L] suited to the output and loss: one-hot rows for cross-entropy and softmax
/// outputs (9.25), values in (0, 1) for sigmoid outputs with squared error, N(0, 1) for identity.
Mat random_targets(std::int64_t m, std::int64_t sL, Act output, Loss loss, std::mt19937_64& rng);

/// One-hot rows with 1 at labels[n].
Mat one_hot(const std::vector<int>& labels, std::int64_t classes);

/// The same network as an nn::MLP in float64 with the same weights: its recorded values are named
/// layer<l>.z, layer<l>.a and its parameters layer<l>.W, layer<l>.b.
nn::MLP to_mlp(const Network& net);

/// What the tape computed for the same network and batch.
struct TapeAnswer {
  double loss = 0.0;
  std::vector<Mat> z_adjoint;  ///< [l-1]: the tape's adjoint of layer<l>.z, which is δ^(l) / m
  std::vector<Mat> dW, db;     ///< [l-1]: the tape's gradient of layer<l>.W, layer<l>.b
  std::vector<Mat> z, a;       ///< [l-1]: the recorded values of layer<l>.z, layer<l>.a
};

/// Records the network's forward pass and loss on a tape and sweeps it once.
TapeAnswer on_tape(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda);

/// The Jacobian ∂z^(l+1)/∂z^(l) of sample n as the tape computes it: entry (j, i) is the adjoint
/// of z_i^(l) after a sweep seeded at z_j^(l+1).  [s_{l+1}, s_l].
Mat tape_dz_next_dz(const Network& net, const Mat& x, std::int64_t l, std::int64_t n);

/// max_k |h_k − t_k| / max_k |t_k|: the difference relative to the size of the reference tensor
/// (0 when both are exactly zero; +inf when only the reference is zero).
double relative_difference(const Mat& h, const Mat& t);

/// The same array times c.
Mat scaled(const Mat& a, double c);

/// "sizes 3-5-2, batch 32, lambda 0.01, seed 7" for failure messages.
std::string describe(const std::vector<std::int64_t>& sizes, std::int64_t m, double lambda, std::uint64_t seed);

}  // namespace seed_test
