// Parameters and the module interface.
//
// A Parameter is a named, trainable Array (float or double) that lives off the tape.  A forward
// pass records it as a tape leaf without copying (Tape::leaf shares the buffer).  An optimiser
// finds its gradient in the Gradients of that pass by the buffer: the sum over every leaf that reads
// it, so a parameter used twice (a layer applied twice, two modules sharing it) gets both uses'
// gradients.  It then updates the Array in place, which bumps the Array's version stamp, so a
// sweep over the old tape afterwards throws StaleTapeError.  Modules hold parameters through shared
// pointers: an optimiser built from `net.parameters()` keeps working after the module is moved, and
// two modules can hold one parameter.
//
// Modules contain no backward code: their forward passes are made of autodiff ops, and the tape
// differentiates them.
#pragma once

#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "nn/error.hpp"

namespace nn {

class Parameter {
 public:
  /// `decay`: whether weight decay applies (true for weight matrices, false for biases).
  template <ad::Element T>
  Parameter(std::string name, ad::Array<T> value, bool decay)
      : name_(std::move(name)), value_(std::move(value)), decay_(decay) {}

  const std::string& name() const { return name_; }
  void rename(std::string name) { name_ = std::move(name); }
  bool decay() const { return decay_; }
  ad::DType dtype() const { return value_.index() == 0 ? ad::DType::f32 : ad::DType::f64; }
  const ad::Shape& shape() const;
  std::int64_t size() const { return ad::numel(shape()); }
  /// The value as an Array<T>; throws DTypeError if the parameter holds the other element type.
  template <ad::Element T>
  ad::Array<T>& array();
  template <ad::Element T>
  const ad::Array<T>& array() const {
    return const_cast<Parameter*>(this)->array<T>();
  }
  ad::View view() const;

  /// Records the value on `tape` as a leaf named after the parameter, without copying, and
  /// remembers the handle of this most recent use (see recorded()).
  ad::Tensor record(ad::Tape& tape);
  /// The handle of the most recent record(); empty before the first.
  const ad::Tensor& recorded() const { return handle_; }

 private:
  std::string name_;
  std::variant<ad::Array<float>, ad::Array<double>> value_;
  bool decay_ = true;
  ad::Tensor handle_;
};

using ParameterList = std::vector<std::shared_ptr<Parameter>>;

class Module {
 public:
  virtual ~Module() = default;

  /// Records the module's computation on x's tape and returns its output.
  virtual ad::Tensor forward(const ad::Tensor& x) = 0;
  /// The trainable parameters, in a fixed order (empty for parameter-free modules).
  virtual ParameterList parameters() const { return {}; }
  /// One line describing the module ("Linear(784 -> 256)").
  virtual std::string describe() const = 0;

  ad::Tensor operator()(const ad::Tensor& x) { return forward(x); }
  /// Records `x` on the tape as a constant (no gradient, no copy) and runs forward on it.
  template <ad::Element T>
  ad::Tensor operator()(ad::Tape& tape, const ad::Array<T>& x) {
    return forward(tape.name(tape.constant(x), "input"));
  }
};

// ---- inline definitions ---------------------------------------------------------------------------

inline const ad::Shape& Parameter::shape() const {
  return std::visit([](const auto& a) -> const ad::Shape& { return a.shape(); }, value_);
}

inline ad::View Parameter::view() const {
  return std::visit([](const auto& a) { return a.view(); }, value_);
}

template <ad::Element T>
ad::Array<T>& Parameter::array() {
  if (auto* a = std::get_if<ad::Array<T>>(&value_)) return *a;
  throw ad::DTypeError(fmt::format("Parameter {}: holds {} values, requested as {}", name_,
                                   ad::describe(dtype(), shape()), ad::to_string(ad::dtype_of<T>)));
}

inline ad::Tensor Parameter::record(ad::Tape& tape) {
  handle_ = std::visit([&](const auto& a) { return tape.name(tape.leaf(a), name_); }, value_);
  return handle_;
}

}  // namespace nn
