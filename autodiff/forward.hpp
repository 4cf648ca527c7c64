// Forward mode and second order on a recorded tape: Jacobian-vector products (ad::jvp) and
// Hessian-vector products (ad::hvp), and the dense Jacobians and Hessians built from them
// (autodiff/second_order.hpp).
//
// jvp pushes tangents forward through the recorded entries in creation order, the mirror image of
// the reverse sweep: a scalar entry's tangent is Σ_k partial_k · tangent(arg_k) (a fused `expr`
// entry stores total partials, so the same sum holds for it), and a rule entry's comes from its op
// descriptor's tangent rule.  The values are not recomputed: the tape already holds them.
//
// hvp is forward over reverse (Pearlmutter's R-operator, docs/second_order.md): one tangent pass in
// the direction v, one ordinary reverse sweep, and one more reverse sweep that carries the tangent
// of every adjoint, R(ḡ).  An op's backward rule is linear in its output adjoint, so the tangent of
// a backward step is the same backward rule applied to R(adjoint) plus the derivative of the rule
// with respect to the recorded values in their tangent directions, with the adjoint held fixed:
// the op's curvature rule.  R(adjoint) of a parameter is then (H·v) for that parameter.
//
// Scalar entries need the tangent of their local partials: for an elementary op code it follows
// from the op's second derivative and the recorded values; a fused `expr` entry keeps only its
// first derivatives, so scalar code that will take Hessian-vector products is recorded one op per
// entry, on ad::UnfusedVar operands; hvp over a fused entry throws MissingRuleError.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <vector>

#include "autodiff/gradients.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"

namespace ad {

/// The storage behind a Tangents object.  Tangents are laid out and allocated like adjoints (a
/// number per entry, a buffer per tensor node from an arena, null while zero), so a GradStore
/// holds them: its scalar adjoints are the scalar tangents here, its tensor adjoints the tensors'.
struct TangentStore {
  GradStore buffers;
  /// One per entry: scalar tangents (and those of scalar-valued nodes).
  std::vector<double>& dot() { return buffers.adj; }
  const std::vector<double>& dot() const { return buffers.adj; }
  /// One per node: tensor tangents, null while zero.
  std::vector<void*>& tdot() { return buffers.tadj; }
  const std::vector<void*>& tdot() const { return buffers.tadj; }
  const Tape* tape() const { return buffers.tape; }
  std::uint32_t generation() const { return buffers.generation; }
  /// Set when only the pass's last value is wanted: a node's tangent buffer may then be handed to
  /// its last reader (see take_arg_tangent) instead of that reader allocating one of its own.
  bool reuse = false;
  std::vector<std::uint8_t> owned;         // per node: its tangent buffer was allocated for it
  std::vector<std::uint32_t> last_reader;  // per node (with reuse): the last node that reads it

  void reset(const Tape& t);
  /// Turns buffer handover on for a pass over entries 1..last (finds every node's last reader).
  void enable_reuse(const Tape& t, std::uint32_t last);
  /// Argument k of `n`: its tangent buffer, which becomes n's, when handover is on, the buffer was
  /// allocated for that argument, n is its last reader and the two have the same element type and
  /// count; else null.
  void* take_arg_tangent(const Tape& t, const Node& n, std::size_t k);
  /// Makes `data` (an argument's tangent) node n's tangent too; the argument's buffer is then
  /// shared and never handed over.
  void alias(const Tape& t, const Node& n, void* data);
  /// The tangent buffer of node k, allocated on first use: zeroed, or left uninitialised when
  /// `zeroed` is false (the caller then writes every element).
  void* tensor_tangent(std::size_t k, const Node& n, bool zeroed = true);
  /// Whether entry e's tangent is (known to be) zero.
  bool zero(const Tape& t, std::uint32_t e) const;
};

/// What a forward pass returns: the tangent of every recorded value, looked up like adjoints.
class Tangents {
 public:
  explicit Tangents(std::shared_ptr<TangentStore> s) : s_(std::move(s)) {}
  /// The tangent of a scalar.
  double operator[](const Var& x) const;
  /// The tangent of a tensor: same dtype and shape (zeros where the inputs do not reach it).
  View operator[](const Tensor& t) const;
  /// The tangent of an entry given by index (a scalar entry gives a rank-0 f64 view).
  View tangent(std::uint32_t entry) const;
  template <Element T>
  Array<T> array(const Tensor& t) const {
    return to_array<T>((*this)[t]);
  }
  TangentStore& store() { return *s_; }
  const TangentStore& store() const { return *s_; }

