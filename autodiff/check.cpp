// Gradient checks against central finite differences (see check.hpp).
#include "autodiff/check.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "autodiff/gradients.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"

namespace ad {

namespace {

double epsilon_of(DType d) {
  return d == DType::f32 ? static_cast<double>(std::numeric_limits<float>::epsilon())
                         : std::numeric_limits<double>::epsilon();
}

double default_rtol(DType d) { return d == DType::f32 ? 1e-4 : 1e-9; }

std::string describe_element(const JacobianElement& e) {
  return fmt::format("d y[{}] / d input {}{} (element {}): tape {:.17g}, central difference {:.17g}, error {:.3g} "
                     "(allowed {:.3g})",
                     e.output, e.input, e.index, e.element, e.tape, e.difference, e.error, e.allowed);
}

}  // namespace

// ---- the difference quotient -------------------------------------------------------------------------

double step_for(double x, DType dtype) {
  int e = 0;
  std::frexp(std::max(std::fabs(x), 1.0), &e);  // |x| ≤ 2^e
  return std::ldexp(1.0, e - (dtype == DType::f32 ? 6 : 10));
}

// Error budget, for float64 (h ≈ 1e-3): the truncation error of the extrapolated quotient is O(h⁶),
// ~1e-18 times the seventh derivative, so functions with large higher derivatives (1/x near 0.2)
// are still resolved to ~1e-11 relative.  Rounding in the evaluations contributes about
// 2.2 · 1.5·ε·|f| / h (the weights of the two stencils combined): ~5e-13·|f|, four orders below the
// default tolerance.  The bound below keeps a factor 30 of headroom over that estimate.
Difference central_difference(const std::function<double(double)>& f, double x, double scale, DType dtype) {
  const double h = step_for(x, dtype);
  // f at x + k·h/2 for k = -4, -2, -1, 1, 2, 4 (the stencils of D(h) and D(h/2)).
  constexpr std::array<double, 6> halves{-4.0, -2.0, -1.0, 1.0, 2.0, 4.0};
  std::array<double, 6> v{};
  for (std::size_t s = 0; s < halves.size(); ++s) v[s] = f(x + halves[s] * (h / 2));
  const double d_h = (v[0] - 8.0 * v[1] + 8.0 * v[4] - v[5]) / (12.0 * h);
  const double d_h2 = (v[1] - 8.0 * v[2] + 8.0 * v[3] - v[4]) / (6.0 * h);
  return {.value = (16.0 * d_h2 - d_h) / 15.0,
          .step = h,
          .rounding = 30.0 * 2.2 * 1.5 * epsilon_of(dtype) * std::max(1.0, std::fabs(scale)) / h};
}

JacobianElement compare(double tape, const Difference& d, DType dtype, const CheckOptions& o) {
  JacobianElement e;
  e.tape = tape;
  e.difference = d.value;
  e.error = std::fabs(tape - d.value);
  const double rtol = o.rtol > 0 ? o.rtol : default_rtol(dtype);
  e.allowed = rtol * std::max(std::fabs(tape), std::fabs(d.value)) + o.atol + d.rounding;
  if (std::isnan(tape) != std::isnan(d.value)) e.error = std::numeric_limits<double>::infinity();
  return e;
}

// ---- the report ----------------------------------------------------------------------------------------

void GradientReport::add(JacobianElement e, std::size_t keep) {
  const bool ok = e.error <= e.allowed;
  const double ratio = e.allowed > 0 ? e.error / e.allowed : (e.error > 0 ? std::numeric_limits<double>::infinity() : 0);
  max_error = std::max(max_error, e.error);
  if (compared++ == 0 || ratio > worst_ratio) {
    worst_ratio = ratio;
    worst = e;
  }
  if (!ok) {
    passed = false;
    ++failures;
    if (mismatches.size() < keep) mismatches.push_back(std::move(e));
  }
}

std::string GradientReport::message() const {
  if (passed)
    return fmt::format("gradient check passed: {} Jacobian elements ({} outputs x {} inputs), worst {}", compared,
                       outputs, inputs, describe_element(worst));
  std::string r = fmt::format("gradient check FAILED at {} of {} Jacobian elements; worst: {}", failures, compared,
                              describe_element(worst));
  for (const auto& m : mismatches) r += "\n  " + describe_element(m);
  if (static_cast<std::int64_t>(mismatches.size()) < failures)
    r += fmt::format("\n  ... ({} more)", failures - static_cast<std::int64_t>(mismatches.size()));
  return r;
}

// ---- tensor functions ----------------------------------------------------------------------------------

template <Element T>
GradientReport check_gradient(const TensorFunction& f, std::vector<Array<T>> inputs, const CheckOptions& o) {
  constexpr DType dtype = dtype_of<T>;
  GradientReport rep;

  // The tape's Jacobian, one vector-Jacobian product per output element.
  Tape tape;
  std::vector<Tensor> leaves;
  for (const auto& a : inputs) leaves.push_back(tape.leaf(a));
  const Tensor y = f(tape, leaves);
  if (y.tape() != &tape) throw InvalidArgument("check_gradient: the function must record its output on the tape given");
  const Array<double> y0 = y.to_array<double>();
  rep.outputs = y0.size();
  for (const auto& a : inputs) rep.inputs += a.size();
  // jac[r * inputs + c]: d y[r] / d (input element c), inputs laid end to end.
  std::vector<double> jac(static_cast<std::size_t>(rep.outputs * rep.inputs));
  Array<double> seed(y.shape());
  for (std::int64_t r = 0; r < rep.outputs; ++r) {
    std::fill(seed.values().begin(), seed.values().end(), 0.0);
    seed[r] = 1.0;
    const Gradients g = tape.vjp(y, seed.view());
    std::int64_t col = 0;
    for (const Tensor& x : leaves) {
      const View gx = g[x];
      for (std::int64_t j = 0; j < x.size(); ++j) jac[static_cast<std::size_t>(r * rep.inputs + col + j)] = gx.flat(j);
      col += x.size();
    }
  }

  // Central differences: f recorded again on a scratch tape for each perturbed input.
  Tape scratch;
  const auto evaluate = [&]() {
    scratch.clear();
    std::vector<Tensor> xs;
    for (const auto& a : inputs) xs.push_back(scratch.leaf(a));
    const Tensor yp = f(scratch, xs);
    if (yp.shape() != y.shape())
      throw ShapeError(fmt::format("check_gradient: the output is {} at a perturbed input but {} at the given one",
                                   describe(yp.dtype(), yp.shape()), describe(y.dtype(), y.shape())));
    return yp.template to_array<double>();
  };
  std::int64_t col = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    Array<T>& a = inputs[k];
    T* data = a.data();
    for (std::int64_t j = 0; j < a.size(); ++j, ++col) {
      const T x0 = data[j];
      // Every output element's difference comes from the same six evaluations: keep them.
      std::vector<std::pair<double, Array<double>>> cache;
      const auto at = [&](double xv) -> const Array<double>& {
        for (const auto& [x, v] : cache)
          if (x == xv) return v;
        data[j] = static_cast<T>(xv);
        a.touch();
        cache.emplace_back(xv, evaluate());
        data[j] = x0;
        return cache.back().second;
      };
      for (std::int64_t r = 0; r < rep.outputs; ++r) {
        const Difference d = central_difference([&](double xv) { return std::as_const(at(xv))[r]; }, x0, y0[r], dtype);
        JacobianElement e = compare(jac[static_cast<std::size_t>(r * rep.inputs + col)], d, dtype, o);
        e.input = k;
        e.element = j;
        e.output = r;
        e.index = index_text(a.shape(), j);
        rep.add(std::move(e), o.keep);
      }
    }
  }
  return rep;
}

