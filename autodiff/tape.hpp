// ad::Tape: the record of a computation, swept backwards once to get every adjoint.
//
// Entries are appended in creation order, which is already a topological order: an entry can only
// use entries recorded before it.  The reverse sweep is therefore one loop from the last entry to
// the first, with no recursion and no graph search.  There is exactly one such loop (Tape::sweep);
// step-through logs, NaN checks and gradient reductions run beside it as hooks (SweepHooks).
//
// Two kinds of entry share one index space and one sweep:
//  * scalar entries (ad::Var) are plain data: a value and one 64-bit word (an op code and up to two
//    argument indices), in two arrays indexed by entry, and the local partial derivative with
//    respect to each argument, in a third array that holds only what the op needs: two for a binary
//    op, one for a unary op, none for a leaf or for ops whose partials are constants (x + y, x - y,
//    -x, x ± c), which the sweep takes from the op's descriptor.  So an entry is 16 to 32 bytes.  An `expr`
//    entry is a whole source expression over at most two Vars (autodiff/expr.hpp): its partials are
//    the expression's total derivatives, and the sweep treats it like any other;
//  * rule entries (tensor ops, and scalar results computed from tensors) carry a Node: the value's
//    dtype and shape, its elements, its arguments, its op descriptor (autodiff/op.hpp), whose
//    backward rule is a plain function pointer, and the op's typed saved state.
//
// Entry 0 is a sink: a scalar entry with no arguments points both argument slots at it with a
// zero partial, so the scalar sweep needs no branch for unary ops or leaves.
//
// This header is the core: it knows nothing of printing.  Listings, pictures and step-through
// live in autodiff/inspect.hpp, which also makes `fmt::print("{}", tape)` work.
//
// Threads.  A Tape is not thread-safe: a tape, and every Var, Tensor and Gradients of it, is used by
// one thread at a time.  Different tapes are independent, so one tape per thread is safe (a shared
// read-only Array or Parameter may be recorded on several tapes at once; updating it while another
// thread records or sweeps it is a data race).  A tape belongs to the thread that records on it
// first after construction or clear(); to hand a tape to another thread, stop using it, make sure
// the hand-over synchronises (a join, a mutex, a future), and call clear() from the new thread.
// In builds without NDEBUG (Debug, and the sanitizer builds) recording from any other thread
// throws ad::ThreadError before the tape is touched; Release builds do not check (define
// DELTAGRAD_THREAD_CHECKS=1 to check there too; it costs a thread-id comparison per entry).
#pragma once

#include <atomic>
#include <cstdint>
#include <new>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>
#include <thread>

#include <boost/container/flat_map.hpp>
#include <boost/container/static_vector.hpp>

#include "autodiff/arena.hpp"
#include "autodiff/array.hpp"
#include "autodiff/error.hpp"
#include "autodiff/handles.hpp"
#include "autodiff/op.hpp"

#ifndef DELTAGRAD_THREAD_CHECKS
#ifdef NDEBUG
#define DELTAGRAD_THREAD_CHECKS 0
#else
#define DELTAGRAD_THREAD_CHECKS 1
#endif
#endif

namespace ad {

class Tape;
class Var;
class Tensor;

namespace detail {
/// The scalar ops whose local partials are constants (OpDescriptor::constant_partials), which the
/// tape does not store: bit k is set for op code k.
inline constexpr std::uint64_t constant_partial_ops = [] {
  std::uint64_t m = 0;
  for (std::size_t k = 0; k < std::size(scalar_ops); ++k)
    if (scalar_ops[k].constant_partials) m |= std::uint64_t{1} << k;
  return m;
}();
constexpr bool has_constant_partials(Op op) { return (constant_partial_ops >> static_cast<unsigned>(op)) & 1; }
/// How many partials the tape stores for an entry of op `op` whose second argument is `b` (0: none).
constexpr std::size_t stored_partials(Op op, std::uint32_t b) {
  return has_constant_partials(op) ? 0 : b != 0 ? 2 : 1;
}
}  // namespace detail
class Gradients;
class BackwardContext;
struct GradStore;

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
  boost::container::static_vector<std::uint32_t, 3> args;
  const OpDescriptor* op = &leaf_op;  ///< what the op is: name, backward rule, ...
  const void* saved = nullptr;        ///< the op's typed state (arena memory), or null
  std::shared_ptr<const void> owner;  ///< keeps a leaf's Array buffer (or a custom op's state) alive
  const std::uint64_t* version = nullptr;  ///< a leaf: its Array's version stamp ...
  std::uint64_t version_seen = 0;          ///< ... and its value when the leaf was recorded
};

