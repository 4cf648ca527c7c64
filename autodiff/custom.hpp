// User-defined tensor ops: your own forward and backward, recorded like a built-in op.
//
// Compute the value yourself, then record it with the rule that pushes the gradient back:
//
//     ad::Tensor my_softplus(const ad::Tensor& x) {
//       const auto xs = x.value().as<double>();
//       ad::Array<double> y(x.shape());
//       for (std::int64_t i = 0; i < y.size(); ++i) y[i] = std::max(xs[i], 0.0) + std::log1p(std::exp(-std::fabs(xs[i])));
//       return ad::custom_op("my_softplus", {x}, std::move(y), [](ad::CustomBackward& b) {
//         const auto x = b.input<double>(0), g = b.grad<double>();
//         const auto dx = b.input_grad<double>(0);  // empty if x takes no gradient
//         for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += g[i] / (1.0 + std::exp(-x[i]));
//       });
//     }
//
// The entry is listed, drawn and stepped through under its name, and swept like any other.  The
// backward rule ADDS into the input adjoints (another use of the same input may have added before).
// It may capture what it needs by value (a std::function keeps the capture until tape.clear()).
// Check a new op's rule with ad::check_gradient (autodiff/check.hpp).
#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "autodiff/forward.hpp"
#include "autodiff/gradients.hpp"
#include "autodiff/tape.hpp"

namespace ad {

/// What a user-defined op's backward rule sees: the op's output, its adjoint, its inputs, and the
/// inputs' adjoints to add into.  Element types are the op's (its inputs' and output's).
class CustomBackward {
 public:
  explicit CustomBackward(BackwardContext& c) : c_(c) {}

  /// Number of inputs.
  std::size_t inputs() const { return c_.arity(); }
  const Shape& output_shape() const { return c_.node().shape; }
  const Shape& input_shape(std::size_t k) const { return c_.arg_shape(k); }
  /// The output value and its adjoint (the upstream gradient).
  template <Element T>
  std::span<const T> output() const {
    return {c_.value<T>(), size(c_.node().shape)};
  }
  template <Element T>
  std::span<const T> grad() const {
    return {c_.grad<T>(), size(c_.node().shape)};
  }
  /// The value of input k.
  template <Element T>
  std::span<const T> input(std::size_t k) const {
    return {c_.arg_value<T>(k), size(c_.arg_shape(k))};
  }
  /// The adjoint of input k, to add into; empty if that input takes no gradient.
  template <Element T>
  std::span<T> input_grad(std::size_t k) {
    T* g = c_.arg_grad<T>(k);
    return g ? std::span<T>(g, size(c_.arg_shape(k))) : std::span<T>();
  }

 private:
  static std::size_t size(const Shape& s) { return static_cast<std::size_t>(numel(s)); }
  BackwardContext& c_;
};

using CustomBackwardFn = std::function<void(CustomBackward&)>;

/// What a user-defined op's tangent rule (forward mode, ad::jvp) sees: the inputs' values and
/// tangents, the output value, and the output tangent to write (zeroed: add into it).  An input
/// whose tangent is zero gives an empty span.
class CustomTangent {
 public:
  explicit CustomTangent(TangentContext& c) : c_(c) {}
  std::size_t inputs() const;
  const Shape& output_shape() const;
  const Shape& input_shape(std::size_t k) const;
  template <Element T>
  std::span<const T> output() const;
  template <Element T>
  std::span<const T> input(std::size_t k) const;
  /// The tangent of input k; empty where it is zero.
  template <Element T>
  std::span<const T> input_tangent(std::size_t k) const;
  /// The output's tangent, zeroed on first use.
  template <Element T>
  std::span<T> tangent();

 private:
  TangentContext& c_;
};

using CustomTangentFn = std::function<void(CustomTangent&)>;

namespace detail {
/// Records a custom op whose value is held by `value` (the Array's buffer, kept alive by the node).
Tensor record_custom(std::string name, std::initializer_list<Tensor> inputs, DType dtype, const Shape& shape,
                     void* data, std::shared_ptr<const void> value, CustomBackwardFn backward,
                     CustomTangentFn tangent = {});
}  // namespace detail

/// Records a user-defined op named `name` with the given inputs (1 to 3 tensors of one tape, of
/// element type T), output `value` (any shape; the Array is kept, not copied) and backward rule.
/// Throws InvalidArgument for no inputs, more than three, an empty or stale handle, or a null rule;
/// DTypeError if an input is not of type T.  Nothing is recorded when it throws.
template <Element T>
Tensor custom_op(std::string name, std::initializer_list<Tensor> inputs, Array<T> value, CustomBackwardFn backward) {
  auto held = std::make_shared<Array<T>>(std::move(value));
  const Shape shape = held->shape();
  void* data = const_cast<T*>(std::as_const(*held).data());
  return detail::record_custom(std::move(name), inputs, dtype_of<T>, shape, data, std::move(held),
                               std::move(backward));
}

/// The same with a tangent rule, so that forward mode (ad::jvp) can pass through the op.  Without
/// one, jvp throws MissingRuleError naming the op.  (Hessian-vector products need a curvature rule,
/// which user-defined ops do not have: ad::hvp throws MissingRuleError naming the op.)
template <Element T>
Tensor custom_op(std::string name, std::initializer_list<Tensor> inputs, Array<T> value, CustomBackwardFn backward,
                 CustomTangentFn tangent) {
  auto held = std::make_shared<Array<T>>(std::move(value));
  const Shape shape = held->shape();
  void* data = const_cast<T*>(std::as_const(*held).data());
  return detail::record_custom(std::move(name), inputs, dtype_of<T>, shape, data, std::move(held),
                               std::move(backward), std::move(tangent));
}

// ---- inline definitions ---------------------------------------------------------------------------

inline std::size_t CustomTangent::inputs() const { return c_.arity(); }
inline const Shape& CustomTangent::output_shape() const { return c_.node().shape; }
inline const Shape& CustomTangent::input_shape(std::size_t k) const { return c_.arg_shape(k); }
template <Element T>
std::span<const T> CustomTangent::output() const {
  return {c_.value<T>(), static_cast<std::size_t>(numel(c_.node().shape))};
}
template <Element T>
std::span<const T> CustomTangent::input(std::size_t k) const {
  return {c_.arg_value<T>(k), static_cast<std::size_t>(numel(c_.arg_shape(k)))};
}
template <Element T>
std::span<const T> CustomTangent::input_tangent(std::size_t k) const {
  const T* t = c_.arg_tangent<T>(k);
  return t ? std::span<const T>(t, static_cast<std::size_t>(numel(c_.arg_shape(k)))) : std::span<const T>();
}
template <Element T>
std::span<T> CustomTangent::tangent() {
  return {c_.tangent<T>(), static_cast<std::size_t>(numel(c_.node().shape))};
}

}  // namespace ad
