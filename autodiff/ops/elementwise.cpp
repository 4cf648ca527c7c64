// Element-wise tensor operations: + - * / (tensor with tensor, Var or double), negation and the
// unary functions.
//
// Each op is a small rule: its value f and its local derivative(s), side by side.  Three shared
// recorders turn a rule into an op and its backward step:
//   * unary<R>(x, p):       y = R::f(x, p),      dx += g · R::df(x, y, p);
//   * binary<R>(a, b):      y = R::f(a, b) with broadcasting, da += Σ g · R::da(a, b, y),
//                           db += Σ g · R::db(a, b, y) (summed back by ops::sum_to_operand);
//     a Var operand takes part as a rank-0 operand, so its adjoint is the sum of its
//     contributions over the whole tensor, added to the Var's scalar adjoint;
//   * a double operand is a constant: the op is unary in the tensor, with the constant as p.
//
// Domain edges follow IEEE arithmetic, as for ad::Var (autodiff/var.hpp): nothing throws for
// log(0) or 1/0; the values and partials are what the formulas give.
#include <cmath>

#include "autodiff/forward.hpp"
#include "autodiff/ops/broadcast.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

// ---- recorders ---------------------------------------------------------------------------------------

/// The saved state of a rule with a constant operand: c of x + c, p of x^p, the slope of leaky_relu.
struct Constant {
  double c = 0.0;
};

/// Whether unary rule R takes a constant (and so saves one).
template <class R>
constexpr bool takes_constant = requires { R::constant_first; };

/// The constant as a listing shows it: "x, 2" or, for c - x and c / x, "2, x".
template <class R>
ParamText constant_text(const Tape&, const Node& n) {
  return {fmt::format("{:.15g}", static_cast<const Constant*>(n.saved)->c), R::constant_first};
}

/// Flat index of the operand element that output element `o` reads under NumPy broadcasting.
std::int64_t broadcast_source(const Shape& out, const Shape& arg, std::int64_t o) {
  std::int64_t flat = 0, stride = 1;
  const std::size_t skip = out.size() - arg.size();
  for (std::size_t d = out.size(); d-- > 0;) {
    const std::int64_t i = o % out[d];
    o /= out[d];
    if (d < skip) continue;
    const std::int64_t n = arg[d - skip];
    if (n != 1) flat += i * stride;
    stride *= n;
  }
  return flat;
}

/// Step-through of a broadcast operand of add, sub or mul: the element received Σ over the output
/// elements that read it of ∂out/∂operand · adj out, with ∂out/∂operand a constant (1 for add, ±1
/// for sub: R::partial_a/partial_b) or, for mul, the other operand's element.
template <class R>
void broadcast_explain(const ExplainQuery& q, Explanation& ex) {
  const Node& n = q.node;
  if (n.scalar_out || n.args.size() != 2) return;
  const Shape arg = q.tape.shape_of_entry(q.to);
  if (arg == n.shape || arg.size() > n.shape.size()) return;  // not broadcast: element-wise
  for (std::size_t side = 0; side < 2; ++side) {
    if (n.args[side] != q.to) continue;
    const std::uint32_t other = n.args[1 - side];
    const Shape other_shape = q.tape.shape_of_entry(other);
    const View ov = q.tape.value_view(other);
    for (std::int64_t o = 0, m = numel(n.shape); o < m; ++o) {
      if (broadcast_source(n.shape, arg, o) != q.element) continue;
      ExplainProduct p{.factor = side == 0 ? R::partial_a : R::partial_b, .adjoint_element = o};
      if constexpr (R::partial_is_other) {
        p.factor_entry = other;
        p.factor_element = broadcast_source(n.shape, other_shape, o);
        p.factor = ov.flat(p.factor_element);
      }
      ex.products.push_back(p);
    }
  }
}


