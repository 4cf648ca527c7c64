// The tape's side of the walkthrough: the same network as an nn::MLP (float64), recorded on an
// ad::Tape and swept once.  δ^(l) is read by name, as the adjoint of `layer<l>.z`.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nn/backprop.hpp"
#include "nn/nn.hpp"

/// What one reverse sweep of the tape gives for the network (one entry per layer, [l-1]).
struct TapeRun {
  double J = 0.0;
  std::vector<nn::backprop::Mat> z, a;    ///< recorded values of layer<l>.z, layer<l>.a
  std::vector<nn::backprop::Mat> dz;      ///< adjoints of layer<l>.z: δ^(l) (one sample, so no 1/m)
  std::vector<nn::backprop::Mat> dW, db;  ///< adjoints of layer<l>.W, layer<l>.b
};

namespace walkthrough_detail {

inline nn::backprop::Mat matrix(std::int64_t r, std::int64_t c, std::initializer_list<double> v) {
  return nn::backprop::Mat({r, c}, std::span<const double>(v.begin(), v.size()));
}
inline nn::backprop::Mat vector(std::initializer_list<double> v) {
  return nn::backprop::Mat({static_cast<std::int64_t>(v.size())}, std::span<const double>(v.begin(), v.size()));
}

inline nn::Activation to_nn(nn::backprop::Act f) {
  using nn::backprop::Act;
  switch (f) {
    case Act::identity: return nn::identity;
    case Act::sigmoid: return nn::sigmoid;
    case Act::tanh: return nn::tanh;
    case Act::relu: return nn::relu;
    case Act::leaky_relu: return nn::leaky_relu;
    case Act::softmax: return nn::softmax;
  }
  return nn::identity;
}

/// The network as an nn::MLP with the same weights.
inline nn::MLP to_mlp(const nn::backprop::Network& net) {
  std::vector<std::int64_t> sizes;
  for (std::int64_t l = 0; l <= net.layers(); ++l) sizes.push_back(net.width(l));
  nn::Rng rng(0);
  nn::MLP mlp(sizes, to_nn(net.hidden), to_nn(net.output), rng, {.dtype = ad::DType::f64});
  for (int l = 1; l <= static_cast<int>(net.layers()); ++l) {
    mlp.linear(l).weight().array<double>() = net.W[static_cast<std::size_t>(l - 1)];
    mlp.linear(l).bias().array<double>() = net.b[static_cast<std::size_t>(l - 1)];
  }
  return mlp;
}

/// Records the forward pass and the loss; returns J.
inline ad::Tensor record(ad::Tape& tape, nn::MLP& mlp, const nn::backprop::Mat& x, const nn::backprop::Mat& y,
                         nn::backprop::Loss loss) {
  const ad::Tensor a = mlp(tape, x);
  const ad::Tensor target = tape.constant(y);
  return loss == nn::backprop::Loss::squared_error ? nn::squared_error(a, target) : nn::cross_entropy(a, target);
}

}  // namespace walkthrough_detail

/// The network of the walkthrough (the seed's 3-4-4-3: sigmoid hidden layers, softmax output),
/// with fixed, readable weights.
inline nn::backprop::Network walkthrough_network() {
  using walkthrough_detail::matrix;
  using walkthrough_detail::vector;
  nn::backprop::Network net;
  net.hidden = nn::backprop::Act::sigmoid;
  net.output = nn::backprop::Act::softmax;
  net.W = {matrix(4, 3, {0.5, -0.3, 0.8, -0.6, 0.2, 0.4, 0.1, 0.9, -0.5, 0.7, -0.4, -0.2}),
           matrix(4, 4, {0.3, -0.7, 0.5, 0.2, 0.8, 0.1, -0.4, 0.6, -0.5, 0.4, 0.3, -0.9, 0.2, 0.6, -0.8, 0.4}),
           matrix(3, 4, {0.6, -0.2, 0.4, -0.7, -0.3, 0.8, -0.5, 0.3, 0.5, 0.1, -0.6, 0.9})};
  net.b = {vector({0.1, -0.1, 0.2, 0.0}), vector({0.0, 0.1, -0.2, 0.1}), vector({0.1, 0.0, -0.1})};
  return net;
}
/// Its sample x [1, 3] and one-hot target y [1, 3] (true class 2, counting from 1).
inline nn::backprop::Mat walkthrough_x() { return walkthrough_detail::matrix(1, 3, {1.0, 0.5, -1.0}); }
inline nn::backprop::Mat walkthrough_y() { return walkthrough_detail::matrix(1, 3, {0.0, 1.0, 0.0}); }

