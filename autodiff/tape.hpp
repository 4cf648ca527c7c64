// ad::Tape: the record of a computation, swept backwards once to get every adjoint.
//
// Entries are appended in creation order, which is already a topological order: an entry can only
// use entries recorded before it.  The reverse sweep is therefore one loop from the last entry to
// the first, with no recursion and no graph search.
//
// Two kinds of entry share one index space and one sweep:
//  * scalar entries (ad::Var) are plain data: an op code, up to two argument indices and the local
//    partial derivative with respect to each, stored in contiguous arrays (32 bytes an entry).  An
//    `expr` entry is a whole source expression over at most two Vars (autodiff/expr.hpp): its
//    partials are the expression's total derivatives, and the sweep treats it like any other;
//  * rule entries (tensor ops, and scalar results computed from tensors) carry a Node: the value's
//    dtype and shape, its elements, its arguments and a backward rule (a plain function pointer).
//
// Entry 0 is a sink: a scalar entry with no arguments points both argument slots at it with a
// zero partial, so the scalar sweep needs no branch for unary ops or leaves.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <boost/container/flat_map.hpp>
#include <boost/container/static_vector.hpp>
#include <fmt/format.h>

#include "autodiff/arena.hpp"
#include "autodiff/array.hpp"
#include "autodiff/error.hpp"

namespace ad {

class Tape;
class Var;
class Tensor;
class Gradients;
class BackwardContext;
struct GradStore;

/// Op codes of entries.  `rule` marks an entry whose backward step is a Node's rule.
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

/// Short name of an op code ("add", "tanh", ...).
const char* op_name(Op op);

/// The backward rule of a rule entry: reads the output adjoint from the context and adds the
/// contribution to each argument's adjoint.  Rules add, never assign.
using BackwardFn = void (*)(BackwardContext&);

/// Small parameters a backward rule reads (an axis, a constant, a pointer to saved data).
struct NodeParams {
  double c = 0.0;
  std::int64_t i0 = 0;
  std::int64_t i1 = 0;
  bool flag = false;
  const void* saved = nullptr;  // arena memory recorded with the node, or null
};

/// A rule entry's data.  Tensor-valued nodes hold their elements in `data`; scalar-valued rule
/// nodes (an element of a tensor, a sum as a Var) keep their value in the scalar arrays like any
/// Var, and `data` is null.
struct Node {
  std::uint32_t entry = 0;
  DType dtype = DType::f64;
  bool scalar_out = false;
  bool requires_grad = false;
  Shape shape;
  void* data = nullptr;
  std::shared_ptr<const void> owner;  // keeps a leaf's Array buffer alive; null otherwise
  boost::container::static_vector<std::uint32_t, 3> args;
  BackwardFn backward = nullptr;
  const char* op = "leaf";
  NodeParams params;
};

/// Options of a tensor leaf.
struct LeafOptions {
  bool requires_grad = true;  ///< false for data: such a leaf costs nothing in the sweep
};

class Tape {
 public:
  /// Largest number of entries one tape holds (indices are 29-bit).
  static constexpr std::uint32_t max_entries = (std::uint32_t{1} << 29) - 1;

  Tape();
  ~Tape();
  Tape(const Tape&) = delete;
  Tape& operator=(const Tape&) = delete;
  Tape(Tape&&) = delete;  // handles point at the tape: it must not move
  Tape& operator=(Tape&&) = delete;

  // ---- recording ---------------------------------------------------------------------------------
  /// A new independent scalar variable (a leaf) with value v.
  Var variable(double v);
  /// A tensor leaf reading `a` without copying it: the tape shares the Array's buffer, so later
  /// in-place updates of `a` (an optimiser step) are seen by the tape until clear().
  template <Element T>
  Tensor leaf(const Array<T>& a, LeafOptions opt = {});
  /// A tensor leaf that needs no gradient (data, labels, constants).
  template <Element T>
  Tensor constant(const Array<T>& a);

  /// Gives a recorded value a name, shown in listings and usable for lookups.  Returns the handle.
  Var name(Var v, std::string_view name);
  Tensor name(Tensor t, std::string_view name);

