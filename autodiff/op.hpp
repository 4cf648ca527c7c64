// ad::OpDescriptor: the one place that says what an op is.
//
// Every entry of a tape names its op by a descriptor: the op's name, its backward rule (the
// vector-Jacobian product, a plain function pointer so the sweep calls it directly), how
// step-through explains one of its contributions, how a listing shows its non-tensor arguments,
// and a slot for its tangent rule (forward mode).  A tensor op defines one descriptor beside its
// forward and backward code (autodiff/ops/<family>.cpp); scalar ops (ad::Var) have a table of
// descriptors indexed by their op code, `descriptor(Op)`.  Nothing outside an op's own file
// needs to know which op it is: inspection reads the descriptor.
//
// An op's saved state (a transpose flag, an axis, the labels of a pick) is a typed struct of its
// own, copied into the tape's arena when the op is recorded and read back by its rules
// (BackwardContext::saved<State>()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <vector>

#include "autodiff/array.hpp"

namespace ad {

class Tape;
class BackwardContext;
class TangentContext;
class CurvatureContext;
struct Node;

/// Op codes of scalar entries.  `rule` marks an entry that has a Node (a tensor op, or a scalar
/// computed from tensors) whose descriptor gives its backward rule.
enum class Op : std::uint8_t {
  sink, leaf,
  add, sub, mul, div, neg,
  add_c, sub_c, rsub_c, mul_c, div_c, rdiv_c,
  pow, pow_c, rpow_c,
  exp, log, log1p, sqrt, sin, cos, tan, tanh, sigmoid, relu, abs, softplus, square,
  min, max,
  expr,  // a fused expression over up to two Vars: its partials are the total derivatives
  rule,
  count_
};
static_assert(static_cast<int>(Op::count_) <= 64, "op codes must fit in 6 bits");

/// The backward rule (vector-Jacobian product) of a node: reads the output adjoint from the
/// context and adds the contribution to each argument's adjoint.  Rules add, never assign.
using BackwardFn = void (*)(BackwardContext&);

/// The tangent rule (Jacobian-vector product) of a node, for forward mode (autodiff/forward.hpp):
/// reads the arguments' tangents from the context and writes the output's.  An argument whose
/// tangent is zero reads as null (a tensor) or 0 (a scalar), so rules can skip it.
using TangentFn = void (*)(TangentContext&);

/// The curvature rule of a node, for Hessian-vector products (forward over reverse): the derivative
/// of its backward rule with respect to the recorded values, in the direction of their tangents,
/// with the output adjoint held fixed.  Backward rules are linear in the adjoint, so the tangent of
/// a backward step is the backward rule applied to the adjoint's tangent (the engine does that with
/// the op's own backward rule) plus this term.  An op whose backward rule does not read any value
/// (sum, reshape, x + y, relu) uses `no_curvature`.
using CurvatureFn = void (*)(CurvatureContext&);

/// What an explain hook is asked: how did the backward step of `node` make up flat element
/// `element` of the adjoint of its argument entry `to`?  `adjoint` is the node's own adjoint (a
/// rank-0 f64 view for a scalar-valued node).
struct ExplainQuery {
  const Tape& tape;
  const Node& node;
  View adjoint;
  std::uint32_t to = 0;
  std::int64_t element = 0;
};

/// One product factor × adjoint in such a sum: the factor is element `factor_element` of entry
/// `factor_entry`'s value (or the constant `factor` when factor_entry is 0), the adjoint is element
/// `adjoint_element` of the node's adjoint.
struct ExplainProduct {
  std::uint32_t factor_entry = 0;
  std::int64_t factor_element = 0;
  double factor = 0.0;
  std::int64_t adjoint_element = 0;
};

/// The answer: the products whose sum is the amount added, or a note for rules better said in words.
struct Explanation {
  std::vector<ExplainProduct> products;
  std::string note;
};
using ExplainFn = void (*)(const ExplainQuery&, Explanation&);

/// How a listing shows an op's non-tensor arguments ("2", "axis=1", "[0,3]"): the text, and
/// whether it comes before the tensor arguments (2 - x).
struct ParamText {
  std::string text;
  bool first = false;
};
using ParamsFn = ParamText (*)(const Tape&, const Node&);

struct OpDescriptor {
  const char* name = "?";
  BackwardFn backward = nullptr;  ///< null: nothing flows back (a leaf, a constant)
  TangentFn tangent = nullptr;    ///< forward mode; null: jvp throws MissingRuleError naming the op
  CurvatureFn curvature = nullptr;  ///< Hessian-vector products; null: hvp throws MissingRuleError
  ExplainFn explain = nullptr;    ///< step-through: an adjoint element as a sum of products
  ParamsFn params = nullptr;      ///< listings: the non-tensor arguments
  bool commutative = false;       ///< arguments play the same role (pictures leave edges unnumbered)
  /// The value is one element of its single argument; an unnamed entry of this op is shown as its
  /// argument's name followed by the params text ("W[1,2]").
  bool element_of_argument = false;
  /// Scalar op codes only: the local partials do not depend on the values (x + y: 1 and 1; -x: -1)
  /// and are these, so the tape stores none for the op.  Leaves, the sink and rule entries have
  /// none to store (zeros here).
  bool constant_partials = false;
  double constant_partial[2] = {0.0, 0.0};
};

/// The curvature rule of an op whose backward rule reads no recorded value (only the adjoint and
/// saved indices): nothing to add.
void no_curvature(CurvatureContext&);

namespace detail {
// Scalar op codes: names, and the partials of the ops whose partials are constants.  Their backward
// step is the tape's own (argument indices and local partials); no scalar op needs a rule of its
// own.  Indexed by Op.
inline constexpr OpDescriptor scalar_ops[] = {
    {.name = "sink", .constant_partials = true},
    {.name = "leaf", .constant_partials = true},
    {.name = "add", .commutative = true, .constant_partials = true, .constant_partial = {1.0, 1.0}},
    {.name = "sub", .constant_partials = true, .constant_partial = {1.0, -1.0}},
    {.name = "mul", .commutative = true},  {.name = "div"},
    {.name = "neg", .constant_partials = true, .constant_partial = {-1.0, 0.0}},
    {.name = "add", .constant_partials = true, .constant_partial = {1.0, 0.0}},
    {.name = "sub", .constant_partials = true, .constant_partial = {1.0, 0.0}},
    {.name = "sub", .constant_partials = true, .constant_partial = {-1.0, 0.0}},
    {.name = "mul"},  {.name = "div"},    {.name = "div"},
    {.name = "pow"},   {.name = "pow"},    {.name = "pow"},  {.name = "exp"},    {.name = "log"},
    {.name = "log1p"}, {.name = "sqrt"},   {.name = "sin"},  {.name = "cos"},    {.name = "tan"},
    {.name = "tanh"},  {.name = "sigmoid"}, {.name = "relu"}, {.name = "abs"},   {.name = "softplus"},
    {.name = "square"}, {.name = "min"},  {.name = "max"},
    {.name = "expr"},  {.name = "rule", .constant_partials = true}};
static_assert(std::size(scalar_ops) == static_cast<std::size_t>(Op::count_));
}  // namespace detail

/// The descriptor of a scalar op code (its name: "add", "tanh", ...).
constexpr const OpDescriptor& descriptor(Op op) { return detail::scalar_ops[static_cast<std::size_t>(op)]; }
/// Short name of a scalar op code.
constexpr const char* op_name(Op op) { return descriptor(op).name; }

/// Descriptors of tensor leaves: one that takes a gradient ("leaf") and one that does not ("const").
extern const OpDescriptor leaf_op;
extern const OpDescriptor const_op;

}  // namespace ad
