#include "autodiff/second_order.hpp"

#include <vector>

namespace ad {

namespace {

/// Unit directions: e_j over the inputs laid end to end, as one Array per input (all zero but one).
struct Units {
  std::vector<Array<double>> arrays;
  std::int64_t total = 0;

  explicit Units(std::span<const Tensor> inputs) {
    for (const Tensor& x : inputs) {
      arrays.emplace_back(x.shape());
      total += numel(x.shape());
    }
  }
  /// Sets e_j (clearing the previous one) and returns the directions.
  std::vector<Direction> at(std::span<const Tensor> inputs, std::int64_t j) {
    std::vector<Direction> d;
    std::int64_t offset = 0;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
      auto v = arrays[k].values();
      std::fill(v.begin(), v.end(), 0.0);
      const std::int64_t n = arrays[k].size();
      if (j >= offset && j < offset + n) v[static_cast<std::size_t>(j - offset)] = 1.0;
      offset += n;
      d.emplace_back(inputs[k], arrays[k]);
    }
    return d;
  }
};

}  // namespace

Array<double> jacobian(Tape& tape, const Tensor& y, std::span<const Tensor> inputs, Sweep sweep) {
  if (y.empty()) throw InvalidArgument("jacobian: empty Tensor as the output");
  tape.check(y.tape(), y.generation(), y.index(), "jacobian");
  Units units(inputs);
  const std::int64_t m = numel(y.shape()), n = units.total;
  Array<double> J(Shape{m, n});
  if (sweep == Sweep::forward || (sweep == Sweep::automatic && n <= m)) {
    for (std::int64_t j = 0; j < n; ++j) {
      const Array<double> col = jvp(tape, y, units.at(inputs, j));
      for (std::int64_t i = 0; i < m; ++i) J[i * n + j] = std::as_const(col)[i];
    }
  } else {
    Array<double> w(y.shape());
    for (std::int64_t i = 0; i < m; ++i) {
      auto wv = w.values();
      std::fill(wv.begin(), wv.end(), 0.0);
      wv[static_cast<std::size_t>(i)] = 1.0;
      const Gradients g = tape.vjp(y, w.view());
      std::int64_t j = 0;
      for (const Tensor& x : inputs) {
        const View row = g[x];
        for (std::int64_t e = 0; e < row.size(); ++e) J[i * n + j++] = row.flat(e);
      }
    }
  }
  return J;
}

Array<double> jacobian(Tape& tape, std::span<const Var> ys, std::span<const Var> xs, Sweep sweep) {
  const auto m = static_cast<std::int64_t>(ys.size()), n = static_cast<std::int64_t>(xs.size());
  Array<double> J(Shape{m, n});
  if (sweep == Sweep::forward || (sweep == Sweep::automatic && n <= m)) {
    std::vector<Direction> d;
    for (const Var& x : xs) d.emplace_back(x, 0.0);
    for (std::int64_t j = 0; j < n; ++j) {
      for (std::int64_t k = 0; k < n; ++k) d[static_cast<std::size_t>(k)] = Direction(xs[static_cast<std::size_t>(k)], k == j ? 1.0 : 0.0);
      const Tangents t = jvp(tape, d);
      for (std::int64_t i = 0; i < m; ++i) J[i * n + j] = t[ys[static_cast<std::size_t>(i)]];
    }
  } else {
    for (std::int64_t i = 0; i < m; ++i) {
      const Gradients g = tape.gradient(ys[static_cast<std::size_t>(i)]);
      for (std::int64_t j = 0; j < n; ++j) J[i * n + j] = g[xs[static_cast<std::size_t>(j)]];
    }
  }
  return J;
}

Array<double> hessian(Tape& tape, const Tensor& loss, std::span<const Tensor> inputs) {
  Units units(inputs);
  const std::int64_t n = units.total;
  Array<double> H(Shape{n, n});
  for (std::int64_t j = 0; j < n; ++j) {
    const Gradients r = hvp(tape, loss, units.at(inputs, j));
    std::int64_t i = 0;
    for (const Tensor& x : inputs) {
      const View col = r[x];
      for (std::int64_t e = 0; e < col.size(); ++e) H[i++ * n + j] = col.flat(e);
    }
  }
  return H;
}

Array<double> hessian(Tape& tape, const Var& loss, std::span<const Var> xs) {
  const auto n = static_cast<std::int64_t>(xs.size());
  Array<double> H(Shape{n, n});
  std::vector<Direction> d;
  for (const Var& x : xs) d.emplace_back(x, 0.0);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t k = 0; k < n; ++k) d[static_cast<std::size_t>(k)] = Direction(xs[static_cast<std::size_t>(k)], k == j ? 1.0 : 0.0);
    const Gradients r = hvp(tape, loss, d);
    for (std::int64_t i = 0; i < n; ++i) H[i * n + j] = r[xs[static_cast<std::size_t>(i)]];
  }
  return H;
}

}  // namespace ad
