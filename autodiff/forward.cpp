// The forward pass over a tape (jvp) and the tangent-of-adjoints sweep of a Hessian-vector product
// (hvp).  See autodiff/forward.hpp for what they compute and docs/second_order.md for the method.
#include "autodiff/forward.hpp"

#include <algorithm>
#include <cmath>

namespace ad {

void no_curvature(CurvatureContext&) {}

// ---- storage -------------------------------------------------------------------------------------------

void TangentStore::reset(const Tape& t) {
  buffers.reset(t);
  reuse = false;
  owned.assign(t.node_count(), 0);
}

void TangentStore::enable_reuse(const Tape& t, std::uint32_t last) {
  reuse = true;
  last_reader.assign(t.node_count(), 0);
  // Nodes are in creation order, so the last assignment is the last reader.  Only rule nodes read
  // tensors (a scalar entry's arguments are scalars).
  for (std::size_t k = 0; k < t.node_count(); ++k) {
    const Node& n = t.node_at(k);
    if (n.entry > last) break;
    for (const std::uint32_t a : n.args)
      if (t.node(a)) last_reader[t.node_index(a)] = static_cast<std::uint32_t>(k);
  }
}

void* TangentStore::take_arg_tangent(const Tape& t, const Node& n, std::size_t k) {
  if (!reuse) return nullptr;
  const Node* a = t.node(n.args[k]);
  if (a == nullptr || a->scalar_out || n.scalar_out) return nullptr;
  const std::uint32_t ak = t.node_index(n.args[k]), nk = t.node_index(n.entry);
  if (!owned[ak] || last_reader[ak] != nk || tdot()[nk] != nullptr || a->dtype != n.dtype ||
      numel(a->shape) != numel(n.shape))
    return nullptr;
  tdot()[nk] = tdot()[ak];
  owned[nk] = 1;
  tdot()[ak] = nullptr;  // nothing reads it again
  owned[ak] = 0;
  return tdot()[nk];
}

void TangentStore::alias(const Tape& t, const Node& n, void* data) {
  tdot()[t.node_index(n.entry)] = data;
  for (const std::uint32_t a : n.args)
    if (const Node* an = t.node(a); an && !an->scalar_out && tdot()[t.node_index(a)] == data) owned[t.node_index(a)] = 0;
}

void* TangentStore::tensor_tangent(std::size_t k, const Node& n, bool zeroed) {
  if (!tdot()[k]) owned[k] = 1;
  if (zeroed) return buffers.tensor_adjoint(k, n);
  bool fresh = false;
  return buffers.tensor_adjoint(k, n, fresh);
}

bool TangentStore::zero(const Tape& t, std::uint32_t e) const {
  const Node* n = t.node(e);
  if (n && !n->scalar_out) return tdot()[t.node_index(e)] == nullptr;
  return dot()[e] == 0.0;
}

void Tangents::check(const char* what) const {
  if (s_->generation() != s_->tape()->generation())
    throw StaleHandleError(fmt::format("{}: these tangents were computed before tape.clear()", what));
}

double Tangents::operator[](const Var& x) const {
  check("Tangents[Var]");
  s_->tape()->check(x.tape(), x.generation(), x.index(), "Tangents[Var]");
  if (x.index() >= s_->dot().size())
    throw InvalidArgument("Tangents[Var]: the value was recorded after these tangents were computed");
  return s_->dot()[x.index()];
}

View Tangents::operator[](const Tensor& t) const {
  check("Tangents[Tensor]");
  s_->tape()->check(t.tape(), t.generation(), t.index(), "Tangents[Tensor]");
  return tangent(t.index());
}

View Tangents::tangent(std::uint32_t entry) const {
  check("Tangents::tangent");
  if (entry == 0 || entry >= s_->dot().size())
    throw InvalidArgument(fmt::format("Tangents::tangent: no entry #{} in these tangents", entry));
  const Tape& t = *s_->tape();
  const Node* n = t.node(entry);
  if (n && !n->scalar_out) return View(n->dtype, n->shape, s_->tensor_tangent(t.node_index(entry), *n));
  return View(DType::f64, Shape{}, &s_->dot()[entry]);
}

// ---- the forward pass ----------------------------------------------------------------------------------

namespace {

/// Writes the directions' tangents into their leaves (after checking them) and returns the last
/// entry any of them names.
void seed_tangents(const Tape& tape, TangentStore& s, std::span<const Direction> directions, const char* what,
                   bool alias) {
  std::vector<std::uint32_t> seen;
  for (const Direction& d : directions) {
    std::uint32_t e = 0;
    if (d.is_scalar()) {
      const Var& v = d.var();
      if (v.empty()) throw InvalidArgument(fmt::format("{}: empty Var as an input", what));
      tape.check(v.tape(), v.generation(), v.index(), what);
      e = v.index();
      if (tape.op(e) != Op::leaf)
        throw InvalidArgument(fmt::format("{}: input {} is not a leaf (a variable made by Tape::variable)", what,
                                          tape.label(e, fmt::format("#{}", e))));
      s.dot()[e] = d.scalar();
    } else {
      const Tensor& x = d.tensor();
      if (x.empty()) throw InvalidArgument(fmt::format("{}: empty Tensor as an input", what));
      tape.check(x.tape(), x.generation(), x.index(), what);
      e = x.index();
      const Node* n = tape.node(e);
      if (n == nullptr || n->scalar_out || !n->args.empty() || n->op->backward != nullptr || n->op->tangent != nullptr)
        throw InvalidArgument(fmt::format("{}: input {} is not a tensor leaf (Tape::leaf or Tape::constant)", what,
                                          tape.label(e, fmt::format("#{}", e))));
      const View& v = d.tangent();
      if (v.shape() != n->shape || (v.data() == nullptr && numel(n->shape) != 0))
        throw ShapeError(fmt::format("{}: the tangent of {} is {} but {} is {}", what, tape.label(e, "the input"),
                                     describe(v.dtype(), v.shape()), tape.label(e, "the input"),
                                     describe(n->dtype, n->shape)));
      if (alias && v.dtype() == n->dtype) {  // read in place: rules never write their arguments' tangents
        s.tdot()[tape.node_index(e)] = const_cast<void*>(v.data());
      } else dispatch(n->dtype, [&]<class T>() {
        T* dst = static_cast<T*>(s.tensor_tangent(tape.node_index(e), *n, false));
        dispatch(v.dtype(), [&]<class S>() {
          const S* src = static_cast<const S*>(v.data());
          for (std::int64_t i = 0, m = numel(n->shape); i < m; ++i) dst[i] = static_cast<T>(src[i]);
        });
      });
    }
    if (std::find(seen.begin(), seen.end(), e) != seen.end())
      throw InvalidArgument(
          fmt::format("{}: input {} is given twice", what, tape.label(e, fmt::format("#{}", e))));
    seen.push_back(e);
  }
}

/// Whether any argument of node n has a non-zero tangent.
bool any_tangent(const Tape& tape, const TangentStore& s, const Node& n) {
  for (const std::uint32_t a : n.args)
    if (!s.zero(tape, a)) return true;
  return false;
}

[[noreturn]] void throw_missing(const Tape& tape, std::uint32_t e, const char* rule, const char* what) {
  const Node* n = tape.node(e);
  throw MissingRuleError(fmt::format("{}: op '{}' (entry #{}{}{}) has no {} rule", what, n ? n->op->name : op_name(tape.op(e)),
                                     e, tape.name_of(e).empty() ? "" : " ", tape.name_of(e), rule));
}

/// Tangents of entries 1..last, given the seeded leaves.
void forward_pass(const Tape& tape, TangentStore& s, std::uint32_t last, const char* what) {
  double* dot = s.dot().data();
  for (std::uint32_t i = 1; i <= last; ++i) {
    const Op op = tape.op(i);
    if (op == Op::rule) {
      const Node& n = *tape.node(i);
      if (n.args.empty() || !any_tangent(tape, s, n)) continue;  // a leaf keeps its seed; zero in, zero out
      if (!n.op->tangent) throw_missing(tape, i, "tangent", what);
      TangentContext c(tape, s, n);
      n.op->tangent(c);
      continue;
    }
    if (op == Op::leaf || op == Op::sink) continue;
    // Σ_k partial_k · tangent(arg_k); a zero tangent passes nothing (so an infinite partial on a path
    // the direction does not move gives 0, not NaN, as in the reverse sweep).
    // Argument slot a is filled whenever the entry has an argument (tape.args drops empty slots).
    const auto args = tape.args(i);
    double t = 0.0;
    if (!args.empty() && dot[args[0]] != 0.0) t += tape.partial(i, 0) * dot[args[0]];
    if (args.size() > 1 && dot[args[1]] != 0.0) t += tape.partial(i, 1) * dot[args[1]];
    dot[i] = t;
  }
}

/// Storage reused from the previous call on this thread when nobody holds it any more, as the tape
/// reuses its gradient storage: a loop of jvp or hvp calls then allocates (and faults in) nothing
/// after its first pass.
template <class Store>
std::shared_ptr<Store> reusable_store() {
  thread_local std::shared_ptr<Store> cached;
  if (!cached || cached.use_count() != 1) cached = std::make_shared<Store>();
  return cached;
}

/// The forward pass up to `last`.  With `alias`, a tangent of the leaf's element type is read where
/// it is instead of copied (only when the store does not outlive the caller's directions).
/// With `only_last`, the caller reads nothing but the tangent of `last`, so buffers may be handed
/// from a value to its last reader.
std::shared_ptr<TangentStore> run_forward(Tape& tape, std::uint32_t last, std::span<const Direction> directions,
                                          const char* what, bool alias = true, bool only_last = false) {
  auto s = reusable_store<TangentStore>();
  s->reset(tape);
  seed_tangents(tape, *s, directions, what, alias);
  if (only_last) s->enable_reuse(tape, last);
  tape.check_leaves(last, what);
  forward_pass(tape, *s, last, what);
  return s;
}

}  // namespace

Tangents jvp(Tape& tape, std::span<const Direction> directions) {
  // The result outlives the directions: tangents are copied.
  return Tangents(run_forward(tape, static_cast<std::uint32_t>(tape.size() - 1), directions, "jvp", false));
}

Tangents jvp(Tape& tape, std::initializer_list<Direction> directions) {
  return jvp(tape, std::span<const Direction>(directions.begin(), directions.size()));
}

double jvp(Tape& tape, const Var& y, std::span<const Direction> directions) {
  if (y.empty()) throw InvalidArgument("jvp: empty Var as the output");
  tape.check(y.tape(), y.generation(), y.index(), "jvp");
  const auto s = run_forward(tape, y.index(), directions, "jvp", true, true);
  return s->dot()[y.index()];
}

double jvp(Tape& tape, const Var& y, std::initializer_list<Direction> directions) {
  return jvp(tape, y, std::span<const Direction>(directions.begin(), directions.size()));
}

Array<double> jvp(Tape& tape, const Tensor& y, std::span<const Direction> directions) {
  if (y.empty()) throw InvalidArgument("jvp: empty Tensor as the output");
  tape.check(y.tape(), y.generation(), y.index(), "jvp");
  Tangents t(run_forward(tape, y.index(), directions, "jvp", true, true));
  return to_array<double>(t.tangent(y.index()));
}

Array<double> jvp(Tape& tape, const Tensor& y, std::initializer_list<Direction> directions) {
  return jvp(tape, y, std::span<const Direction>(directions.begin(), directions.size()));
}

// ---- Hessian-vector products -----------------------------------------------------------------------------

namespace {

[[noreturn]] void throw_scalar_missing(const Tape& tape, std::uint32_t e, const char* why) {
  throw MissingRuleError(fmt::format("hvp: scalar entry #{}{}{} ({}): {}", e, tape.name_of(e).empty() ? "" : " ",
                                     tape.name_of(e), op_name(tape.op(e)), why));
}

/// The tangent of scalar entry i's local partial with respect to argument slot k (0 or 1), from the
/// op's second derivative, the recorded values and their tangents ta, tb.
double partial_tangent(const Tape& tape, std::uint32_t i, int k, double xa, double ta, double xb, double tb) {
  const double y = tape.scalar_value(i);
  const double p = tape.partial(i, k);
  switch (tape.op(i)) {
    case Op::add: case Op::sub: case Op::neg: case Op::add_c: case Op::sub_c: case Op::rsub_c:
    case Op::mul_c: case Op::div_c: case Op::relu: case Op::abs: case Op::min: case Op::max:
      return 0.0;  // constant partials (piecewise)
    case Op::mul:  // ∂/∂a = b, ∂/∂b = a
      return k == 0 ? tb : ta;
    case Op::div:  // ∂/∂a = 1/b; ∂/∂b = -a/b²
      return k == 0 ? -tb / (xb * xb) : -ta / (xb * xb) + 2.0 * xa * tb / (xb * xb * xb);
    case Op::rdiv_c:  // y = c/x, p = -y/x: dp/dx = 2y/x²
      return 2.0 * y / (xa * xa) * ta;
    case Op::pow_c: {  // p = c x^(c-1): dp/dx = p (c - 1)/x, with c = p x / y
      if (xa == 0.0 || y == 0.0)
        throw_scalar_missing(tape, i, "pow(x, c) at x = 0: the constant c is not recorded, so its second derivative "
                                      "is unknown there (write square(x) or x * x)");
      const double c = p * xa / y;
      return p * (c - 1.0) / xa * ta;
    }
    case Op::rpow_c:  // y = c^x, p = y ln c: dp/dx = y ln² c = p²/y
      return y == 0.0 ? 0.0 : p * p / y * ta;
    case Op::pow: {  // y = a^b
      const double lna = std::log(xa);
      const double cross = std::pow(xa, xb - 1.0) * (1.0 + xb * lna);  // ∂²y/∂a∂b
      if (k == 0) return xb * (xb - 1.0) * std::pow(xa, xb - 2.0) * ta + (tb != 0.0 ? cross * tb : 0.0);
      return (ta != 0.0 ? cross * ta : 0.0) + (y == 0.0 ? 0.0 : y * lna * lna * tb);
    }
    case Op::exp: return y * ta;
    case Op::log: return -ta / (xa * xa);
    case Op::log1p: return -ta / ((1.0 + xa) * (1.0 + xa));
    case Op::sqrt: return -0.25 / (y * y * y) * ta;
    case Op::sin: return -y * ta;   // p = cos x
    case Op::cos: return -y * ta;   // p = -sin x
    case Op::tan: return 2.0 * y * p * ta;
    case Op::tanh: return -2.0 * y * p * ta;
    case Op::sigmoid: return p * (1.0 - 2.0 * y) * ta;
    case Op::softplus: return p * (1.0 - p) * ta;
    case Op::square: return 2.0 * ta;
    case Op::expr:
      throw_scalar_missing(tape, i,
                           "a fused expression keeps only its first derivatives; record the computation with "
                           "ad::UnfusedVar operands (one op per entry) to take Hessian-vector products");
    case Op::sink: case Op::leaf: case Op::rule: case Op::count_: break;
  }
  return 0.0;
}

/// The sweep that carries R(adjoint): entries last..1, with g the finished reverse sweep.
void r_sweep(const Tape& tape, TangentStore& t, const GradStore& g, GradStore& r, std::uint32_t last) {
  for (std::uint32_t i = last; i > 0; --i) {
    const Op op = tape.op(i);
    if (op == Op::rule) {
      const Node& n = *tape.node(i);
      if (!n.requires_grad || n.args.empty() || !n.op->backward) continue;
      const std::uint32_t k = tape.node_index(i);
      // The backward rule applied to the adjoint's tangent ...
      const bool r_in = n.scalar_out ? r.adj[i] != 0.0 : r.tadj[k] != nullptr;
      if (r_in) {
        BackwardContext c(tape, r, n);
        n.op->backward(c);
      }
      // ... plus the rule's derivative along the values' tangents, with the adjoint held fixed.
      const bool g_in = n.scalar_out ? g.adj[i] != 0.0 : g.tadj[k] != nullptr;
      if (g_in && any_tangent(tape, t, n)) {
        if (!n.op->curvature) throw_missing(tape, i, "curvature", "hvp");
        CurvatureContext c(tape, t, g, r, n);
        n.op->curvature(c);
      }
      continue;
    }
    const auto args = tape.args(i);
    if (args.empty()) continue;
    const double gi = g.adj[i], ri = r.adj[i];
    const double xa = tape.scalar_value(args[0]), ta = t.dot()[args[0]];
    const double xb = args.size() > 1 ? tape.scalar_value(args[1]) : 0.0;
    const double tb = args.size() > 1 ? t.dot()[args[1]] : 0.0;
    for (std::size_t s = 0; s < args.size(); ++s) {
      double add = ri != 0.0 ? tape.partial(i, static_cast<int>(s)) * ri : 0.0;
      if (gi != 0.0 && (ta != 0.0 || tb != 0.0)) {
        const double dp = partial_tangent(tape, i, static_cast<int>(s), xa, ta, xb, tb);
        if (dp != 0.0) add += dp * gi;
      }
      r.adj[args[s]] += add;
    }
  }
}

template <class Out>
Gradients run_hvp(Tape& tape, const Out& loss, std::uint32_t e, std::span<const Direction> directions) {
  const auto t = run_forward(tape, e, directions, "hvp");
  Gradients g = tape.gradient(loss);
  auto r = reusable_store<GradStore>();
  r->reset(tape);
  r_sweep(tape, *t, g.store(), *r, e);
  return Gradients(r);
}

}  // namespace

Gradients hvp(Tape& tape, const Tensor& loss, std::span<const Direction> directions) {
  if (loss.empty()) throw InvalidArgument("hvp: empty Tensor as the loss");
  const std::uint32_t e = tape.check_output(loss, "hvp");
  return run_hvp(tape, loss, e, directions);
}

Gradients hvp(Tape& tape, const Tensor& loss, std::initializer_list<Direction> directions) {
  return hvp(tape, loss, std::span<const Direction>(directions.begin(), directions.size()));
}

Gradients hvp(Tape& tape, const Var& loss, std::span<const Direction> directions) {
  if (loss.empty()) throw InvalidArgument("hvp: empty Var as the loss");
  tape.check(loss.tape(), loss.generation(), loss.index(), "hvp");
  return run_hvp(tape, loss, loss.index(), directions);
}

Gradients hvp(Tape& tape, const Var& loss, std::initializer_list<Direction> directions) {
  return hvp(tape, loss, std::span<const Direction>(directions.begin(), directions.size()));
}

}  // namespace ad
