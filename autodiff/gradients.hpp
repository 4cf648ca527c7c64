// ad::Gradients: what one reverse sweep returns, the adjoint of every recorded value.
//
// Adjoints are looked up by handle (g[x], g[z]) or by the name given with tape.name().  A scalar's
// adjoint is a double; a tensor's is a View with the tensor's dtype and shape.  A Gradients object
// stays valid until the tape is cleared; after that any lookup throws StaleHandleError.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "autodiff/arena.hpp"
#include "autodiff/array.hpp"
#include "autodiff/handles.hpp"
#include "autodiff/tape.hpp"

namespace ad {

class Expr;

/// The storage behind a Gradients object.
struct GradStore {
  const Tape* tape = nullptr;
  std::uint32_t generation = 0;
  std::vector<double> adj;   // one per entry: scalar adjoints
  std::vector<void*> tadj;   // one per node: tensor adjoints, null until something flows in
  Arena arena;

  /// Resets for a sweep over `tape` in its current state.
  void reset(const Tape& t);
  /// The adjoint buffer of node k, allocated zeroed on first use.
  void* tensor_adjoint(std::size_t k, const Node& n);
  /// The same, but a buffer allocated by this call is left uninitialised and `fresh` is set: the
  /// caller must then write every element (assigning into it is adding to zero).
  void* tensor_adjoint(std::size_t k, const Node& n, bool& fresh);
};

class Gradients {
 public:
  explicit Gradients(std::shared_ptr<GradStore> s) : s_(std::move(s)) {}

  /// dy/dx for a scalar x.
  double operator[](const Var& x) const;
  /// Not an unrecorded expression: converting it would record a new entry after this gradient was
  /// taken.  Keep the value in an ad::Var before taking the gradient, and look that up.  Deleted (so
  /// that `requires { g[e]; }` is false); compilers quote the declaration line below when a call
  /// selects it, so that line carries the reason.
  // clang-format off
  double operator[](const Expr& unrecorded) const = delete;  // g[e]: e is an unrecorded ad::Expr (auto e = x * y;), not on the tape. Keep it in an ad::Var (ad::Var e = x * y;) before taking the gradient.
  // clang-format on
  /// dy/dt for a tensor t: same dtype and shape as t (zeros where nothing flowed in).
  View operator[](const Tensor& t) const;
  /// The adjoint of the latest entry with this name; throws InvalidArgument if none.
  View operator[](std::string_view name) const;
  /// The adjoint of an entry given by index (a scalar entry gives a rank-0 f64 view).
  View adjoint(std::uint32_t entry) const;
  /// The adjoint of a tensor copied into an Array<T>.
  template <Element T>
  Array<T> array(const Tensor& t) const {
    return to_array<T>((*this)[t]);
  }
  /// Whether the entry was recorded before these gradients were taken (so they hold its adjoint).
  bool covers(std::uint32_t entry) const { return entry > 0 && entry < s_->adj.size(); }
  /// Whether anything flowed into this entry's adjoint (false for entries the output does not use).
  bool reached(std::uint32_t entry) const;

  const Tape& tape() const;
  /// The tape generation these gradients were taken in (they are stale once it changes).
  std::uint32_t generation() const { return s_->generation; }
  /// The storage itself, for inspection tools.
  GradStore& store() { return *s_; }
  const GradStore& store() const { return *s_; }

 private:
  void check(const char* what) const;
  [[noreturn]] static void throw_stale(const char* what);
  [[noreturn]] static void throw_after(const char* what);
  std::shared_ptr<GradStore> s_;
};

/// What a backward rule sees: the node being swept, its output adjoint, and its arguments'
/// values and adjoints.  Argument adjoints are added to, never assigned.
class BackwardContext {
 public:
  BackwardContext(const Tape& tape, GradStore& g, const Node& node) : tape_(tape), g_(g), node_(node) {}

  const Node& node() const { return node_; }
  /// The op's saved state, as recorded (the type the op saved; see Tape::save).
  template <class S>
  const S& saved() const;
  const Tape& tape() const { return tape_; }

