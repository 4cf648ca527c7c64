#include "autodiff/tape.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "autodiff/gradients.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"

namespace ad {

const OpDescriptor leaf_op{.name = "leaf"};
const OpDescriptor const_op{.name = "const"};

Tape::Tape() {
  grow();
  push(Op::sink, 0.0, 0, 0.0, 0, 0.0);
  owner_.store(std::thread::id(), std::memory_order_relaxed);  // the sink claims nothing
}

void Tape::claim_or_throw() {
  std::thread::id none;
  if (owner_.compare_exchange_strong(none, std::this_thread::get_id(), std::memory_order_relaxed)) return;
  throw ThreadError(fmt::format("tape: recording from a thread other than the one that owns this tape ({} entries "
                                "recorded); a Tape is not thread-safe: use one tape per thread, or hand the tape "
                                "over and call clear() in the new thread",
                                size_ - 1));
}

Tape::~Tape() = default;

void Tape::grow() {
  if (capacity_ > max_entries)
    throw CapacityError(fmt::format("tape: more than {} entries recorded; clear the tape or split the computation",
                                    max_entries));
  const std::size_t cap = std::min<std::size_t>(std::max<std::size_t>(1024, capacity_ * 2), std::size_t{max_entries} + 1);
  auto value = std::make_unique_for_overwrite<double[]>(cap);
  auto word = std::make_unique_for_overwrite<std::uint64_t[]>(cap);
  auto partial = std::make_unique_for_overwrite<double[]>(2 * cap);
  if (size_) {
    std::memcpy(value.get(), value_.get(), size_ * sizeof(double));
    std::memcpy(word.get(), word_.get(), size_ * sizeof(std::uint64_t));
    std::memcpy(partial.get(), partial_.get(), psize_ * sizeof(double));
  }
  value_ = std::move(value);
  word_ = std::move(word);
  partial_ = std::move(partial);
  capacity_ = cap;
}

namespace {
/// How many partials an entry with op word w stored.
std::size_t stored_by(std::uint64_t w) {
  return detail::stored_partials(static_cast<Op>(w >> 58), static_cast<std::uint32_t>((w >> 29) & Tape::max_entries));
}
}  // namespace

std::size_t Tape::partial_offset(std::uint32_t entry) const {
  if (entry >= poffset_.size()) {
    std::size_t i = poffset_.size(), off = i == 0 ? 0 : poffset_.back();
    if (i > 0) off += stored_by(word_[i - 1]);
    poffset_.resize(size_);
    for (; i < size_; ++i) {
      poffset_[i] = static_cast<std::uint32_t>(off);
      off += stored_by(word_[i]);
    }
  }
  return poffset_[entry];
}

std::size_t Tape::partials_through(std::uint32_t last) const {
  std::size_t n = psize_;
  for (std::size_t i = size_ - 1; i > last; --i) n -= stored_by(word_[i]);
  return n;
}

std::uint32_t Tape::push_node(Node&& node, double scalar_value) {
#if DELTAGRAD_THREAD_CHECKS
  check_thread();  // before anything changes
#endif
  if (size_ == capacity_) grow();  // grow first so a CapacityError leaves the tape unchanged
  const auto k = static_cast<std::uint32_t>(nodes_.size());
  node.entry = static_cast<std::uint32_t>(size_);
  if (node.version) leaves_.push_back(node.entry);
  nodes_.emplace_back(std::move(node));
  return push(Op::rule, scalar_value, k, 0.0, 0, 0.0);
}

void Tape::throw_foreign(const char* what, const Tape* owner) const {
  if (owner == nullptr) throw InvalidArgument(fmt::format("{}: empty handle (default-constructed)", what));
  throw ForeignHandleError(fmt::format("{}: the handle belongs to another tape", what));
}

void Tape::throw_stale(const char* what, std::uint32_t generation) const {
  if (generation != generation_)
    throw StaleHandleError(fmt::format(
        "{}: stale handle: it was recorded before tape.clear() (handle generation {}, tape generation {})", what,
        generation, generation_));
  throw StaleHandleError(fmt::format("{}: the handle does not name a recorded entry of this tape", what));
}

boost::container::static_vector<std::uint32_t, 3> Tape::args(std::uint32_t entry) const {
  boost::container::static_vector<std::uint32_t, 3> r;
  const Op o = op(entry);
  if (o == Op::rule) {
    for (auto a : nodes_[node_index(entry)].args) r.push_back(a);
    return r;
  }
  const std::uint64_t w = word_[entry];
  const auto a = static_cast<std::uint32_t>(w & max_entries);
  const auto b = static_cast<std::uint32_t>((w >> 29) & max_entries);
  if (a != 0) r.push_back(a);
  if (b != 0) r.push_back(b);
  return r;
}

bool Tape::requires_grad(std::uint32_t entry) const {
  const Node* n = node(entry);
  return n == nullptr || n->requires_grad;
}


Var Tape::name(Var v, std::string_view name) {
  check(v.tape(), v.generation(), v.index(), "Tape::name");
  names_[v.index()] = std::string(name);
  by_name_[std::string(name)] = v.index();
  return v;
}

Tensor Tape::name(Tensor t, std::string_view name) {
  check(t.tape(), t.generation(), t.index(), "Tape::name");
  names_[t.index()] = std::string(name);
  by_name_[std::string(name)] = t.index();
  return t;
}

Tensor Tape::alias(Tensor t, std::string_view name) {
  check(t.tape(), t.generation(), t.index(), "Tape::alias");
  by_name_[std::string(name)] = t.index();
  return t;
}

std::string_view Tape::name_of(std::uint32_t entry) const {
  auto it = names_.find(entry);
  return it == names_.end() ? std::string_view{} : std::string_view(it->second);
}

std::uint32_t Tape::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? 0 : it->second;
}

