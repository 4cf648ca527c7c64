// Writing your own op: a numerically stable logsumexp over the rows of a matrix, with its own
// forward and backward code, recorded on the tape like a built-in op and checked against central
// finite differences.  Exits with status 1 if the check fails.
//
//   logsumexp(x)[i] = m_i + log Σ_j exp(x[i,j] − m_i),   m_i = max_j x[i,j]
//   d logsumexp(x)[i] / d x[i,j] = exp(x[i,j] − logsumexp(x)[i]) = softmax(x)[i,j]
//
// Subtracting the row maximum keeps every exponent ≤ 0, so rows like [1000, 1001] give 1001.31…
// instead of inf.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include <fmt/core.h>

#include "autodiff/autodiff.hpp"

namespace {

/// logsumexp over the last axis of a [rows, cols] float64 tensor: a [rows] tensor.
ad::Tensor logsumexp_rows(const ad::Tensor& x) {
  const std::int64_t rows = x.dim(0), cols = x.dim(1);
  const auto xv = x.value().as<double>();
  ad::Array<double> y(ad::Shape{rows});
  for (std::int64_t i = 0; i < rows; ++i) {
    const double* row = xv.data() + i * cols;
    const double m = *std::max_element(row, row + cols);
    double s = 0.0;
    for (std::int64_t j = 0; j < cols; ++j) s += std::exp(row[j] - m);
    y[i] = m + std::log(s);
  }
  // The backward rule: dx[i,j] += g[i] · exp(x[i,j] − y[i]).  It adds (x may feed other ops too).
  return ad::custom_op<double>("logsumexp", {x}, std::move(y), [cols](ad::CustomBackward& b) {
    const auto x = b.input<double>(0), y = b.output<double>(), g = b.grad<double>();
    const auto dx = b.input_grad<double>(0);
    for (std::size_t n = 0; n < dx.size(); ++n) {
      const std::size_t i = n / static_cast<std::size_t>(cols);
      dx[n] += g[i] * std::exp(x[n] - y[i]);
    }
  });
}

}  // namespace

int main() {
  // Record it, use it, differentiate it: like any op.
  ad::Tape tape;
  const ad::Tensor x = tape.name(tape.leaf(ad::Array<double>(ad::Shape{2, 3}, {1000, 1001, 999, -2, 0.5, 1})), "x");
  const ad::Tensor lse = tape.name(logsumexp_rows(x), "lse");
  const ad::Tensor loss = tape.name(ad::sum(lse), "loss");
  const ad::Gradients g = tape.gradient(loss);
  fmt::print("{}\n", tape);
  const double first = lse.value().flat(0);
  fmt::print("logsumexp of [1000, 1001, 999] = {:.12g} (finite: {})\n", first, std::isfinite(first));
  double row_sum = 0;
  for (std::int64_t j = 0; j < 3; ++j) row_sum += g[x].flat(j);
  fmt::print("its gradient is the row's softmax, summing to {:.15g}\n", row_sum);

  // Check the backward rule against central differences, at moderate values.
  const ad::GradientReport report = ad::check_gradient<double>(
      [](ad::Tape&, std::span<const ad::Tensor> in) { return logsumexp_rows(in[0] * in[0]); },
      {ad::Array<double>(ad::Shape{3, 4}, {0.3, -1.2, 2.0, 0.7, 1.1, 1.1, -0.4, 0.0, -2.5, 0.9, 0.2, -0.6})});
  fmt::print("{}\n", report.message());
  const bool ok = report.passed && std::isfinite(first) && std::fabs(row_sum - 1.0) < 1e-12;
  return ok ? 0 : 1;
}