/// dx[i] += g[i] · R::df(x[i], y[i], p), or R::chain(g[i], x[i], y[i], p) where the rule defines it.
template <class R>
void unary_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    bool fresh = false;
    T* dx = c.arg_grad_or_fresh<T>(0, fresh);
    if (!dx) return;
    const T* x = c.arg_value<T>(0);
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    const T p = c.node().saved ? static_cast<T>(c.saved<Constant>().c) : T(0);
    const std::int64_t n = numel(c.node().shape);
    if constexpr (requires { R::chain(T(0), T(0), T(0), T(0)); }) {
      ops::accumulate(dx, fresh, n, [&](std::int64_t i) { return R::chain(g[i], x[i], y[i], p); });
    } else {
      ops::accumulate(dx, fresh, n, [&](std::int64_t i) { return g[i] * R::df(x[i], y[i], p); });
    }
  });
}

/// The constant of a unary node (0 without one).
template <Element T>
T constant_of(const Node& n) {
  return n.saved ? static_cast<T>(static_cast<const Constant*>(n.saved)->c) : T(0);
}

/// Tangent: ẏ[i] = R::df(x[i], y[i], p) · ẋ[i].
template <class R>
void unary_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dx = c.arg_tangent<T>(0);
    const T* x = c.arg_value<T>(0);
    const T* y = c.value<T>();
    const T p = constant_of<T>(c.node());
    // In place over ẋ when nothing reads it after this rule: element i reads only ẋ[i].
    T* dy = c.take_arg_tangent<T>(0);
    if (!dy) dy = c.fresh_tangent<T>();
    const std::int64_t n = numel(c.node().shape);
    // ẏ = f′(x)·ẋ is the backward step's g·f′(x) with ẋ for g, so a rule's `chain` serves both.
    if constexpr (requires { R::chain(T(0), T(0), T(0), T(0)); }) {
      for (std::int64_t i = 0; i < n; ++i) dy[i] = R::chain(dx[i], x[i], y[i], p);
    } else {
      for (std::int64_t i = 0; i < n; ++i) dy[i] = R::df(x[i], y[i], p) * dx[i];
    }
  });
}

/// Whether unary rule R has a second derivative that is zero wherever it is defined.
template <class R>
constexpr bool flat() {
  if constexpr (requires { R::flat; }) return R::flat;
  else return false;
}

/// Curvature: the backward step dx += g · f'(x) moves by g · f''(x) · ẋ.
template <class R>
void unary_curvature(CurvatureContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* r = c.arg_rgrad<T>(0);
    const T* dx = c.arg_tangent<T>(0);
    if (!r || !dx) return;
    const T* x = c.arg_value<T>(0);
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    const T p = constant_of<T>(c.node());
    for (std::int64_t i = 0, n = numel(c.node().shape); i < n; ++i) r[i] += g[i] * R::d2f(x[i], y[i], p) * dx[i];
  });
}

/// The descriptor of unary rule R: its name, its backward, tangent and curvature rules, and for a
/// rule with a constant (x + c, x^p, leaky_relu's slope) how a listing shows the constant.
template <class R>
constexpr OpDescriptor unary_descriptor() {
  OpDescriptor d{.name = R::name, .backward = unary_backward<R>, .tangent = unary_tangent<R>};
  if constexpr (flat<R>()) d.curvature = no_curvature;
  else d.curvature = unary_curvature<R>;
  if constexpr (takes_constant<R>) d.params = constant_text<R>;
  return d;
}
template <class R>
constexpr OpDescriptor unary_op = unary_descriptor<R>();

