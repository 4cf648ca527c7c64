// Gradient checks: a computation's tape gradients against central finite differences.
//
//     auto report = ad::check_gradient<double>(
//         [](ad::Tape&, std::span<const ad::Tensor> x) { return ad::sum(x[0] * ad::exp(x[1])); },
//         {a, b});
//     if (!report) std::cerr << report.message() << "\n";   // or CHECK(report.passed) in any framework
//
// `f(tape, inputs)` records any computation on `tape` from leaves made of the input Arrays and returns
// its output, of any shape.  The check builds the whole Jacobian d output / d inputs twice:
//   * by reverse sweeps, one per output element (Tape::vjp with a one-hot cotangent);
//   * by central differences (central_difference below), recording f again on a scratch tape for
//     each perturbed input element;
// and compares them element by element.  An element passes when
//     |tape − difference| ≤ rtol · max(|tape|, |difference|) + atol + rounding,
// where `rounding` bounds the error of the difference quotient itself (the evaluations of f are
// rounded to the element type, and the quotient divides that by the step).  The report names the
// worst element (the largest error relative to its allowance), its position and both values.
//
// f must be deterministic and differentiable at the given point: keep inputs further than 2h (see
// step_for) from kinks such as relu's 0 or ties in max.  float64 is the type to check gradients in;
// float32 works with a looser default tolerance (its differences are far less accurate).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "autodiff/array.hpp"
#include "autodiff/tape.hpp"

namespace ad {

struct CheckOptions {
  /// Relative tolerance per Jacobian element; 0 picks the element type's default (1e-9 for float64,
  /// 1e-4 for float32).
  double rtol = 0.0;
  /// Absolute allowance beyond the rounding of the difference quotient.
  double atol = 0.0;
  /// How many failing elements to keep in GradientReport::mismatches (the worst is always kept).
  std::size_t keep = 16;
};

/// One compared element of the Jacobian: d output[output] / d inputs[input][element].
struct JacobianElement {
  std::size_t input = 0;
  std::int64_t element = 0;  ///< flat index in that input
  std::int64_t output = 0;   ///< flat index in the output
  std::string index{};       ///< the element as a multi-index, "[1,2]"
  double tape = 0.0;         ///< the reverse sweep's value
  double difference = 0.0;   ///< the central difference's
  double error = 0.0;        ///< |tape − difference|
  double allowed = 0.0;      ///< the allowance it was compared with
};

struct GradientReport {
  bool passed = true;
  std::int64_t outputs = 0;     ///< output elements (rows of the Jacobian)
  std::int64_t inputs = 0;      ///< input elements, all inputs laid end to end (columns)
  std::int64_t compared = 0;    ///< elements compared
  std::int64_t failures = 0;    ///< elements outside their allowance
  double max_error = 0.0;       ///< the largest |tape − difference| of any element
  double worst_ratio = 0.0;     ///< the largest error / allowance (≤ 1 for every element when passed)
  JacobianElement worst{};      ///< the element with that ratio
  std::vector<JacobianElement> mismatches{};  ///< failing elements, in order (at most CheckOptions::keep)

  explicit operator bool() const { return passed; }
  /// "gradient check passed: 12 elements, worst ..." or the failures, one a line.
  std::string message() const;
  /// Adds one compared element (for checks assembled by hand, e.g. of an optimiser's gradients).
  void add(JacobianElement e, std::size_t keep = 16);
};

/// A finite-difference estimate of f′(x) and the bound on its rounding error.
struct Difference {
  double value = 0.0;
  double step = 0.0;      ///< h
  double rounding = 0.0;  ///< bound on the error from rounding f to `epsilon` relative
};

/// The finite-difference step for x: 2⁻¹⁰ (float64) or 2⁻⁶ (float32) times a power of two not
/// below |x|, so that x ± h/2, x ± h and x ± 2h are exact in binary.
double step_for(double x, DType dtype = DType::f64);

/// f′(x) by a fourth-order central difference D(h) = [f(x−2h) − 8f(x−h) + 8f(x+h) − f(x+2h)] / 12h,
/// taken at h and h/2 and combined by Richardson extrapolation, (16·D(h/2) − D(h)) / 15 = f′ + O(h⁶).
/// `scale` is the magnitude of f's values; the rounding bound assumes each evaluation of f is
/// correct to a few units of `dtype`'s epsilon relative to max(1, scale).
Difference central_difference(const std::function<double(double)>& f, double x, double scale,
                              DType dtype = DType::f64);

/// Compares a tape gradient with a central difference under the options' tolerance.
JacobianElement compare(double tape, const Difference& d, DType dtype, const CheckOptions& options = {});

/// The computation checked by check_gradient: records on `tape` from the given leaves.
using TensorFunction = std::function<Tensor(Tape&, std::span<const Tensor>)>;
using ScalarFunction = std::function<Var(Tape&, std::span<const Var>)>;

/// Checks the Jacobian of f at `inputs` (each a leaf) as described at the top of this file.
template <Element T>
GradientReport check_gradient(const TensorFunction& f, std::vector<Array<T>> inputs, const CheckOptions& options = {});

/// The same for a scalar function of scalar variables.
GradientReport check_gradient(const ScalarFunction& f, std::vector<double> inputs, const CheckOptions& options = {});

}  // namespace ad