template GradientReport check_gradient<float>(const TensorFunction&, std::vector<Array<float>>, const CheckOptions&);
template GradientReport check_gradient<double>(const TensorFunction&, std::vector<Array<double>>, const CheckOptions&);

// ---- scalar functions ----------------------------------------------------------------------------------

GradientReport check_gradient(const ScalarFunction& f, std::vector<double> inputs, const CheckOptions& o) {
  GradientReport rep;
  rep.outputs = 1;
  rep.inputs = static_cast<std::int64_t>(inputs.size());
  Tape tape;
  const auto record = [&](Tape& t, const std::vector<double>& at) {
    std::vector<Var> xs;
    for (double v : at) xs.push_back(t.variable(v));
    const Var y = f(t, xs);
    if (y.tape() != &t) throw InvalidArgument("check_gradient: the function must record its output on the tape given");
    return std::pair{y, xs};
  };
  const auto [y, xs] = record(tape, inputs);
  const double y0 = y.value();
  const Gradients g = tape.gradient(y);
  Tape scratch;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const double x0 = inputs[k];
    const Difference d = central_difference(
        [&](double xv) {
          scratch.clear();
          std::vector<double> at = inputs;
          at[k] = xv;
          return record(scratch, at).first.value();
        },
        x0, y0, DType::f64);
    JacobianElement e = compare(g[xs[k]], d, DType::f64, o);
    e.input = k;
    e.element = 0;
    rep.add(std::move(e), o.keep);
  }
  return rep;
}

}  // namespace ad