/// Records y = R::f(x, p) element by element.
template <class R>
Tensor unary(const Tensor& x, double p = 0.0) {
  constexpr const char* name = R::name;
  Tape& tape = ops::tape_of(x, name);
  const Node& nx = *tape.node(x.index());
  const Shape shape = nx.shape;
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const std::int64_t n = numel(shape);
    const T* xv = static_cast<const T*>(nx.data);
    T* y = tape.allocate_elements<T>(n);
    const T pt = static_cast<T>(p);
    backend::parallel_for(n, ops::elementwise_grain, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) y[i] = R::f(xv[i], pt);
    });
    return y;
  });
  if constexpr (takes_constant<R>)
    return ops::record_tensor(tape, unary_op<R>, dtype, shape, out, {x.index()}, Constant{p});
  else
    return ops::record_tensor(tape, unary_op<R>, dtype, shape, out, {x.index()});
}

/// da += Σ g · R::da(a, b, y) and db += Σ g · R::db(a, b, y), each summed back to its operand's
/// shape.  Operand k is a tensor, or a Var (a rank-0 operand) when k == var_arg; a Var's adjoint is
/// accumulated in double and added to its scalar adjoint.
template <class R, int var_arg>
void binary_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    if constexpr (var_arg < 0) {
      const Node& na = c.arg_node(0);
      const Node& nb = c.arg_node(1);
      const T* a = static_cast<const T*>(na.data);
      const T* b = static_cast<const T*>(nb.data);
      if (na.shape == nb.shape) {  // no broadcast: flat loops
        const std::int64_t n = numel(na.shape);
        bool fresh = false;
        if (T* da = c.arg_grad_or_fresh<T>(0, fresh))
          ops::accumulate(da, fresh, n, [&](std::int64_t i) { return g[i] * R::da(a[i], b[i], y[i]); });
        if (T* db = c.arg_grad_or_fresh<T>(1, fresh))
          ops::accumulate(db, fresh, n, [&](std::int64_t i) { return g[i] * R::db(a[i], b[i], y[i]); });
        return;
      }
      T* da = c.arg_grad<T>(0);
      T* db = c.arg_grad<T>(1);
      const ops::Broadcast p(na.shape, nb.shape);  // checked when the op was recorded
      if (da) ops::sum_to_operand(da, 0, p, [&](std::int64_t o, std::int64_t ia, std::int64_t ib) {
        return g[o] * R::da(a[ia], b[ib], y[o]);
      });
      if (db) ops::sum_to_operand(db, 1, p, [&](std::int64_t o, std::int64_t ia, std::int64_t ib) {
        return g[o] * R::db(a[ia], b[ib], y[o]);
      });
    } else {
      constexpr std::size_t t = var_arg == 0 ? 1 : 0;  // the tensor argument
      const Node& nt = c.arg_node(t);
      const T* x = static_cast<const T*>(nt.data);
      const T s = static_cast<T>(c.arg_scalar(var_arg));
      const std::int64_t n = numel(nt.shape);
      // The Var is a rank-0 operand: the broadcast is flat over the tensor, and the Var's part is
      // summed over all of it (in double) into its scalar adjoint.
      const ops::Broadcast p = var_arg == 0 ? ops::Broadcast(Shape{}, nt.shape) : ops::Broadcast(nt.shape, Shape{});
      const auto partial_t = [&](std::int64_t o) {
        return var_arg == 0 ? R::db(s, x[o], y[o]) : R::da(x[o], s, y[o]);
      };
      const auto partial_v = [&](std::int64_t o) {
        return var_arg == 0 ? R::da(s, x[o], y[o]) : R::db(x[o], s, y[o]);
      };
      bool fresh = false;
      if (T* dx = c.arg_grad_or_fresh<T>(t, fresh))
        ops::accumulate(dx, fresh, n, [&](std::int64_t i) { return g[i] * partial_t(i); });
      double sum = 0.0;
      ops::sum_to_operand(&sum, var_arg, p, [&](std::int64_t o, std::int64_t, std::int64_t) { return g[o] * partial_v(o); });
      c.arg_scalar_grad(var_arg) += sum;
    }
  });
}