/// One entry of a sweep, as a hook sees it.
struct SweepStep {
  std::uint32_t entry = 0;
  /// Whether the entry's backward step pushes anything back: something flowed into its adjoint
  /// and it has arguments that take a gradient.  A hook is called for every entry either way.
  bool runs = false;
  Gradients& gradients;  ///< the adjoints so far (after the step, for `after`)
};

/// Optional calls around each entry's backward step, in sweep order (last entry first).  Uses:
/// step-through logs, NaN checks, starting the reduction of a parameter's gradient once every
/// entry reading it has been swept (Tape::readers).
struct SweepHooks {
  std::function<void(const SweepStep&)> before{};
  std::function<void(const SweepStep&)> after{};
  explicit operator bool() const { return before || after; }
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
  /// A tensor leaf reading `a` without copying it: the tape shares the Array's buffer.  The leaf
  /// remembers the buffer's version stamp: after an in-place update of `a` (an optimiser step) a
  /// sweep over this tape throws StaleTapeError naming the leaf, until clear() and a new recording.
  template <Element T>
  Tensor leaf(const Array<T>& a, LeafOptions opt = {});
  /// A tensor leaf that needs no gradient (data, labels, constants).
  template <Element T>
  Tensor constant(const Array<T>& a);

  /// Gives a recorded value a name, shown in listings and usable for lookups.  Returns the handle.
  Var name(Var v, std::string_view name);
  Tensor name(Tensor t, std::string_view name);
  /// Makes `name` find t too (lookups by name), without changing the name it is listed under.
  Tensor alias(Tensor t, std::string_view name);

  // ---- differentiation ---------------------------------------------------------------------------
  /// One reverse sweep seeded with dy/dy = 1.  The result holds the adjoint of every entry.
  Gradients gradient(Var y);
  /// Seeded with several outputs: the result is the gradient of sum_k weights[k] * ys[k].
  Gradients gradient(std::span<const Var> ys, std::span<const double> weights);
  /// Seeded with a one-element tensor (a loss).
  Gradients gradient(const Tensor& y);
  /// The same sweeps with hooks called around every entry's step.
  Gradients gradient(Var y, const SweepHooks& hooks);
  Gradients gradient(const Tensor& y, const SweepHooks& hooks);
  /// A vector-Jacobian product: one sweep seeded with a whole tensor of adjoints, `cotangent`
  /// (y's shape; any element type, converted to y's).  The result holds cotangentᵀ · ∂y/∂(each
  /// entry).  Throws ShapeError naming y if the shapes differ.
  Gradients vjp(const Tensor& y, const View& cotangent, const SweepHooks& hooks = {});
  /// Every sweep first checks that no leaf buffer changed since it was recorded (StaleTapeError
  /// naming the leaf otherwise); this is that check on its own, for the entries up to `last`.
  void check_leaves(std::uint32_t last, const char* what) const;

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
  /// Bytes held for a scalar entry (value, op and arguments, partials) at most: 32 for a binary op
  /// with partials to store, 24 for a unary one, 16 for a leaf or an op with constant partials.
  static constexpr std::size_t bytes_per_scalar_entry = sizeof(double) * 3 + sizeof(std::uint64_t);
  /// Number of stored partials (the third array's length in use).
  std::size_t stored_partials() const { return psize_; }
  /// Bytes in use: scalar arrays up to size(), tensor values in the arena, nodes.
  std::size_t bytes_used() const;
  /// Bytes reserved (capacity), which clear() keeps.
  std::size_t bytes_reserved() const;

