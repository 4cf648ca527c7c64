#include "seed/seed_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "nn/nn.hpp"

namespace seed_test {

Network random_network(const std::vector<std::int64_t>& sizes, Act hidden, Act output, std::mt19937_64& rng,
                       double gain) {
  Network net;
  net.hidden = hidden;
  net.output = output;
  std::normal_distribution<double> normal(0.0, 1.0);
  for (std::size_t l = 1; l < sizes.size(); ++l) {
    Mat W({sizes[l], sizes[l - 1]}), b({sizes[l]});
    const double scale = gain / std::sqrt(static_cast<double>(sizes[l - 1]));
    for (double& w : W.values()) w = scale * normal(rng);
    for (double& v : b.values()) v = 0.1 * normal(rng);
    net.W.push_back(std::move(W));
    net.b.push_back(std::move(b));
  }
  return net;
}

std::vector<std::int64_t> non_square_sizes(int depth, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::int64_t> width(2, 7);
  std::vector<std::int64_t> s{width(rng)};
  for (int l = 1; l <= depth; ++l) {
    std::int64_t w = width(rng);
    while (w == s.back()) w = width(rng);
    s.push_back(w);
  }
  return s;
}

Mat random_batch(std::int64_t m, std::int64_t s0, std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  Mat x({m, s0});
  for (double& v : x.values()) v = normal(rng);
  return x;
}

Mat one_hot(const std::vector<int>& labels, std::int64_t classes) {
  Mat y({static_cast<std::int64_t>(labels.size()), classes});
  for (std::size_t n = 0; n < labels.size(); ++n) y(n, labels[n]) = 1.0;
  return y;
}

Mat random_targets(std::int64_t m, std::int64_t sL, Act output, Loss loss, std::mt19937_64& rng) {
  if (loss == Loss::cross_entropy || output == Act::softmax) {
    std::uniform_int_distribution<int> label(0, static_cast<int>(sL) - 1);
    std::vector<int> labels(static_cast<std::size_t>(m));
    for (int& k : labels) k = label(rng);
    return one_hot(labels, sL);
  }
  Mat y({m, sL});
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> unit(0.05, 0.95);
  for (double& v : y.values()) v = output == Act::identity ? normal(rng) : unit(rng);
  return y;
}

namespace {

nn::Activation to_nn(Act f, double slope) {
  switch (f) {
    case Act::identity: return nn::identity;
    case Act::sigmoid: return nn::sigmoid;
    case Act::tanh: return nn::tanh;
    case Act::relu: return nn::relu;
    case Act::leaky_relu: return nn::leaky_relu.with_slope(slope);
    case Act::softmax: return nn::softmax;
  }
  return nn::identity;
}

}  // namespace

nn::MLP to_mlp(const Network& net) {
  std::vector<std::int64_t> sizes;
  for (std::int64_t l = 0; l <= net.layers(); ++l) sizes.push_back(net.width(l));
  nn::Rng rng(0);
  nn::MLP mlp(sizes, to_nn(net.hidden, net.slope), to_nn(net.output, net.slope), rng, {.dtype = ad::DType::f64});
  for (int l = 1; l <= static_cast<int>(net.layers()); ++l) {
    mlp.linear(l).weight().array<double>() = net.W[static_cast<std::size_t>(l - 1)];
    mlp.linear(l).bias().array<double>() = net.b[static_cast<std::size_t>(l - 1)];
  }
  return mlp;
}

namespace {

/// The recorded tensor named `name` (the latest entry with that name).
ad::Tensor named(ad::Tape& tape, const std::string& name) {
  const std::uint32_t e = tape.find(name);
  if (e == 0) throw ad::InvalidArgument("seed tests: nothing named " + name + " on the tape");
  return ad::Tensor(&tape, e, tape.generation());
}

std::string name(std::int64_t l, const char* what) { return fmt::format("layer{}.{}", l, what); }

}  // namespace

TapeAnswer on_tape(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda) {
  nn::backprop::check(net, x, y, "on_tape");
  nn::MLP mlp = to_mlp(net);
  ad::Tape tape;
  const ad::Tensor a = mlp(tape, x);
  const ad::Tensor target = tape.constant(y);
  ad::Tensor J = loss == Loss::squared_error ? nn::squared_error(a, target)
                 : loss == Loss::cross_entropy ? nn::cross_entropy(a, target)
                                               : nn::binary_cross_entropy(a, target);
  // nn's optimisers add λW themselves; here the decay term is recorded so that the tape
  // differentiates the whole J = mean loss + (λ/2) Σ ‖W^(l)‖².
  if (lambda != 0.0)
    for (int l = 1; l <= static_cast<int>(net.layers()); ++l)
      J = J + (0.5 * lambda) * ad::sum(ad::square(mlp.linear(l).weight().recorded()));
  const ad::Gradients g = tape.gradient(J);
  TapeAnswer t;
  t.loss = J.item();
  for (std::int64_t l = 1; l <= net.layers(); ++l) {
    t.z_adjoint.push_back(ad::to_array<double>(g[name(l, "z")]));  // δ^(l) / m
    t.dW.push_back(ad::to_array<double>(g[name(l, "W")]));
    t.db.push_back(ad::to_array<double>(g[name(l, "b")]));
    t.z.push_back(named(tape, name(l, "z")).to_array<double>());
    t.a.push_back(named(tape, name(l, "a")).to_array<double>());
  }
  return t;
}

Mat tape_dz_next_dz(const Network& net, const Mat& x, std::int64_t l, std::int64_t n) {
  nn::MLP mlp = to_mlp(net);
  ad::Tape tape;
  mlp(tape, x);
  const ad::Tensor z_next = named(tape, name(l + 1, "z"));
  const std::int64_t s = net.width(l), s_next = net.width(l + 1);
  Mat J({s_next, s});
  for (std::int64_t j = 0; j < s_next; ++j) {
    const ad::Gradients g = tape.gradient(ad::element(z_next, {n, j}));  // one sweep per row of the Jacobian
    const ad::View row = g[name(l, "z")];
    for (std::int64_t i = 0; i < s; ++i) J(j, i) = row.at({n, i});
  }
  return J;
}

double relative_difference(const Mat& h, const Mat& t) {
  if (h.shape() != t.shape()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, size = 0.0;
  for (std::int64_t k = 0; k < t.size(); ++k) {
    diff = std::max(diff, std::fabs(h[k] - t[k]));
    size = std::max(size, std::fabs(t[k]));
  }
  if (diff == 0.0) return 0.0;
  return size == 0.0 ? std::numeric_limits<double>::infinity() : diff / size;
}

Mat scaled(const Mat& a, double c) {
  Mat r(a);
  for (double& v : r.values()) v *= c;
  return r;
}

std::string describe(const std::vector<std::int64_t>& sizes, std::int64_t m, double lambda, std::uint64_t seed) {
  return fmt::format("sizes {}, batch {}, lambda {}, seed {}", fmt::join(sizes, "-"), m, lambda, seed);
}

}  // namespace seed_test