/// Reads operand k's element as the broadcast walks it: a tensor's tangent (zero where null), or a
/// Var's (one number).
template <Element T>
struct Side {
  const T* data = nullptr;
  T scalar = T(0);
  bool is_scalar = false;
  T operator[](std::int64_t i) const { return is_scalar ? scalar : data ? data[i] : T(0); }
  bool zero() const { return is_scalar ? scalar == T(0) : data == nullptr; }
};

template <Element T, int var_arg>
Side<T> operand_value(const TangentReader& c, std::size_t k) {
  if (static_cast<int>(k) == var_arg) return {.scalar = static_cast<T>(c.arg_scalar(k)), .is_scalar = true};
  return {.data = c.arg_value<T>(k)};
}

template <Element T, int var_arg>
Side<T> operand_tangent(const TangentReader& c, std::size_t k) {
  if (static_cast<int>(k) == var_arg) return {.scalar = static_cast<T>(c.arg_scalar_tangent(k)), .is_scalar = true};
  return {.data = c.arg_tangent<T>(k)};
}

template <int var_arg>
ops::Broadcast broadcast_of(const TangentReader& c) {
  return ops::Broadcast(c.arg_shape(0), c.arg_shape(1));
}

/// Tangent: ẏ[o] = R::da · ȧ[ia] + R::db · ḃ[ib] over the broadcast.
template <class R, int var_arg>
void binary_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const auto a = operand_value<T, var_arg>(c, 0), b = operand_value<T, var_arg>(c, 1);
    const auto ta = operand_tangent<T, var_arg>(c, 0), tb = operand_tangent<T, var_arg>(c, 1);
    const T* y = c.value<T>();
    T* dy = c.fresh_tangent<T>();
    const ops::Broadcast p = broadcast_of<var_arg>(c);
    // One pass that assigns every output element (the pass calls the rule only when a tangent moves).
    if (!ta.zero() && !tb.zero())
      p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) {
        dy[o] = R::da(a[ia], b[ib], y[o]) * ta[ia] + R::db(a[ia], b[ib], y[o]) * tb[ib];
      });
    else if (!ta.zero())
      p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) { dy[o] = R::da(a[ia], b[ib], y[o]) * ta[ia]; });
    else if (!tb.zero())
      p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) { dy[o] = R::db(a[ia], b[ib], y[o]) * tb[ib]; });
    else
      std::fill_n(dy, numel(c.node().shape), T(0));
  });
}

/// Curvature: da += g · R::da moves by g · (R::daa ȧ + R::dab ḃ), db += g · R::db by
/// g · (R::dab ȧ + R::dbb ḃ), each summed back to its operand (a Var's into its scalar adjoint).
template <class R, int var_arg>
void binary_curvature(CurvatureContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const auto a = operand_value<T, var_arg>(c, 0), b = operand_value<T, var_arg>(c, 1);
    const auto ta = operand_tangent<T, var_arg>(c, 0), tb = operand_tangent<T, var_arg>(c, 1);
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    const ops::Broadcast p = broadcast_of<var_arg>(c);
    const auto local = [&](int k) {
      return [&, k](std::int64_t o, std::int64_t ia, std::int64_t ib) {
        const T av = a[ia], bv = b[ib];
        const T first = k == 0 ? R::daa(av, bv, y[o]) : R::dab(av, bv, y[o]);
        const T second = k == 0 ? R::dab(av, bv, y[o]) : R::dbb(av, bv, y[o]);
        return g[o] * (first * ta[ia] + second * tb[ib]);
      };
    };
    for (int k = 0; k < 2; ++k) {
      if (k == var_arg) {
        double sum = 0.0;
        ops::sum_to_operand(&sum, k, p, local(k));
        c.arg_scalar_rgrad(static_cast<std::size_t>(k)) += sum;
      } else if (T* r = c.arg_rgrad<T>(static_cast<std::size_t>(k))) {
        ops::sum_to_operand(r, k, p, local(k));
      }
    }
  });
}