/// Records the walkthrough's network, sample and cross-entropy loss on `tape` (named layer<l>.W,
/// layer<l>.b, layer<l>.z, layer<l>.a and "J") and returns the loss.  `mlp` must outlive the tape's use.
inline ad::Tensor record_walkthrough(ad::Tape& tape, nn::MLP& mlp) {
  return tape.name(walkthrough_detail::record(tape, mlp, walkthrough_x(), walkthrough_y(),
                                              nn::backprop::Loss::cross_entropy),
                   "J");
}

/// The tape explorer page of the walkthrough's network (ad::write_explorer).
inline ad::Explorer write_walkthrough_explorer(const std::filesystem::path& path, ad::ExplorerOptions opt = {}) {
  nn::MLP mlp = walkthrough_detail::to_mlp(walkthrough_network());
  ad::Tape tape;
  const ad::Tensor J = record_walkthrough(tape, mlp);
  if (opt.title.empty()) opt.title = "deltagrad walkthrough: the seed's 3-4-4-3 network";
  return ad::write_explorer(tape, J, path, opt);
}

/// The tape's values and adjoints for one sample (x, y: [1, s]).
inline TapeRun tape_run(const nn::backprop::Network& net, const nn::backprop::Mat& x, const nn::backprop::Mat& y,
                        nn::backprop::Loss loss) {
  nn::MLP mlp = walkthrough_detail::to_mlp(net);
  ad::Tape tape;
  const ad::Tensor J = walkthrough_detail::record(tape, mlp, x, y, loss);
  const ad::Gradients g = tape.gradient(J);
  TapeRun r;
  r.J = J.item();
  for (std::int64_t l = 1; l <= net.layers(); ++l) {
    const auto value = [&](const std::string& name) {
      return ad::to_array<double>(tape.value_view(tape.find(name)));
    };
    r.z.push_back(value(fmt::format("layer{}.z", l)));
    r.a.push_back(value(fmt::format("layer{}.a", l)));
    r.dz.push_back(ad::to_array<double>(g[fmt::format("layer{}.z", l)]));
    r.dW.push_back(ad::to_array<double>(g[fmt::format("layer{}.W", l)]));
    r.db.push_back(ad::to_array<double>(g[fmt::format("layer{}.b", l)]));
  }
  return r;
}

/// The network after one step of nn::SGD (plain gradient descent, learning rate α) on the tape's
/// gradients of the cross-entropy loss.
inline nn::backprop::Network sgd_step_on_tape(const nn::backprop::Network& net, const nn::backprop::Mat& x,
                                              const nn::backprop::Mat& y, double alpha) {
  nn::MLP mlp = walkthrough_detail::to_mlp(net);
  ad::Tape tape;
  const ad::Tensor J = walkthrough_detail::record(tape, mlp, x, y, nn::backprop::Loss::cross_entropy);
  nn::SGD opt(mlp.parameters(), {.lr = alpha});
  opt.step(tape.gradient(J));
  nn::backprop::Network r = net;
  for (int l = 1; l <= static_cast<int>(net.layers()); ++l) {
    r.W[static_cast<std::size_t>(l - 1)] = mlp.linear(l).weight().array<double>();
    r.b[static_cast<std::size_t>(l - 1)] = mlp.linear(l).bias().array<double>();
  }
  return r;
}
