// The tape's side of the walkthrough: the same network recorded on an ad::Tape and swept once.
#pragma once

#include <vector>

#include "autodiff/autodiff.hpp"
#include "nn/backprop.hpp"

/// What one reverse sweep of the tape gives for the network (one entry per layer, [l-1]).
struct TapeRun {
  double J = 0.0;
  std::vector<nn::backprop::Mat> z, a;   ///< recorded values of z^(l), a^(l)
  std::vector<nn::backprop::Mat> dz;     ///< adjoints of z^(l): δ^(l) (one sample, so no 1/m)
  std::vector<nn::backprop::Mat> dW, db; ///< gradients of W^(l), b^(l)
};

namespace walkthrough_detail {

inline ad::Var activate(const ad::Var& z, nn::backprop::Act f) {
  using nn::backprop::Act;
  switch (f) {
    case Act::identity: return z;
    case Act::sigmoid: return sigmoid(z);
    case Act::tanh: return tanh(z);
    case Act::relu: return relu(z);
    default: throw ad::InvalidArgument("walkthrough: activation not used here");
  }
}

}  // namespace walkthrough_detail

/// Records the forward pass of one sample (x, y: [1, s]) and the loss on a scalar tape.
inline TapeRun tape_run(const nn::backprop::Network& net, const nn::backprop::Mat& x, const nn::backprop::Mat& y,
                        nn::backprop::Loss loss) {
  using nn::backprop::Act;
  using nn::backprop::Mat;
  ad::Tape tape;
  const auto L = net.W.size();
  std::vector<std::vector<ad::Var>> W(L), b(L), z(L), a(L);
  for (std::size_t l = 0; l < L; ++l) {
    for (double w : net.W[l].values()) W[l].push_back(tape.variable(w));
    for (double v : net.b[l].values()) b[l].push_back(tape.variable(v));
  }
  std::vector<ad::Var> in;
  for (double v : x.values()) in.push_back(tape.variable(v));
  for (std::size_t l = 0; l < L; ++l) {
    const auto out = static_cast<std::size_t>(net.W[l].dim(0)), cin = static_cast<std::size_t>(net.W[l].dim(1));
    for (std::size_t i = 0; i < out; ++i) {
      ad::Var s = b[l][i];
      for (std::size_t j = 0; j < cin; ++j) s = s + W[l][i * cin + j] * in[j];
      z[l].push_back(s);
    }
    const Act f = net.activation(static_cast<std::int64_t>(l) + 1);
    if (f == Act::softmax) {
      ad::Var total = tape.variable(0.0);
      std::vector<ad::Var> e;
      for (const auto& v : z[l]) total = total + (e.emplace_back(exp(v)));
      for (const auto& v : e) a[l].push_back(v / total);
    } else {
      for (const auto& v : z[l]) a[l].push_back(walkthrough_detail::activate(v, f));
    }
    in = a[l];
  }
  ad::Var J = tape.variable(0.0);
  for (std::size_t k = 0; k < a[L - 1].size(); ++k) {
    const double t = y[static_cast<std::int64_t>(k)];
    if (loss == nn::backprop::Loss::squared_error) J = J + 0.5 * square(t - a[L - 1][k]);
    else if (t != 0.0) J = J - t * log(a[L - 1][k]);
  }
  const ad::Gradients g = tape.gradient(J);
  TapeRun r;
  r.J = J.value();
  auto collect = [&](const std::vector<ad::Var>& v, const ad::Shape& shape, bool adjoint) {
    Mat m(shape);
    for (std::size_t k = 0; k < v.size(); ++k) m[static_cast<std::int64_t>(k)] = adjoint ? g[v[k]] : v[k].value();
    return m;
  };
  for (std::size_t l = 0; l < L; ++l) {
    const ad::Shape row{1, net.W[l].dim(0)};
    r.z.push_back(collect(z[l], row, false));
    r.a.push_back(collect(a[l], row, false));
    r.dz.push_back(collect(z[l], row, true));
    r.dW.push_back(collect(W[l], net.W[l].shape(), true));
    r.db.push_back(collect(b[l], net.b[l].shape(), true));
  }
  return r;
}

/// The network after one gradient-descent step W ← W − α g, b ← b − α g with the tape's gradients.
inline nn::backprop::Network sgd_step_on_tape(const nn::backprop::Network& net, const nn::backprop::Mat& x,
                                              const nn::backprop::Mat& y, double alpha) {
  const TapeRun t = tape_run(net, x, y, nn::backprop::Loss::cross_entropy);
  nn::backprop::Network r = net;
  for (std::size_t l = 0; l < r.W.size(); ++l) {
    for (std::int64_t i = 0; i < r.W[l].size(); ++i) r.W[l][i] -= alpha * t.dW[l][i];
    for (std::int64_t i = 0; i < r.b[l].size(); ++i) r.b[l][i] -= alpha * t.db[l][i];
  }
  return r;
}