/// The descriptor of binary rule R with a Var as argument var_arg (or none: -1).
template <class R, int var_arg>
constexpr OpDescriptor binary_descriptor() {
  OpDescriptor d{.name = R::name, .backward = binary_backward<R, var_arg>, .tangent = binary_tangent<R, var_arg>,
                 .commutative = R::commutative};
  if constexpr (R::flat_aa && R::flat_ab && R::flat_bb) d.curvature = no_curvature;
  else d.curvature = binary_curvature<R, var_arg>;
  if constexpr (requires { R::partial_is_other; }) d.explain = broadcast_explain<R>;
  return d;
}
template <class R, int var_arg>
constexpr OpDescriptor binary_op = binary_descriptor<R, var_arg>();

/// Records y = R::f(a, b) over the broadcast p of a and b (entries ea, eb; element pointers of
/// the tensor's dtype).  var_arg is the argument that is a Var, or -1.
template <class R, int var_arg>
Tensor record_binary(Tape& tape, DType dtype, const ops::Broadcast& p, const void* a, std::uint32_t ea,
                     const void* b, std::uint32_t eb) {
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* av = static_cast<const T*>(a);
    const T* bv = static_cast<const T*>(b);
    T* y = tape.allocate_value<T>(p.out(), R::name);
    p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) { y[o] = R::f(av[ia], bv[ib]); });
    return y;
  });
  return ops::record_tensor(tape, binary_op<R, var_arg>, dtype, p.out(), out, {ea, eb});
}

/// Tensor ⊗ tensor with broadcasting.
template <class R>
Tensor binary(const Tensor& a, const Tensor& b) {
  Tape& tape = ops::tape_of(a, b, R::name);
  const Node& na = *tape.node(a.index());
  const Node& nb = *tape.node(b.index());
  if (na.dtype != nb.dtype) ops::check_same_dtype(a, b, R::name);  // throws, naming both
  if (na.shape == nb.shape)
    return record_binary<R, -1>(tape, na.dtype, ops::Broadcast(na.shape, na.shape), na.data, a.index(), nb.data,
                                b.index());
  const ops::Broadcast p = ops::broadcast(a, b, R::name);
  return record_binary<R, -1>(tape, na.dtype, p, na.data, a.index(), nb.data, b.index());
}

/// Tensor ⊗ Var (var_right) or Var ⊗ tensor: the Var is a rank-0 operand, converted to the
/// tensor's element type.
template <class R, bool var_right>
Tensor binary(const Tensor& t, const Var& v) {
  Tape& tape = ops::tape_of(t, v, R::name);
  const Node& nt = *tape.node(t.index());
  const double value = tape.scalar_value(v.index());
  return dispatch(nt.dtype, [&]<class T>() {
    const T s = static_cast<T>(value);
    if constexpr (var_right)
      return record_binary<R, 1>(tape, nt.dtype, ops::Broadcast(nt.shape, Shape{}), nt.data, t.index(), &s,
                                 v.index());
    else
      return record_binary<R, 0>(tape, nt.dtype, ops::Broadcast(Shape{}, nt.shape), &s, v.index(), nt.data,
                                 t.index());
  });
}

/// A binary rule with a constant operand c (on the right when c_right) as a unary rule in x.
template <class R, bool c_right>
struct WithConstant {
  static constexpr const char* name = R::name;
  static constexpr bool flat = c_right ? R::flat_aa : R::flat_bb;
  static constexpr bool constant_first = !c_right;
  template <class T>
  static T f(T x, T c) {
    return c_right ? R::f(x, c) : R::f(c, x);
  }
  template <class T>
  static T df(T x, T y, T c) {
    return c_right ? R::da(x, c, y) : R::db(c, x, y);
  }
  template <class T>
  static T d2f(T x, T y, T c) {
    return c_right ? R::daa(x, c, y) : R::dbb(c, x, y);
  }
};


template <class R, bool c_right>
Tensor with_constant(const Tensor& x, double c) {
  return unary<WithConstant<R, c_right>>(x, c);
}