  /// The output value and adjoint (tensor nodes).
  template <Element T>
  const T* value() const;
  template <Element T>
  const T* grad() const;
  /// The output adjoint of a scalar-valued node.
  double scalar_grad() const;

  /// Number of arguments, and whether argument k is a tensor (else a scalar Var).
  std::size_t arity() const;
  bool is_tensor(std::size_t k) const;
  const Node& arg_node(std::size_t k) const;
  const Shape& arg_shape(std::size_t k) const;
  template <Element T>
  const T* arg_value(std::size_t k) const;
  double arg_scalar(std::size_t k) const;
  /// The adjoint of tensor argument k, zeroed on first use; null if that argument needs no gradient.
  template <Element T>
  T* arg_grad(std::size_t k);
  /// Like arg_grad, for a rule that writes the whole adjoint at once (a BLAS product with beta):
  /// when `fresh` comes back true nothing has flowed in yet and the buffer is uninitialised, so the
  /// rule must assign every element (beta = 0) instead of adding.  Saves zeroing and re-reading it.
  template <Element T>
  T* arg_grad_or_fresh(std::size_t k, bool& fresh);
  /// The adjoint of scalar argument k.
  double& arg_scalar_grad(std::size_t k);

 private:
  const Tape& tape_;
  GradStore& g_;
  const Node& node_;
};


inline void Gradients::check(const char* what) const {
  if (s_->generation != s_->tape->generation()) [[unlikely]]
    throw_stale(what);
}

inline double Gradients::operator[](const Var& x) const {
  check("Gradients[Var]");
  s_->tape->check(x.tape(), x.generation(), x.index(), "Gradients[Var]");
  if (x.index() >= s_->adj.size()) [[unlikely]]
    throw_after("Gradients[Var]");
  return s_->adj[x.index()];
}

template <class S>
const S& BackwardContext::saved() const {
  return *static_cast<const S*>(node_.saved);
}

template <Element T>
const T* BackwardContext::value() const {
  return static_cast<const T*>(node_.data);
}

template <Element T>
const T* BackwardContext::grad() const {
  return static_cast<const T*>(g_.tadj[tape_.node_index(node_.entry)]);
}

inline double BackwardContext::scalar_grad() const { return g_.adj[node_.entry]; }
inline std::size_t BackwardContext::arity() const { return node_.args.size(); }
inline bool BackwardContext::is_tensor(std::size_t k) const {
  const Node* n = tape_.node(node_.args[k]);
  return n != nullptr && !n->scalar_out;
}
inline const Node& BackwardContext::arg_node(std::size_t k) const { return *tape_.node(node_.args[k]); }
inline const Shape& BackwardContext::arg_shape(std::size_t k) const {
  static const Shape scalar_shape;
  return is_tensor(k) ? arg_node(k).shape : scalar_shape;
}

template <Element T>
const T* BackwardContext::arg_value(std::size_t k) const {
  return static_cast<const T*>(arg_node(k).data);
}

inline double BackwardContext::arg_scalar(std::size_t k) const { return tape_.scalar_value(node_.args[k]); }

template <Element T>
T* BackwardContext::arg_grad(std::size_t k) {
  const Node* n = tape_.node(node_.args[k]);
  if (!n->requires_grad) return nullptr;
  return static_cast<T*>(g_.tensor_adjoint(tape_.node_index(node_.args[k]), *n));
}

template <Element T>
T* BackwardContext::arg_grad_or_fresh(std::size_t k, bool& fresh) {
  fresh = false;
  const Node* n = tape_.node(node_.args[k]);
  if (!n->requires_grad) return nullptr;
  return static_cast<T*>(g_.tensor_adjoint(tape_.node_index(node_.args[k]), *n, fresh));
}

inline double& BackwardContext::arg_scalar_grad(std::size_t k) { return g_.adj[node_.args[k]]; }

}  // namespace ad
