// A generic Jacobian checker for tensor operations, used by every tensor-op test.
//
//     #include "jacobian.hpp"
//     jacobian::check([](ad::Tape&, std::span<const ad::Tensor> x) { return x[0] * exp(x[1]); },
//                     {jacobian::random({3, 1}, 1), jacobian::random({1, 4}, 2)});
//
// `build(tape, inputs)` records any computation on `tape` from the given leaves (float64 tensors
// made from the input Arrays) and returns its output tensor.  check() then builds the full
// Jacobian d output / d inputs twice:
//   (a) by reverse sweeps: one sweep per output element, its adjoint seeded with 1 at that element
//       and 0 elsewhere (tape.vjp with a one-hot cotangent); the adjoints of the input leaves are that row of the Jacobian;
//   (b) by central differences (fourth order, Richardson-extrapolated to sixth; see step_for),
//       re-recording `build` on a scratch tape for each perturbed copy of the inputs;
// and compares them entry by entry to 1e-9 relative (doctest CHECKs, the entry named in the
// failure message).  It also checks that every adjoint on the tape has its value's dtype and shape,
// and that recording leaves the inputs unchanged.  The check is in float64 only; test float32
// values against float64 separately.  `build` must be deterministic and differentiable at the
// given point: keep inputs further than 2h ≈ 2e-3·max(1, |x|) from kinks such as relu's 0 or
// ties in max.
//
// Constants (labels, a Var, a fixed tensor) can be captured by `build`; a Var input is written
// as to_var(x[k]) of a rank-0 input, so its derivative is checked too.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "autodiff/autodiff.hpp"

namespace jacobian {

using Build = std::function<ad::Tensor(ad::Tape&, std::span<const ad::Tensor>)>;

struct Options {
  /// Relative tolerance on each Jacobian entry.  Beyond it, an absolute allowance covers the
  /// rounding error of the difference quotient (see check()).
  double rtol = 1e-9;
  /// false: count mismatching entries in Result::failures instead of failing doctest CHECKs (for
  /// testing the checker itself).
  bool check = true;
};

/// A float64 Array of the given shape with elements drawn uniformly from [lo, hi) (deterministic
/// for a given seed).
inline ad::Array<double> random(std::initializer_list<std::int64_t> shape, unsigned seed, double lo = -1.0,
                                double hi = 1.0) {
  ad::Array<double> a(ad::make_shape(shape));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : a.values()) v = u(rng);
  return a;
}

/// The largest error seen by a check, for tests that want to report or bound it further.
struct Result {
  std::int64_t rows = 0, cols = 0;  ///< output elements, total input elements
  double max_abs_error = 0.0;
  double max_tolerance_used = 0.0;   ///< the largest error / allowance: ≤ 1 passes
  std::int64_t failures = 0;         ///< entries outside the tolerance
};

/// The finite-difference step for an input element x.
///
/// The derivative is estimated by a fourth-order central difference
///     D(h) = [f(x-2h) - 8f(x-h) + 8f(x+h) - f(x+2h)] / 12h = f′ + c₄h⁴ + c₆h⁶ + …
/// taken at h and h/2 and combined by Richardson extrapolation, (16·D(h/2) - D(h)) / 15 = f′ + O(h⁶),
/// so that functions with large higher derivatives (1/x or x^-1.5 near 0.2) are still resolved to
/// ~1e-11 relative.  Rounding in the evaluations of f contributes about 2.2 · 1.5·ε·|f| / h
/// (ε = 2⁻⁵² ≈ 2.2e-16): ~5e-13·|f| at h ≈ 1e-3, four orders below the 1e-9 tolerance, while the
/// O(h⁶) truncation is ~1e-18 times the seventh derivative.  h is a power of two (2⁻¹⁰ times a
/// power of two not below |x|), so x ± h/2, x ± h and x ± 2h are exact in binary and each
/// quotient's step is exactly what it is divided by.
inline double step_for(double x) {
  int e = 0;
  std::frexp(std::max(std::fabs(x), 1.0), &e);  // |x| ≤ 2^e
  return std::ldexp(1.0, e - 10);
}