// ---- binary rules: value f(a, b) and partials da, db (y = f(a, b)) -------------------------------------

/// a + b.  d/da = 1, d/db = 1.
struct Add {
  static constexpr const char* name = "add";
  static constexpr bool commutative = true, partial_is_other = false;
  static constexpr double partial_a = 1.0, partial_b = 1.0;
  template <class T> static T f(T a, T b) { return a + b; }
  template <class T> static T da(T, T, T) { return T(1); }
  template <class T> static T db(T, T, T) { return T(1); }
  static constexpr bool flat_aa = true, flat_ab = true, flat_bb = true;  // second derivatives: all 0
  template <class T> static T daa(T, T, T) { return T(0); }
  template <class T> static T dab(T, T, T) { return T(0); }
  template <class T> static T dbb(T, T, T) { return T(0); }
};

/// a - b.  d/da = 1, d/db = -1.
struct Sub {
  static constexpr const char* name = "sub";
  static constexpr bool commutative = false, partial_is_other = false;
  static constexpr double partial_a = 1.0, partial_b = -1.0;
  template <class T> static T f(T a, T b) { return a - b; }
  template <class T> static T da(T, T, T) { return T(1); }
  template <class T> static T db(T, T, T) { return T(-1); }
  static constexpr bool flat_aa = true, flat_ab = true, flat_bb = true;  // second derivatives: all 0
  template <class T> static T daa(T, T, T) { return T(0); }
  template <class T> static T dab(T, T, T) { return T(0); }
  template <class T> static T dbb(T, T, T) { return T(0); }
};

/// a · b.  d/da = b, d/db = a; second derivatives: ∂²/∂a∂b = 1, the others 0.
struct Mul {
  static constexpr const char* name = "mul";
  static constexpr bool commutative = true, partial_is_other = true;
  static constexpr double partial_a = 0.0, partial_b = 0.0;  // the other operand's element
  template <class T> static T f(T a, T b) { return a * b; }
  template <class T> static T da(T, T b, T) { return b; }
  template <class T> static T db(T a, T, T) { return a; }
  static constexpr bool flat_aa = true, flat_ab = false, flat_bb = true;
  template <class T> static T daa(T, T, T) { return T(0); }
  template <class T> static T dab(T, T, T) { return T(1); }
  template <class T> static T dbb(T, T, T) { return T(0); }
};

/// a / b.  d/da = 1/b, d/db = -a/b² = -y/b.  b = 0 gives ±inf or NaN, as IEEE division does.
/// Second derivatives: ∂²/∂a² = 0, ∂²/∂a∂b = -1/b², ∂²/∂b² = 2a/b³ = 2y/b².
struct Div {
  static constexpr const char* name = "div";
  static constexpr bool commutative = false;
  template <class T> static T f(T a, T b) { return a / b; }
  template <class T> static T da(T, T b, T) { return T(1) / b; }
  template <class T> static T db(T, T b, T y) { return -y / b; }
  static constexpr bool flat_aa = true, flat_ab = false, flat_bb = false;
  template <class T> static T daa(T, T, T) { return T(0); }
  template <class T> static T dab(T, T b, T) { return T(-1) / (b * b); }
  template <class T> static T dbb(T, T b, T y) { return T(2) * y / (b * b); }
};

// ---- unary rules: value f(x, p) and derivative df(x, y, p) (y = f(x, p)) -------------------------------

/// -x.  d/dx = -1.
struct Neg {
  static constexpr const char* name = "neg";
  template <class T> static T f(T x, T) { return -x; }
  template <class T> static T df(T, T, T) { return T(-1); }
  static constexpr bool flat = true;
};

/// e^x.  d/dx = e^x = y.  Overflows to inf above x ≈ 88.7 (f32) or 709.8 (f64).
struct Exp {
  static constexpr const char* name = "exp";
  template <class T> static T f(T x, T) { return std::exp(x); }
  template <class T> static T df(T, T y, T) { return y; }
  template <class T> static T d2f(T, T y, T) { return y; }
};