std::string Tape::label(std::uint32_t entry, std::string_view fallback) const {
  auto n = name_of(entry);
  return std::string(n.empty() ? fallback : n);
}

DType Tape::dtype_of_entry(std::uint32_t entry) const {
  const Node* n = node(entry);
  return n && !n->scalar_out ? n->dtype : DType::f64;
}

Shape Tape::shape_of_entry(std::uint32_t entry) const {
  const Node* n = node(entry);
  return n && !n->scalar_out ? n->shape : Shape{};
}

View Tape::value_view(std::uint32_t entry) const {
  const Node* n = node(entry);
  if (n && !n->scalar_out) return View(n->dtype, n->shape, n->data);
  return View(DType::f64, Shape{}, &value_[entry]);
}

void Tape::clear() {
  owner_.store(std::thread::id(), std::memory_order_relaxed);
  size_ = 1;
  psize_ = 0;
  poffset_.clear();
  ++generation_;
  nodes_.clear();
  leaves_.clear();
  arena_.reset();
  names_.clear();
  by_name_.clear();
}

std::size_t Tape::bytes_used() const {
  return size_ * (sizeof(double) + sizeof(std::uint64_t)) + psize_ * sizeof(double) + nodes_.size() * sizeof(Node) +
         arena_.bytes_used();
}

std::size_t Tape::bytes_reserved() const {
  return capacity_ * bytes_per_scalar_entry + nodes_.capacity() * sizeof(Node) + arena_.bytes_reserved();
}

// ---- differentiation ---------------------------------------------------------------------------------

Gradients Tape::start_gradient() {
  // Reuse the previous sweep's storage when nobody else holds it: a training loop then allocates
  // nothing for gradients in steady state.
  if (!last_ || last_.use_count() != 1) last_ = std::make_shared<GradStore>();
  last_->reset(*this);
  return Gradients(last_);
}

void Tape::seed(Gradients& g, std::uint32_t entry, double w) const {
  GradStore& s = g.store();
  const Node* n = node(entry);
  if (n && !n->scalar_out) {
    dispatch(n->dtype, [&]<class T>() {
      T* a = static_cast<T*>(s.tensor_adjoint(node_index(entry), *n));
      for (std::int64_t i = 0, m = numel(n->shape); i < m; ++i) a[i] += static_cast<T>(w);
    });
  } else {
    s.adj[entry] += w;
  }
}

bool Tape::rule_runs(const GradStore& s, std::uint32_t i) const {
  const std::uint32_t k = node_index(i);
  const Node& n = nodes_[k];
  if (!n.op->backward || !n.requires_grad) return false;
  return n.scalar_out ? s.adj[i] != 0.0 : s.tadj[k] != nullptr;
}

bool Tape::rule_step(GradStore& s, std::uint32_t i) const {
  if (!rule_runs(s, i)) return false;
  const Node& n = nodes_[node_index(i)];
  BackwardContext ctx(*this, s, n);
  n.op->backward(ctx);
  return true;
}