/// Checks the Jacobian of `build` at `inputs` as described at the top of this file.
inline Result check(const Build& build, std::vector<ad::Array<double>> inputs, Options opt = {}) {
  constexpr double eps = std::numeric_limits<double>::epsilon();
  const std::vector<ad::Array<double>> original = inputs;
  Result res;

  // ---- (a) reverse sweeps, one per output element --------------------------------------------------
  ad::Tape tape;
  std::vector<ad::Tensor> leaves;
  for (const auto& a : inputs) leaves.push_back(tape.leaf(a));
  const ad::Tensor y = build(tape, leaves);
  REQUIRE(y.dtype() == ad::DType::f64);
  const ad::Array<double> y0 = y.to_array<double>();
  res.rows = y0.size();
  for (const auto& a : inputs) res.cols += a.size();
  for (std::size_t k = 0; k < inputs.size(); ++k)
    for (std::int64_t j = 0; j < inputs[k].size(); ++j)
      REQUIRE_MESSAGE(std::as_const(inputs[k])[j] == original[k][j], "recording changed input ", k, " at ", j);

  // jac[r * cols + c]: d y[r] / d (input element c), inputs laid end to end.
  std::vector<double> jac_ad(static_cast<std::size_t>(res.rows * res.cols));
  for (std::int64_t r = 0; r < res.rows; ++r) {
    ad::Array<double> seed(y.shape());
    seed[r] = 1.0;
    ad::Gradients g = tape.vjp(y, seed.view());
    for (std::uint32_t e = 1; e < tape.size(); ++e) {  // every adjoint has its value's dtype and shape
      const ad::View adj = g.adjoint(e);
      REQUIRE(adj.dtype() == tape.dtype_of_entry(e));
      REQUIRE(adj.shape() == tape.shape_of_entry(e));
    }
    std::int64_t col = 0;
    for (const ad::Tensor& x : leaves) {
      const ad::View gx = g[x];
      REQUIRE(gx.shape() == x.shape());
      const auto v = gx.as<double>();
      for (std::int64_t j = 0; j < x.size(); ++j) jac_ad[static_cast<std::size_t>(r * res.cols + col + j)] = v[j];
      col += x.size();
    }
  }

  // ---- (b) central differences --------------------------------------------------------------------
  ad::Tape scratch;
  const auto evaluate = [&]() {  // the output's values at the current (perturbed) inputs
    scratch.clear();
    std::vector<ad::Tensor> xs;
    for (const auto& a : inputs) xs.push_back(scratch.leaf(a));
    const ad::Tensor yp = build(scratch, xs);
    REQUIRE(yp.shape() == y.shape());
    return yp.to_array<double>();
  };
  std::int64_t col = 0;
  for (auto& a : inputs) {
    for (std::int64_t j = 0; j < a.size(); ++j, ++col) {
      const double x0 = a[j], h = step_for(x0);
      // f at x0 + k·h/2 for k = -4, -2, -1, 1, 2, 4 (the stencils of D(h) and D(h/2)).
      constexpr double halves[6] = {-4.0, -2.0, -1.0, 1.0, 2.0, 4.0};
      std::array<ad::Array<double>, 6> f;
      for (int s = 0; s < 6; ++s) {
        a[j] = x0 + halves[s] * (h / 2);
        f[s] = evaluate();
      }
      a[j] = x0;
      for (std::int64_t r = 0; r < res.rows; ++r) {
        const double d_h = (f[0][r] - 8.0 * f[1][r] + 8.0 * f[4][r] - f[5][r]) / (12.0 * h);
        const double d_h2 = (f[1][r] - 8.0 * f[2][r] + 8.0 * f[3][r] - f[4][r]) / (6.0 * h);
        const double fd = (16.0 * d_h2 - d_h) / 15.0;
        const double ad_v = jac_ad[static_cast<std::size_t>(r * res.cols + col)];
        const double err = std::fabs(ad_v - fd);
        const double mag = std::max(std::fabs(ad_v), std::fabs(fd));
        // Rounding in the evaluations of f, amplified by 1/h (see step_for): 2.2 · 1.5·ε·|f|/h for
        // |f| ~ |y[r]| (at least 1, for outputs that cancel to small values), with a factor 30 of
        // headroom.
        const double rounding = 30.0 * 2.2 * 1.5 * eps * std::max(1.0, std::fabs(y0[r])) / h;
        const double allowed = opt.rtol * mag + rounding;
        const bool ok = err <= allowed;
        res.max_abs_error = std::max(res.max_abs_error, err);
        res.max_tolerance_used = std::max(res.max_tolerance_used, err / allowed);
        res.failures += ok ? 0 : 1;
        if (opt.check)
          CHECK_MESSAGE(ok,
                        fmt::format("d y[{}] / d input element {}: reverse sweep {:.17g}, central difference "
                                    "{:.17g}, error {:.3g}",
                                    r, col, ad_v, fd, err));
      }
    }
  }
  return res;
}

}  // namespace jacobian