/// ln x.  d/dx = 1/x.  x = 0 gives -inf with derivative inf; x < 0 gives NaN.
struct Log {
  static constexpr const char* name = "log";
  template <class T> static T f(T x, T) { return std::log(x); }
  template <class T> static T df(T x, T, T) { return T(1) / x; }
  template <class T> static T d2f(T x, T, T) { return T(-1) / (x * x); }
};

/// √x.  d/dx = 1/(2√x) = 0.5/y.  x = 0 gives derivative inf; x < 0 gives NaN.
struct Sqrt {
  static constexpr const char* name = "sqrt";
  template <class T> static T f(T x, T) { return std::sqrt(x); }
  template <class T> static T df(T, T y, T) { return T(0.5) / y; }
  template <class T> static T d2f(T, T y, T) { return T(-0.25) / (y * y * y); }
};

/// tanh x.  d/dx = 1 - tanh² x = 1 - y².
struct Tanh {
  static constexpr const char* name = "tanh";
  template <class T> static T f(T x, T) { return std::tanh(x); }
  template <class T> static T df(T, T y, T) { return T(1) - y * y; }
  template <class T> static T d2f(T, T y, T) { return T(-2) * y * (T(1) - y * y); }
};

/// σ(x) = 1/(1 + e^-x), computed without overflow for either sign.  d/dx = σ(x)(1 - σ(x)) = y(1 - y).
struct Sigmoid {
  static constexpr const char* name = "sigmoid";
  template <class T> static T f(T x, T) {
    if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
    const T e = std::exp(x);
    return e / (T(1) + e);
  }
  template <class T> static T df(T, T y, T) { return y * (T(1) - y); }
  template <class T> static T d2f(T, T y, T) { return y * (T(1) - y) * (T(1) - T(2) * y); }
};

/// max(x, 0).  d/dx = 1 for x > 0 and 0 for x ≤ 0 (relu′(0) = 0, as for Var).
struct Relu {
  static constexpr const char* name = "relu";
  template <class T> static T f(T x, T) { return x > T(0) ? x : T(0); }
  template <class T> static T df(T x, T, T) { return x > T(0) ? T(1) : T(0); }
  // g·relu′(x) as a select rather than a product: the loop vectorises, and g passes unchanged.
  template <class T> static T chain(T g, T x, T, T) { return x > T(0) ? g : T(0); }
  static constexpr bool flat = true;
};

/// x for x > 0, slope·x otherwise.  d/dx = 1 for x > 0 and slope for x ≤ 0 (the slope at 0).
struct LeakyRelu {
  static constexpr const char* name = "leaky_relu";
  static constexpr bool constant_first = false;
  template <class T> static T f(T x, T slope) { return x > T(0) ? x : slope * x; }
  template <class T> static T df(T x, T, T slope) { return x > T(0) ? T(1) : slope; }
  static constexpr bool flat = true;
};

/// ln(1 + e^x), computed as max(x, 0) + ln(1 + e^-|x|) so it never overflows.  d/dx = σ(x).
struct Softplus {
  static constexpr const char* name = "softplus";
  template <class T> static T f(T x, T) { return std::max(x, T(0)) + std::log1p(std::exp(-std::fabs(x))); }
  template <class T> static T df(T x, T, T) { return Sigmoid::f(x, T(0)); }
  template <class T> static T d2f(T x, T, T) {
    const T s = Sigmoid::f(x, T(0));
    return s * (T(1) - s);
  }
};

/// |x|.  d/dx = sign(x), and 0 at x = 0 (the subgradient of least norm, as for Var).
struct Abs {
  static constexpr const char* name = "abs";
  template <class T> static T f(T x, T) { return std::fabs(x); }
  template <class T> static T df(T x, T, T) { return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0)); }
  static constexpr bool flat = true;
};