  // ---- reading entries (for listings and inspection) --------------------------------------------
  Op op(std::uint32_t entry) const { return static_cast<Op>(word_[entry] >> 58); }
  /// Argument entries of an entry (0, 1, 2 or 3 of them).
  boost::container::static_vector<std::uint32_t, 3> args(std::uint32_t entry) const;
  /// Local partials of a scalar entry (one per argument); 0 for an entry without arguments.  The
  /// first call after recording indexes where each entry's stored partials start (one pass over
  /// the new entries); like recording, it is not safe on one tape from two threads at once.
  double partial(std::uint32_t entry, int k) const {
    const std::uint64_t w = word_[entry];
    const auto o = static_cast<unsigned>(w >> 58);
    if ((w << 6) == 0) return 0.0;  // no arguments
    if (detail::has_constant_partials(static_cast<Op>(o)))
      return detail::scalar_ops[o].constant_partial[k];
    if (k == 1 && ((w >> 29) & max_entries) == 0) return 0.0;  // a unary op stores one
    return partial_[partial_offset(entry) + static_cast<std::size_t>(k)];
  }
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
#if DELTAGRAD_THREAD_CHECKS
    check_thread();
#endif
    if (size_ == capacity_) grow();
    const std::uint32_t i = static_cast<std::uint32_t>(size_++);
    value_[i] = value;
    word_[i] = (std::uint64_t(op) << 58) | (std::uint64_t(b) << 29) | std::uint64_t(a);
    if (!detail::has_constant_partials(op)) {
      // Both slots are written, without a test; a unary op keeps only the first (the next entry
      // writes over the second).
      double* p = partial_.get() + psize_;
      p[0] = pa;
      p[1] = pb;
      psize_ += detail::stored_partials(op, b);
    }
    return i;
  }
  /// Appends a rule entry with the given node (its `entry` field is filled in).  For a
  /// scalar-valued node, `scalar_value` is its value.  Returns the entry.
  std::uint32_t push_node(Node&& node, double scalar_value = 0.0);
  /// Uninitialised, 64-byte aligned storage that lives until clear().
  void* allocate(std::size_t bytes) { return arena_.allocate(bytes); }
  template <Element T>
  T* allocate_elements(std::int64_t n) {
    try {
      return static_cast<T*>(allocate(sizeof(T) * static_cast<std::size_t>(n)));
    } catch (const std::bad_alloc&) {
      throw_allocation_failed("tape", dtype_of<T>, Shape{n});
    }
  }
  /// Storage for the value of shape `shape` that `op` computes: checks the shape (check_shape, so an
  /// element count that overflows is a ShapeError) and turns running out of memory into an
  /// AllocationError naming the op and the shape.  Nothing is recorded either way.
  template <Element T>
  T* allocate_value(const Shape& shape, const char* op) {
    check_shape(shape, op);
    try {
      return static_cast<T*>(allocate(sizeof(T) * static_cast<std::size_t>(numel(shape))));
    } catch (const std::bad_alloc&) {
      throw_allocation_failed(op, dtype_of<T>, shape);
    }
  }
  /// A copy of an op's saved state in the arena (freed, without destructors, by clear()).
  template <class S>
    requires std::is_trivially_copyable_v<S> && std::is_trivially_destructible_v<S>
  const S* save(const S& state) {
    static_assert(alignof(S) <= Arena::alignment);
    return ::new (allocate(sizeof(S))) S(state);
  }
  /// Checks that a handle belongs to this tape and this generation; `what` names the op.  An empty
  /// handle throws InvalidArgument, one from another tape ForeignHandleError, and one from before
  /// clear() (or not naming an entry) StaleHandleError.
  void check(const Tape* owner, std::uint32_t generation, std::uint32_t entry, const char* what) const {
    if (owner != this) throw_foreign(what, owner);
    // entry - 1 wraps for entry 0 (the sink), so one comparison covers 1 <= entry < size().
    if (generation != generation_ || std::size_t{entry} - 1 >= size_ - 1) throw_stale(what, generation);
  }
  /// The part of check() an unrecorded expression needs: its Vars were checked when it was made,
  /// and entries of the same generation stay valid, so the generation alone says it is current.
  void check_generation(const Tape* owner, std::uint32_t generation, const char* what) const {
    if (owner != this) throw_foreign(what, owner);
    if (generation != generation_) throw_stale(what, generation);
  }
  /// Checks that y can seed a sweep: a handle of this tape (as check() does) whose value has exactly
  /// one element (ShapeError otherwise, naming `what`, y and its shape).  Returns y's entry.
  std::uint32_t check_output(const Tensor& y, const char* what) const;
  /// Whether gradients flow into this entry (scalar entries: always; nodes: requires_grad).
  bool requires_grad(std::uint32_t entry) const;

  // ---- for inspection tools ----------------------------------------------------------------------
  /// The gradient of the most recent sweep, if it is still current (for listings).
  const GradStore* last_gradient() const;
  /// The tensor leaves (entries) that read the buffer of `a`, in creation order: a parameter used
  /// twice (weight sharing) has two.  Its gradient is the sum of their adjoints, complete once the
  /// sweep has passed the first of them.
  template <Element T>
  std::vector<std::uint32_t> readers(const Array<T>& a) const {
    return readers_of(a.data());
  }
  std::vector<std::uint32_t> readers_of(const void* buffer) const;

  /// Throws ThreadError if another thread records on this tape (it belongs to the first thread that
  /// records after construction or clear()).  Called by push() and push_node() when
  /// DELTAGRAD_THREAD_CHECKS is on.
  void check_thread() {
    if (owner_.load(std::memory_order_relaxed) != std::this_thread::get_id()) claim_or_throw();
  }

 private:
  void claim_or_throw();
  friend class Gradients;
  /// Zeroed adjoints for every entry, ready to be seeded.
  Gradients start_gradient();
  /// Adds w to the adjoint of a scalar entry, or w to every element of a tensor entry's adjoint.
  void seed(Gradients& g, std::uint32_t entry, double w) const;
  /// THE reverse sweep: every backward step from `last` down to entry 1, with hooks when given.
  template <bool hooked>
  void sweep(Gradients& g, std::uint32_t last, const SweepHooks* hooks) const;
  void run_sweep(Gradients& g, std::uint32_t last, const SweepHooks& hooks) const;
  /// Runs the backward step of rule entry i (node k) if anything flowed in; returns whether it ran.
  bool rule_step(GradStore& s, std::uint32_t i) const;
  bool rule_runs(const GradStore& s, std::uint32_t i) const;
  void grow();
  /// Where entry `entry`'s stored partials start in partial_ (an index built on first use).
  std::size_t partial_offset(std::uint32_t entry) const;
  /// The length of partial_ in use by the entries up to and including `last`.
  std::size_t partials_through(std::uint32_t last) const;
  [[noreturn]] void throw_foreign(const char* what, const Tape* owner) const;
  [[noreturn]] void throw_stale(const char* what, std::uint32_t generation) const;
  template <Element T>
  Tensor push_leaf(const Array<T>& a, bool requires_grad);

  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
  std::unique_ptr<double[]> value_;
  std::unique_ptr<std::uint64_t[]> word_;  // op (6 bits) | b (29 bits) | a (29 bits)
  std::unique_ptr<double[]> partial_;      // 0, 1 or 2 per entry, in entry order (room for 2 per entry)
  std::size_t psize_ = 0;           // partials stored
  mutable std::vector<std::uint32_t> poffset_;  // partial_offset's index, for entries below its size
  std::uint32_t generation_ = 1;
  std::vector<Node> nodes_;
  std::vector<std::uint32_t> leaves_;  // tensor leaf entries with a version stamp
  Arena arena_;
  boost::container::flat_map<std::uint32_t, std::string> names_;
  boost::container::flat_map<std::string, std::uint32_t, std::less<>> by_name_;
  std::shared_ptr<GradStore> last_;
  // None until the first entry after construction or clear().  Atomic so that the check itself is
  // not a data race when two threads do meet on one tape.
  std::atomic<std::thread::id> owner_{};
};

}  // namespace ad


namespace ad {

inline Var Tape::variable(double v) {
  // A leaf has no arguments, so its partials are never read (the sweep tests the argument bits
  // first): only the value and the op word are written, a third less memory traffic per leaf.
#if DELTAGRAD_THREAD_CHECKS
  check_thread();
#endif
  if (size_ == capacity_) grow();
  const auto i = static_cast<std::uint32_t>(size_++);
  value_[i] = v;
  word_[i] = std::uint64_t(Op::leaf) << 58;
  return Var(this, i, generation_);
}

template <Element T>
Tensor Tape::push_leaf(const Array<T>& a, bool requires_grad) {
  Node n;
  n.dtype = dtype_of<T>;
  n.shape = a.shape();
  n.data = const_cast<T*>(a.data());
  n.owner = std::shared_ptr<const void>(a.buffer(), a.data());
  n.requires_grad = requires_grad;
  n.op = requires_grad ? &leaf_op : &const_op;
  n.version = a.version_stamp();
  n.version_seen = a.version();
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