 private:
  void check(const char* what) const;
  std::shared_ptr<TangentStore> s_;
};

/// One input of a directional derivative and its tangent: a scalar leaf (ad::Tape::variable) with a
/// number, or a tensor leaf with a value of its shape (any element type, converted).
class Direction {
 public:
  Direction(const Var& input, double tangent) : var_(input), scalar_(tangent), is_scalar_(true) {}
  Direction(const Tensor& input, View tangent) : tensor_(input), tangent_(std::move(tangent)) {}
  template <Element T>
  Direction(const Tensor& input, const Array<T>& tangent) : Direction(input, tangent.view()) {}

  bool is_scalar() const { return is_scalar_; }
  const Var& var() const { return var_; }
  const Tensor& tensor() const { return tensor_; }
  double scalar() const { return scalar_; }
  const View& tangent() const { return tangent_; }

 private:
  Var var_;
  Tensor tensor_;
  double scalar_ = 0.0;
  View tangent_;
  bool is_scalar_ = false;
};

/// The forward pass: the tangent of every recorded entry when the leaves in `directions` move
/// along their tangents (every other leaf stays fixed).  Throws InvalidArgument if an input is not
/// a leaf or appears twice, ShapeError if a tangent's shape differs from its input's,
/// MissingRuleError for an op without a tangent rule (naming it), StaleTapeError as a sweep does.
Tangents jvp(Tape& tape, std::span<const Direction> directions);
Tangents jvp(Tape& tape, std::initializer_list<Direction> directions);
/// The directional derivative of one output: dy = J·u.
double jvp(Tape& tape, const Var& y, std::span<const Direction> directions);
double jvp(Tape& tape, const Var& y, std::initializer_list<Direction> directions);
Array<double> jvp(Tape& tape, const Tensor& y, std::span<const Direction> directions);
Array<double> jvp(Tape& tape, const Tensor& y, std::initializer_list<Direction> directions);

/// A Hessian-vector product, forward over reverse: for the one-element `loss` and the directions
/// (parameter leaf → v), the result holds, for every recorded value x, R(∂loss/∂x), the derivative
/// of its adjoint in the direction v.  For a leaf p that is (H·v)_p, H the Hessian of the loss with
/// respect to all the directions' leaves together (leaves not listed are held fixed).  Look it up
/// as a gradient: r[W].  Costs one tangent pass and two reverse sweeps.  Throws as jvp does, and
/// MissingRuleError for an op without a curvature rule or a fused scalar expression.
Gradients hvp(Tape& tape, const Tensor& loss, std::span<const Direction> directions);
Gradients hvp(Tape& tape, const Tensor& loss, std::initializer_list<Direction> directions);
Gradients hvp(Tape& tape, const Var& loss, std::span<const Direction> directions);
Gradients hvp(Tape& tape, const Var& loss, std::initializer_list<Direction> directions);

/// What tangent and curvature rules read: the node, the values of its output and arguments, and
/// their tangents.  A tangent that is zero reads as null (tensor) or 0 (scalar).
class TangentReader {
 public:
  TangentReader(const Tape& tape, TangentStore& t, const Node& node) : tape_(tape), t_(t), node_(node) {}

