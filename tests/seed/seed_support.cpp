#include "seed/seed_support.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

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

ad::Var activate(const ad::Var& z, Act f, double slope) {
  switch (f) {
    case Act::identity: return z;
    case Act::sigmoid: return sigmoid(z);
    case Act::tanh: return tanh(z);
    case Act::relu: return relu(z);
    case Act::leaky_relu: return max(z, slope * z);
    case Act::softmax: break;
  }
  throw ad::InvalidArgument("activate: softmax is applied to a whole row");
}

Mat adjoints(const ad::Gradients& g, const std::vector<ad::Var>& v, const ad::Shape& shape) {
  Mat r(shape);
  for (std::size_t k = 0; k < v.size(); ++k) r[static_cast<std::int64_t>(k)] = g[v[k]];
  return r;
}

Mat values(const std::vector<ad::Var>& v, const ad::Shape& shape) {
  Mat r(shape);
  for (std::size_t k = 0; k < v.size(); ++k) r[static_cast<std::int64_t>(k)] = v[k].value();
  return r;
}

/// The network's forward pass recorded element by element on a scalar tape.
struct Recorded {
  std::vector<std::vector<ad::Var>> W, b, z, a;  // [l-1], row-major like the arrays
};

Recorded record(ad::Tape& tape, const Network& net, const Mat& x) {
  const std::int64_t m = x.dim(0);
  const auto L = static_cast<std::size_t>(net.layers());
  Recorded r;
  r.W.resize(L), r.b.resize(L), r.z.resize(L), r.a.resize(L);
  for (std::size_t l = 0; l < L; ++l) {
    for (double w : net.W[l].values()) r.W[l].push_back(tape.variable(w));
    for (double v : net.b[l].values()) r.b[l].push_back(tape.variable(v));
  }
  std::vector<ad::Var> in;
  for (double v : x.values()) in.push_back(tape.variable(v));
  for (std::size_t l = 0; l < L; ++l) {
    const std::int64_t out = net.W[l].dim(0), cin = net.W[l].dim(1);
    const Act f = net.activation(static_cast<std::int64_t>(l) + 1);
    for (std::int64_t n = 0; n < m; ++n) {
      std::vector<ad::Var> row;
      for (std::int64_t i = 0; i < out; ++i) {
        ad::Var s = r.b[l][static_cast<std::size_t>(i)];
        for (std::int64_t j = 0; j < cin; ++j)
          s = s + r.W[l][static_cast<std::size_t>(i * cin + j)] * in[static_cast<std::size_t>(n * cin + j)];
        r.z[l].push_back(s);
        row.push_back(s);
      }
      if (f != Act::softmax) {
        for (const auto& v : row) r.a[l].push_back(activate(v, f, net.slope));
        continue;
      }
      double zmax = -std::numeric_limits<double>::infinity();
      for (const auto& v : row) zmax = std::max(zmax, v.value());
      std::vector<ad::Var> e;
      ad::Var total = tape.variable(0.0);
      for (const auto& v : row) {
        e.push_back(exp(v - zmax));
        total = total + e.back();
      }
      for (const auto& v : e) r.a[l].push_back(v / total);
    }
    in = r.a[l];
  }
  return r;
}

}  // namespace

TapeAnswer on_tape(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda) {
  nn::backprop::check(net, x, y, "on_tape");
  ad::Tape tape;
  const std::int64_t m = x.dim(0);
  const auto L = static_cast<std::size_t>(net.layers());
  const Recorded r = record(tape, net, x);
  ad::Var data = tape.variable(0.0);
  for (std::size_t k = 0; k < r.a[L - 1].size(); ++k) {
    const double t = y[static_cast<std::int64_t>(k)];
    const ad::Var& out = r.a[L - 1][k];
    switch (loss) {
      case Loss::squared_error: data = data + 0.5 * square(t - out); break;
      case Loss::cross_entropy:
        if (t != 0.0) data = data - t * log(out);
        break;
      case Loss::binary_cross_entropy:
        if (t != 0.0) data = data - t * log(out);
        if (t != 1.0) data = data - (1.0 - t) * log(1.0 - out);
        break;
    }
  }
  ad::Var J = data / static_cast<double>(m);
  for (const auto& Wl : r.W)
    for (const auto& w : Wl) J = J + 0.5 * lambda * square(w);
  const ad::Gradients g = tape.gradient(J);
  TapeAnswer t;
  t.loss = J.value();
  for (std::size_t l = 0; l < L; ++l) {
    const ad::Shape zs{m, net.W[l].dim(0)};
    t.z_adjoint.push_back(adjoints(g, r.z[l], zs));
    t.dW.push_back(adjoints(g, r.W[l], net.W[l].shape()));
    t.db.push_back(adjoints(g, r.b[l], net.b[l].shape()));
    t.z.push_back(values(r.z[l], zs));
    t.a.push_back(values(r.a[l], zs));
  }
  return t;
}

Mat tape_dz_next_dz(const Network& net, const Mat& x, std::int64_t l, std::int64_t n) {
  ad::Tape tape;
  const Recorded r = record(tape, net, x);
  const std::int64_t s = net.width(l), s_next = net.width(l + 1);
  Mat J({s_next, s});
  for (std::int64_t j = 0; j < s_next; ++j) {
    const ad::Gradients g = tape.gradient(r.z[static_cast<std::size_t>(l)][static_cast<std::size_t>(n * s_next + j)]);
    for (std::int64_t i = 0; i < s; ++i) J(j, i) = g[r.z[static_cast<std::size_t>(l - 1)][static_cast<std::size_t>(n * s + i)]];
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