// The one reverse sweep.  Without hooks it is a tight loop over the scalar arrays, calling a node's
// backward rule where there is one; `hooked` adds the calls around each step (a separate
// instantiation, so the plain sweep pays nothing for them).
template <bool hooked>
void Tape::sweep(Gradients& g, std::uint32_t last, const SweepHooks* hooks) const {
  GradStore& s = g.store();
  double* adj = s.adj.data();
  const std::uint64_t* word = word_.get();
  // The partials are read backwards with the entries: p is just past those of entry i.
  const double* p = partial_.get() + partials_through(last);
  for (std::uint32_t i = last; i > 0; --i) {
    const std::uint64_t w = word[i];
    const auto o = static_cast<unsigned>(w >> 58);
    if (o == static_cast<unsigned>(Op::rule)) {
      if constexpr (hooked) {
        const SweepStep step{.entry = i, .runs = rule_runs(s, i), .gradients = g};
        if (hooks->before) hooks->before(step);
        if (step.runs) rule_step(s, i);
        if (hooks->after) hooks->after(step);
      } else {
        rule_step(s, i);
      }
      continue;
    }
    if constexpr (!hooked) {
      if ((w << 6) == 0) continue;  // no arguments (a leaf): nothing stored, nothing to pass on
    }
    const auto a = static_cast<std::uint32_t>(w & max_entries), b = static_cast<std::uint32_t>((w >> 29) & max_entries);
    // The entry's partials: stored ones (the pointer steps back over them) or the op's constants.
    double pa, pb;
    if (!detail::has_constant_partials(static_cast<Op>(o))) {
      p -= detail::stored_partials(static_cast<Op>(o), b);
      pa = p[0];
      pb = b != 0 ? p[1] : 0.0;
    } else {
      pa = detail::scalar_ops[o].constant_partial[0];
      pb = detail::scalar_ops[o].constant_partial[1];
    }
    if constexpr (hooked) {
      // A scalar entry runs when something flowed in (a leaf then has nothing to pass on).
      const SweepStep step{.entry = i, .runs = adj[i] != 0.0, .gradients = g};
      if (hooks->before) hooks->before(step);
      if (step.runs && (w << 6) != 0) {
        const double gi = adj[i];
        adj[a] += pa * gi;
        adj[b] += pb * gi;
      }
      if (hooks->after) hooks->after(step);
    } else {
      const double gi = adj[i];
      if (gi == 0.0) continue;  // nothing flowed in: skip, so an infinite partial cannot make 0·inf = NaN
      adj[a] += pa * gi;
      adj[b] += pb * gi;
    }
  }
}

void Tape::run_sweep(Gradients& g, std::uint32_t last, const SweepHooks& hooks) const {
  if (hooks) sweep<true>(g, last, &hooks);
  else sweep<false>(g, last, nullptr);
}

void Tape::check_leaves(std::uint32_t last, const char* what) const {
  for (const std::uint32_t e : leaves_) {
    if (e > last) break;
    const Node& n = nodes_[node_index(e)];
    if (*n.version == n.version_seen) continue;
    throw StaleTapeError(fmt::format(
        "{}: leaf {} ({}) was changed in place after it was recorded (an optimiser step, a load or a write to its "
        "Array): the tape mixes old values with new ones; clear the tape and record the computation again",
        what, label(e, fmt::format("#{}", e)), describe(n.dtype, n.shape)));
  }
}

Gradients Tape::gradient(Var y) { return gradient(y, SweepHooks{}); }

Gradients Tape::gradient(Var y, const SweepHooks& hooks) {
  check(y.tape(), y.generation(), y.index(), "gradient");
  check_leaves(y.index(), "gradient");
  Gradients g = start_gradient();
  seed(g, y.index(), 1.0);
  run_sweep(g, y.index(), hooks);
  return g;
}

Gradients Tape::gradient(std::span<const Var> ys, std::span<const double> weights) {
  if (ys.size() != weights.size())
    throw InvalidArgument(fmt::format("gradient: {} outputs but {} weights", ys.size(), weights.size()));
  std::uint32_t last = 0;
  for (const Var& y : ys) {
    check(y.tape(), y.generation(), y.index(), "gradient");
    last = std::max(last, y.index());
  }
  check_leaves(last, "gradient");
  Gradients g = start_gradient();
  for (std::size_t k = 0; k < ys.size(); ++k) seed(g, ys[k].index(), weights[k]);
  sweep<false>(g, last, nullptr);
  return g;
}

std::uint32_t Tape::check_output(const Tensor& y, const char* what) const {
  check(y.tape(), y.generation(), y.index(), what);
  if (y.size() != 1)
    throw ShapeError(fmt::format("{}: the output must have exactly one element; {} is {}", what,
                                 label(y.index(), "y"), describe(y.dtype(), y.shape())));
  return y.index();
}

Gradients Tape::gradient(const Tensor& y) { return gradient(y, SweepHooks{}); }