  // ---- differentiation ---------------------------------------------------------------------------
  /// One reverse sweep seeded with dy/dy = 1.  The result holds the adjoint of every entry.
  Gradients gradient(Var y);
  /// Seeded with several outputs: the result is the gradient of sum_k weights[k] * ys[k].
  Gradients gradient(std::span<const Var> ys, std::span<const double> weights);
  /// Seeded with a one-element tensor (a loss).
  Gradients gradient(const Tensor& y);

  // ---- state -------------------------------------------------------------------------------------
  /// Forgets every entry but keeps all memory.  Handles from before become stale (using one
  /// throws StaleHandleError).
  void clear();
  /// Number of entries, counting the sink entry 0.
  std::size_t size() const { return size_; }
  /// Number of recorded entries other than the sink.
  std::size_t entries() const { return size_ - 1; }
  /// Incremented by every clear(); a handle remembers the generation it was made in.
  std::uint32_t generation() const { return generation_; }
  /// Bytes held for scalar entries (value, arguments, partials) per entry: the fixed cost of a Var.
  static constexpr std::size_t bytes_per_scalar_entry = sizeof(double) * 3 + sizeof(std::uint64_t);
  /// Bytes in use: scalar arrays up to size(), tensor values in the arena, nodes.
  std::size_t bytes_used() const;
  /// Bytes reserved (capacity), which clear() keeps.
  std::size_t bytes_reserved() const;

  // ---- reading entries (for listings and inspection) --------------------------------------------
  Op op(std::uint32_t entry) const { return static_cast<Op>(word_[entry] >> 58); }
  /// Argument entries of an entry (0, 1, 2 or 3 of them).
  boost::container::static_vector<std::uint32_t, 3> args(std::uint32_t entry) const;
  /// Local partials of a scalar entry (one per argument).
  double partial(std::uint32_t entry, int k) const { return partial_[2 * entry + k]; }
  /// The scalar value of a scalar entry (including scalar-valued rule entries).
  double scalar_value(std::uint32_t entry) const { return value_[entry]; }
  /// The node of a rule entry, or null for a scalar entry.
  const Node* node(std::uint32_t entry) const {
    return entry < size_ && op(entry) == Op::rule ? &nodes_[node_index(entry)] : nullptr;
  }
  /// Name of an entry, or empty.
  std::string_view name_of(std::uint32_t entry) const;
  /// Latest entry given this name, or 0 (the sink) if none.
  std::uint32_t find(std::string_view name) const;
  /// The entry's name, or `fallback` when it has none (for error messages).
  std::string label(std::uint32_t entry, std::string_view fallback) const;
  /// dtype and shape of an entry: f64[] for scalar entries.
  DType dtype_of_entry(std::uint32_t entry) const;
  Shape shape_of_entry(std::uint32_t entry) const;
  /// Value of an entry as a view (a scalar entry is a rank-0 f64 view).
  View value_view(std::uint32_t entry) const;
  /// Position of a rule entry's node among all nodes (its adjoint slot in Gradients).
  std::uint32_t node_index(std::uint32_t entry) const { return static_cast<std::uint32_t>(word_[entry] & max_entries); }
  /// Number of rule nodes.
  std::size_t node_count() const { return nodes_.size(); }
  const Node& node_at(std::size_t k) const { return nodes_[k]; }