  const Node& node() const { return node_; }
  const Tape& tape() const { return tape_; }
  template <class S>
  const S& saved() const {
    return *static_cast<const S*>(node_.saved);
  }
  template <Element T>
  const T* value() const {
    return static_cast<const T*>(node_.data);
  }
  std::size_t arity() const { return node_.args.size(); }
  bool is_tensor(std::size_t k) const {
    const Node* n = tape_.node(node_.args[k]);
    return n != nullptr && !n->scalar_out;
  }
  const Node& arg_node(std::size_t k) const { return *tape_.node(node_.args[k]); }
  const Shape& arg_shape(std::size_t k) const {
    static const Shape scalar_shape;
    return is_tensor(k) ? arg_node(k).shape : scalar_shape;
  }
  template <Element T>
  const T* arg_value(std::size_t k) const {
    return static_cast<const T*>(arg_node(k).data);
  }
  double arg_scalar(std::size_t k) const { return tape_.scalar_value(node_.args[k]); }
  /// The tangent of tensor argument k, or null where it is zero.
  template <Element T>
  const T* arg_tangent(std::size_t k) const {
    return static_cast<const T*>(t_.tdot()[tape_.node_index(node_.args[k])]);
  }
  /// The tangent of scalar argument k.
  double arg_scalar_tangent(std::size_t k) const { return t_.dot()[node_.args[k]]; }

 protected:
  const Tape& tape_;
  TangentStore& t_;
  const Node& node_;
};

/// A tangent rule's context: writes the output's tangent.
class TangentContext : public TangentReader {
 public:
  using TangentReader::TangentReader;
  /// The output tangent of a tensor node, zeroed on first use (rules add into it).
  template <Element T>
  T* tangent() {
    return static_cast<T*>(t_.tensor_tangent(tape_.node_index(node_.entry), node_));
  }
  /// The output tangent of a tensor node, not zeroed: for a rule that assigns every element (a
  /// rule runs once per pass, so nothing else has written it).
  template <Element T>
  T* fresh_tangent() {
    return static_cast<T*>(t_.tensor_tangent(tape_.node_index(node_.entry), node_, false));
  }
  /// Argument k's tangent buffer, made the output's, when nothing will read the argument's tangent
  /// after this rule (only the pass's last value is wanted and this node is the argument's last
  /// reader) and it has the output's element type and count; else null.  For an element-wise rule
  /// that then computes its output in place: ẏ[i] may overwrite ẋ[i] once it has been read.
  template <Element T>
  T* take_arg_tangent(std::size_t k) {
    return static_cast<T*>(t_.take_arg_tangent(tape_, node_, k));
  }
  /// Makes the output's tangent another buffer of its shape (a reshape reads its argument's).
  void alias_tangent(void* data) { t_.alias(tape_, node_, data); }
  /// The tangent of a scalar-valued node.
  void set_scalar_tangent(double v) { t_.dot()[node_.entry] = v; }
};

/// A curvature rule's context: besides values and tangents, the node's adjoint (from the reverse
/// sweep) and the tangents of the arguments' adjoints, which the rule adds to.
class CurvatureContext : public TangentReader {
 public:
  CurvatureContext(const Tape& tape, TangentStore& t, const GradStore& g, GradStore& r, const Node& node)
      : TangentReader(tape, t, node), g_(g), r_(r) {}
  /// The output's tangent (null where zero).
  template <Element T>
  const T* tangent() const {
    return static_cast<const T*>(t_.tdot()[tape_.node_index(node_.entry)]);
  }
  /// The output adjoint (tensor nodes).
  template <Element T>
  const T* grad() const {
    return static_cast<const T*>(g_.tadj[tape_.node_index(node_.entry)]);
  }
  /// The tangent of tensor argument k's adjoint, zeroed on first use; null if it needs no gradient.
  template <Element T>
  T* arg_rgrad(std::size_t k) {
    const Node* n = tape_.node(node_.args[k]);
    if (!n->requires_grad) return nullptr;
    return static_cast<T*>(r_.tensor_adjoint(tape_.node_index(node_.args[k]), *n));
  }
  /// The tangent of scalar argument k's adjoint.
  double& arg_scalar_rgrad(std::size_t k) { return r_.adj[node_.args[k]]; }

 private:
  const GradStore& g_;
  GradStore& r_;
};

}  // namespace ad