Gradients Tape::gradient(const Tensor& y, const SweepHooks& hooks) {
  const std::uint32_t e = check_output(y, "gradient");
  check_leaves(e, "gradient");
  Gradients g = start_gradient();
  seed(g, e, 1.0);
  run_sweep(g, e, hooks);
  return g;
}

Gradients Tape::vjp(const Tensor& y, const View& cotangent, const SweepHooks& hooks) {
  check(y.tape(), y.generation(), y.index(), "vjp");
  const Node* n = node(y.index());
  if (n == nullptr || n->scalar_out)
    throw InvalidArgument(fmt::format("vjp: {} is not a tensor entry", label(y.index(), "y")));
  if (cotangent.shape() != n->shape || cotangent.data() == nullptr)
    throw ShapeError(fmt::format("vjp: the cotangent is {} but {} is {}", describe(cotangent.dtype(), cotangent.shape()),
                                 label(y.index(), "y"), describe(n->dtype, n->shape)));
  check_leaves(y.index(), "vjp");
  Gradients g = start_gradient();
  dispatch(n->dtype, [&]<class T>() {
    T* a = static_cast<T*>(g.store().tensor_adjoint(node_index(y.index()), *n));
    dispatch(cotangent.dtype(), [&]<class S>() {
      const S* c = static_cast<const S*>(cotangent.data());
      for (std::int64_t i = 0, m = numel(n->shape); i < m; ++i) a[i] += static_cast<T>(c[i]);
    });
  });
  run_sweep(g, y.index(), hooks);
  return g;
}

std::vector<std::uint32_t> Tape::readers_of(const void* buffer) const {
  std::vector<std::uint32_t> r;
  for (const std::uint32_t e : leaves_)
    if (nodes_[node_index(e)].data == buffer) r.push_back(e);
  return r;
}

const GradStore* Tape::last_gradient() const {
  return last_ && last_->generation == generation_ && last_->tape == this && last_->adj.size() == size_ ? last_.get()
                                                                                                        : nullptr;
}

// ---- GradStore and Gradients -------------------------------------------------------------------------

void GradStore::reset(const Tape& t) {
  tape = &t;
  generation = t.generation();
  adj.assign(t.size(), 0.0);
  tadj.assign(t.node_count(), nullptr);
  arena.reset();
}

void* GradStore::tensor_adjoint(std::size_t k, const Node& n) {
  if (!tadj[k]) {
    const std::size_t bytes = static_cast<std::size_t>(numel(n.shape)) * size_of(n.dtype);
    tadj[k] = arena.allocate(bytes);
    std::memset(tadj[k], 0, bytes);
  }
  return tadj[k];
}

void* GradStore::tensor_adjoint(std::size_t k, const Node& n, bool& fresh) {
  fresh = tadj[k] == nullptr;
  if (fresh) tadj[k] = arena.allocate(static_cast<std::size_t>(numel(n.shape)) * size_of(n.dtype));
  return tadj[k];
}

const Tape& Gradients::tape() const { return *s_->tape; }

void Gradients::throw_stale(const char* what) {
  throw StaleHandleError(fmt::format("{}: these gradients were taken before tape.clear()", what));
}

void Gradients::throw_after(const char* what) {
  throw InvalidArgument(fmt::format("{}: the value was recorded after this gradient was taken", what));
}

View Gradients::adjoint(std::uint32_t entry) const {
  check("Gradients::adjoint");
  if (entry == 0 || entry >= s_->adj.size())
    throw InvalidArgument(fmt::format("Gradients::adjoint: no entry #{} in this gradient", entry));
  const Tape& t = *s_->tape;
  const Node* n = t.node(entry);
  if (n && !n->scalar_out) return View(n->dtype, n->shape, s_->tensor_adjoint(t.node_index(entry), *n));
  return View(DType::f64, Shape{}, &s_->adj[entry]);
}

View Gradients::operator[](const Tensor& x) const {
  check("Gradients[Tensor]");
  s_->tape->check(x.tape(), x.generation(), x.index(), "Gradients[Tensor]");
  return adjoint(x.index());
}

View Gradients::operator[](std::string_view name) const {
  check("Gradients[name]");
  const std::uint32_t e = s_->tape->find(name);
  if (e == 0) throw InvalidArgument(fmt::format("Gradients[\"{}\"]: no entry of the tape has this name", name));
  return adjoint(e);
}

bool Gradients::reached(std::uint32_t entry) const {
  check("Gradients::reached");
  const Tape& t = *s_->tape;
  const Node* n = t.node(entry);
  if (n && !n->scalar_out) return s_->tadj[t.node_index(entry)] != nullptr;
  return entry < s_->adj.size() && s_->adj[entry] != 0.0;
}

}  // namespace ad

