// The handles of recorded values: ad::Var (a scalar), ad::UnfusedVar (a scalar whose ops are
// recorded one per entry) and ad::Tensor.
//
// A handle is small (tape, entry, generation) and names one entry of a tape; the values live on the
// tape.  This header only defines the two classes, so that the tape (autodiff/tape.hpp) can build
// them; the scalar ops are in autodiff/var.hpp, the tensor ops in autodiff/ops/ops.hpp.
#pragma once

#include <cstdint>

#include "autodiff/array.hpp"

namespace ad {

class Tape;
class Expr;
struct Node;

/// A scalar recorded on a tape (see autodiff/var.hpp for the ops).
class Var {
 public:
  /// An empty handle; using it in an op throws InvalidArgument.
  Var() = default;
  /// Low-level: the handle of entry `index` of `tape`, made in `generation`.
  Var(Tape* tape, std::uint32_t index, std::uint32_t generation) : tape_(tape), index_(index), gen_(generation) {}
  /// Records an expression (autodiff/expr.hpp): this conversion is what writes it to the tape.
  Var(const Expr& e);  // NOLINT(google-explicit-constructor): recording on conversion is the point

  /// The recorded value; throws StaleHandleError after tape.clear().
  double value() const;
  Tape* tape() const { return tape_; }
  std::uint32_t index() const { return index_; }
  std::uint32_t generation() const { return gen_; }
  bool empty() const { return tape_ == nullptr; }

  // The compound forms record the result and rebind this handle to it.
  template <class E>
  Var& operator+=(const E& y);
  template <class E>
  Var& operator-=(const E& y);
  template <class E>
  Var& operator*=(const E& y);
  template <class E>
  Var& operator/=(const E& y);

 private:
  Tape* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t gen_ = 0;
};

/// A scalar whose ops are recorded one op per entry, for second-order passes (ad::hvp, ad::hessian).
///
/// Ops on Vars fuse a whole expression into one entry that keeps only first derivatives
/// (autodiff/expr.hpp).  An op with an UnfusedVar operand is written to the tape at once, as the
/// elementary op it is (op code and local partials), and returns an UnfusedVar; so an expression
/// over UnfusedVars leaves one entry per op, which is what Hessian-vector products need.  It is the
/// same handle as a Var (it converts both ways); only the ops it enters differ, and the choice is
/// made by type, so the fused ops on Var pay nothing for it.  A Var operand of such an op is read as
/// it is; an unrecorded Expr operand is recorded first, as one fused entry.
class UnfusedVar : public Var {
 public:
  UnfusedVar() = default;
  /// The same recorded value; the ops it enters from now on are recorded one per entry.
  UnfusedVar(const Var& v) : Var(v) {}  // NOLINT(google-explicit-constructor)
  /// Records an expression over Vars (one fused entry), as Var(e) does.
  UnfusedVar(const Expr& e) : Var(e) {}  // NOLINT(google-explicit-constructor)

  template <class E>
  UnfusedVar& operator+=(const E& y);
  template <class E>
  UnfusedVar& operator-=(const E& y);
  template <class E>
  UnfusedVar& operator*=(const E& y);
  template <class E>
  UnfusedVar& operator/=(const E& y);
};

/// A tensor value recorded on a tape (see autodiff/tensor.hpp and autodiff/ops/ops.hpp).
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

}  // namespace ad