  // ---- for op authors ----------------------------------------------------------------------------
  /// Appends a scalar entry.  Unused argument slots are 0 with partial 0.
  std::uint32_t push(Op op, double value, std::uint32_t a, double pa, std::uint32_t b, double pb) {
    if (size_ == capacity_) grow();
    const std::uint32_t i = static_cast<std::uint32_t>(size_++);
    value_[i] = value;
    word_[i] = (std::uint64_t(op) << 58) | (std::uint64_t(b) << 29) | std::uint64_t(a);
    partial_[2 * i] = pa;
    partial_[2 * i + 1] = pb;
    return i;
  }
  /// Appends a rule entry with the given node (its `entry` field is filled in).  For a
  /// scalar-valued node, `scalar_value` is its value.  Returns the entry.
  std::uint32_t push_node(Node&& node, double scalar_value = 0.0);
  /// Uninitialised, 64-byte aligned storage that lives until clear().
  void* allocate(std::size_t bytes) { return arena_.allocate(bytes); }
  template <Element T>
  T* allocate_elements(std::int64_t n) {
    return static_cast<T*>(allocate(sizeof(T) * static_cast<std::size_t>(n)));
  }
  /// Checks that a handle belongs to this tape and this generation; `what` names the op.  An empty
  /// handle throws InvalidArgument, one from another tape ForeignHandleError, and one from before
  /// clear() (or not naming an entry) StaleHandleError.
  void check(const Tape* owner, std::uint32_t generation, std::uint32_t entry, const char* what) const {
    if (owner != this) throw_foreign(what, owner);
    if (generation != generation_ || entry >= size_ || entry == 0) throw_stale(what, generation);
  }
  /// Checks that y can seed a sweep: a handle of this tape (as check() does) whose value has exactly
  /// one element (ShapeError otherwise, naming `what`, y and its shape).  Returns y's entry.
  std::uint32_t check_output(const Tensor& y, const char* what) const;
  /// Whether gradients flow into this entry (scalar entries: always; nodes: requires_grad).
  bool requires_grad(std::uint32_t entry) const;

  // ---- low-level sweep (for inspection tools) ----------------------------------------------------
  /// Zeroed adjoints for every entry, ready to be seeded.
  Gradients start_gradient();
  /// Adds w to the adjoint of a scalar entry, or w to every element of a tensor entry's adjoint.
  void seed(Gradients& g, std::uint32_t entry, double w) const;
  /// Runs the backward step of one entry: adds its adjoint times its local derivatives into its
  /// arguments' adjoints.
  void backward_step(Gradients& g, std::uint32_t entry) const;
  /// Runs every backward step from `last` down to entry 1.
  void sweep(Gradients& g, std::uint32_t last) const;
  /// The gradient of the most recent sweep, if it is still current (for listings).
  const GradStore* last_gradient() const;

 private:
  friend class Gradients;
  void grow();
  [[noreturn]] void throw_foreign(const char* what, const Tape* owner) const;
  [[noreturn]] void throw_stale(const char* what, std::uint32_t generation) const;
  template <Element T>
  Tensor push_leaf(const Array<T>& a, bool requires_grad);

  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::unique_ptr<double[]> value_;
  std::unique_ptr<std::uint64_t[]> word_;  // op (6 bits) | b (29 bits) | a (29 bits)
  std::unique_ptr<double[]> partial_;      // two per entry
  std::uint32_t generation_ = 1;
  std::vector<Node> nodes_;
  Arena arena_;
  boost::container::flat_map<std::uint32_t, std::string> names_;
  boost::container::flat_map<std::string, std::uint32_t, std::less<>> by_name_;
  std::shared_ptr<GradStore> last_;
};

}  // namespace ad

/// Lists the tape one entry a line: index, name, op, arguments, value, and the adjoint of the
/// most recent gradient while it is current.
template <>
struct fmt::formatter<ad::Tape> : fmt::formatter<std::string_view> {
  auto format(const ad::Tape& t, fmt::format_context& ctx) const -> fmt::format_context::iterator;
};

#include "autodiff/var.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/gradients.hpp"

namespace ad {

inline Var Tape::variable(double v) { return Var(this, push(Op::leaf, v, 0, 0.0, 0, 0.0), generation_); }

template <Element T>
Tensor Tape::push_leaf(const Array<T>& a, bool requires_grad) {
  Node n;
  n.dtype = dtype_of<T>;
  n.shape = a.shape();
  n.data = const_cast<T*>(a.data());
  n.owner = std::shared_ptr<const void>(a.buffer(), a.data());
  n.requires_grad = requires_grad;
  n.op = requires_grad ? "leaf" : "const";
  const std::uint32_t e = push_node(std::move(n));
  return Tensor(this, e, generation_);
}

template <Element T>
Tensor Tape::leaf(const Array<T>& a, LeafOptions opt) {
  return push_leaf(a, opt.requires_grad);
}

template <Element T>
Tensor Tape::constant(const Array<T>& a) {
  return push_leaf(a, false);
}

}  // namespace ad
