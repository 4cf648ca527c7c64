// ad::Tensor: a tensor value recorded on a tape.
//
// Like ad::Var, a Tensor is a small handle (tape, entry, generation); the elements live on the tape
// (in its arena) or, for leaves, in the Array they were recorded from.  The tensor operations are
// declared in autodiff/ops/*.hpp and collected by autodiff/autodiff.hpp.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "autodiff/array.hpp"

namespace ad {

class Tape;
class Var;
struct Node;

class Tensor {
 public:
  /// An empty handle; using it in an op throws InvalidArgument.
  Tensor() = default;
  /// Low-level: the handle of rule entry `index` of `tape`, made in `generation`.
  Tensor(Tape* tape, std::uint32_t index, std::uint32_t generation) : tape_(tape), index_(index), gen_(generation) {}

  Tape* tape() const { return tape_; }
  std::uint32_t index() const { return index_; }
  std::uint32_t generation() const { return gen_; }
  bool empty() const { return tape_ == nullptr; }

  /// The node behind the handle; throws if the handle is empty or stale.
  const Node& node() const;
  DType dtype() const;
  const Shape& shape() const;
  std::size_t rank() const { return shape().size(); }
  std::int64_t size() const { return numel(shape()); }
  /// Size of dimension k; negative k counts from the end.
  std::int64_t dim(int k) const;
  /// The recorded value (valid until tape.clear()).
  View value() const;
  /// A copy of the value as an Array<T> (converting the element type if needed).
  template <Element T>
  Array<T> to_array() const {
    return ad::to_array<T>(value());
  }
  /// The value of a one-element tensor.
  double item() const;
  /// An element as a scalar Var on the same tape (see ad::element).
  template <class... I>
  Var operator()(I... i) const;

 private:
  Tape* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t gen_ = 0;
};

/// The element of t at `index` as a Var on t's tape.  Its adjoint flows back into that element of
/// t's adjoint.  Throws IndexError if the index is out of range or of the wrong rank.
Var element(const Tensor& t, std::initializer_list<std::int64_t> index);

/// The value of a one-element tensor (a loss, a sum) as a Var on the same tape.
Var to_var(const Tensor& t);

}  // namespace ad

#include "autodiff/tape.hpp"

namespace ad {

template <class... I>
Var Tensor::operator()(I... i) const {
  return element(*this, {static_cast<std::int64_t>(i)...});
}

}  // namespace ad
