// A Jacobian check for tensor operations in doctest, used by every tensor-op test.  It is the
// public gradient checker (autodiff/check.hpp) with doctest assertions around it:
//
//     #include "jacobian.hpp"
//     jacobian::check([](ad::Tape&, std::span<const ad::Tensor> x) { return x[0] * exp(x[1]); },
//                     {jacobian::random({3, 1}, 1), jacobian::random({1, 4}, 2)});
//
// `build(tape, inputs)` records any computation on `tape` from the given leaves (float64 tensors
// made from the input Arrays) and returns its output tensor.  check() compares the full Jacobian
// d output / d inputs from reverse sweeps (one vector-Jacobian product per output element) with
// central differences (fourth order, Richardson-extrapolated to sixth; see ad::central_difference)
// entry by entry to 1e-9 relative (doctest CHECKs, the entry named in the failure message).  It also
// checks that every adjoint on the tape has its value's dtype and shape, and that recording leaves
// the inputs unchanged.  `build` must be deterministic and differentiable at the given point: keep
// inputs further than 2h ≈ 2e-3·max(1, |x|) from kinks such as relu's 0 or ties in max.
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
#include "autodiff/check.hpp"

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

/// Checks the Jacobian of `build` at `inputs` as described at the top of this file.
inline Result check(const Build& build, std::vector<ad::Array<double>> inputs, Options opt = {}) {
  // Recording leaves the inputs unchanged, and every adjoint has its value's dtype and shape.
  const std::vector<ad::Array<double>> original = inputs;
  {
    ad::Tape tape;
    std::vector<ad::Tensor> leaves;
    for (const auto& a : inputs) leaves.push_back(tape.leaf(a));
    const ad::Tensor y = build(tape, leaves);
    REQUIRE(y.dtype() == ad::DType::f64);
    for (std::size_t k = 0; k < inputs.size(); ++k)
      for (std::int64_t j = 0; j < inputs[k].size(); ++j)
        REQUIRE_MESSAGE(std::as_const(inputs[k])[j] == original[k][j], "recording changed input ", k, " at ", j);
    const ad::Array<double> cotangent = ad::Array<double>::full(y.shape(), 0.5);
    const ad::Gradients g = tape.vjp(y, cotangent.view());
    for (std::uint32_t e = 1; e < tape.size(); ++e) {
      const ad::View adj = g.adjoint(e);
      REQUIRE(adj.dtype() == tape.dtype_of_entry(e));
      REQUIRE(adj.shape() == tape.shape_of_entry(e));
    }
  }
  const ad::GradientReport rep =
      ad::check_gradient<double>(build, inputs, {.rtol = opt.rtol, .keep = opt.check ? std::size_t{1000} : 0});
  if (opt.check) {
    CHECK_MESSAGE(rep.passed, rep.message());
    for (const auto& m : rep.mismatches)
      CHECK_MESSAGE(m.error <= m.allowed,
                    fmt::format("d y[{}] / d input {}{}: reverse sweep {:.17g}, central difference {:.17g}, error {:.3g}",
                                m.output, m.input, m.index, m.tape, m.difference, m.error));
  }
  return {.rows = rep.outputs,
          .cols = rep.inputs,
          .max_abs_error = rep.max_error,
          .max_tolerance_used = rep.worst_ratio,
          .failures = rep.failures};
}

}  // namespace jacobian