/// x².  d/dx = 2x.
struct Square {
  static constexpr const char* name = "square";
  template <class T> static T f(T x, T) { return x * x; }
  template <class T> static T df(T x, T, T) { return T(2) * x; }
  template <class T> static T d2f(T, T, T) { return T(2); }
};

/// x^p.  d/dx = p·x^(p-1), and 0 when p = 0 (x^0 is the constant 1, also at x = 0, where the
/// formula would give 0·inf = NaN).  At x = 0 with 0 < p < 1 the derivative is inf; x < 0 with a
/// non-integer p gives NaN.
struct Pow {
  static constexpr const char* name = "pow";
  static constexpr bool constant_first = false;
  template <class T> static T f(T x, T p) { return std::pow(x, p); }
  template <class T> static T df(T x, T, T p) { return p == T(0) ? T(0) : p * std::pow(x, p - T(1)); }
  template <class T> static T d2f(T x, T, T p) {
    return p == T(0) || p == T(1) ? T(0) : p * (p - T(1)) * std::pow(x, p - T(2));
  }
};

}  // namespace

// ---- the ops -------------------------------------------------------------------------------------------

Tensor operator+(const Tensor& a, const Tensor& b) { return binary<Add>(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return binary<Sub>(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return binary<Mul>(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return binary<Div>(a, b); }

Tensor operator+(const Tensor& a, const Var& b) { return binary<Add, true>(a, b); }
Tensor operator+(const Var& a, const Tensor& b) { return binary<Add, false>(b, a); }
Tensor operator-(const Tensor& a, const Var& b) { return binary<Sub, true>(a, b); }
Tensor operator-(const Var& a, const Tensor& b) { return binary<Sub, false>(b, a); }
Tensor operator*(const Tensor& a, const Var& b) { return binary<Mul, true>(a, b); }
Tensor operator*(const Var& a, const Tensor& b) { return binary<Mul, false>(b, a); }
Tensor operator/(const Tensor& a, const Var& b) { return binary<Div, true>(a, b); }
Tensor operator/(const Var& a, const Tensor& b) { return binary<Div, false>(b, a); }

Tensor operator+(const Tensor& a, double c) { return with_constant<Add, true>(a, c); }
Tensor operator+(double c, const Tensor& a) { return with_constant<Add, false>(a, c); }
Tensor operator-(const Tensor& a, double c) { return with_constant<Sub, true>(a, c); }
Tensor operator-(double c, const Tensor& a) { return with_constant<Sub, false>(a, c); }
Tensor operator*(const Tensor& a, double c) { return with_constant<Mul, true>(a, c); }
Tensor operator*(double c, const Tensor& a) { return with_constant<Mul, false>(a, c); }
Tensor operator/(const Tensor& a, double c) { return with_constant<Div, true>(a, c); }
Tensor operator/(double c, const Tensor& a) { return with_constant<Div, false>(a, c); }
Tensor operator-(const Tensor& a) { return unary<Neg>(a); }

Tensor exp(const Tensor& x) { return unary<Exp>(x); }
Tensor log(const Tensor& x) { return unary<Log>(x); }
Tensor sqrt(const Tensor& x) { return unary<Sqrt>(x); }
Tensor tanh(const Tensor& x) { return unary<Tanh>(x); }
Tensor sigmoid(const Tensor& x) { return unary<Sigmoid>(x); }
Tensor relu(const Tensor& x) { return unary<Relu>(x); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary<LeakyRelu>(x, slope); }
Tensor softplus(const Tensor& x) { return unary<Softplus>(x); }
Tensor abs(const Tensor& x) { return unary<Abs>(x); }
Tensor square(const Tensor& x) { return unary<Square>(x); }
Tensor pow(const Tensor& x, double p) { return unary<Pow>(x, p); }

}  // namespace ad
