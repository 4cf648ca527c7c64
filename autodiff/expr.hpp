// ad::Expr: a scalar expression on Vars that is not recorded yet.
//
// An op on Vars (x * y, tanh(u), x + 2.0) returns an Expr, not a tape entry.  An Expr is a small
// flat value (48 bytes): its tape, its value, and its derivatives with respect to the at most two
// distinct Vars it reads.  It refers to nothing but Vars (handles), so `auto e = x * y;` is safe to
// keep and to copy.  Its value and derivatives are computed at once, by the op that makes it, and
// the handles are checked there, so a bad handle throws at the op that reads it.
//
// An Expr is written to the tape when it becomes an ad::Var (initialising or assigning a Var, or
// passing it where a Var is expected):
//  * an op whose operands are Vars (and constants) is one entry with its own op code: x * y is one
//    `mul` entry with partials y and x, exactly as without expressions;
//  * a longer expression that reads at most two distinct Vars is ONE entry with op code `expr`,
//    whose partials are the total derivatives of the whole expression with respect to those Vars.
//    They are accumulated forward, op by op (the chain rule: d(f(u))/dv = f'(u) du/dv, and a sum
//    over both operands of a binary op, so a Var read twice gets both contributions);
//  * an op whose operands together read more than two distinct Vars first records each operand
//    that is not a plain Var (as one entry each, by the rules above), then stands for one entry
//    over the two results.  So `s + e`, with e reading two Vars other than s, is two entries.
//
// Ops with an ad::UnfusedVar operand do not fuse: each is written to the tape when it is made and
// returns an UnfusedVar (one entry per op, as Hessian-vector products need).  The choice is made by
// the operands' types, at compile time, so the fused paths below carry no test for it.
//
// Zero derivatives are treated as the tape's sweep treats a zero adjoint: a local derivative that
// is exactly 0 passes nothing on, so an infinite derivative further down a path the value does not
// depend on (0 * sqrt(x) at x = 0) gives 0, not 0·inf = NaN.  Along every path the result is what
// the sweep over separate entries would give; only a path that is both cut by a 0 and multiplied
// by an inf above the cut, while another path reaches the same Var, can differ (NaN there, inf
// here): a value that is not finite either way.
#pragma once

#include <concepts>
#include <cstdint>

namespace ad {

namespace expr {
struct Build;
}

class Expr {
 public:
  /// The value, computed when the expression was made.
  double value() const { return value_; }
  /// The op code it will be recorded with: an elementary op over Vars, or Op::expr.
  Op op() const { return op_; }

 private:
  friend struct expr::Build;
  Expr() = default;

  Tape* tape_ = nullptr;
  std::uint32_t gen_ = 0;
  Op op_ = Op::leaf;         // leaf: a plain Var (only inside the ops)
  std::uint8_t n_ = 0;       // Vars read: 1 or 2 (for an elementary binary op, both operands)
  std::uint32_t leaf_[2] = {0, 0};  // their entries; unused slots are 0 (the sink)
  double d_[2] = {0.0, 0.0};        // d value / d leaf; unused slots are 0
  double value_ = 0.0;
};

namespace expr {

/// Builds expressions; the ops of autodiff/var.hpp call unary() and binary() with their rule.
///
/// The functions are forced inline: a user's expression then compiles to straight-line code in
/// which the Expr values live in registers.  Left to its own judgement the compiler calls combine()
/// out of line, and passing the 48-byte values through memory costs more than the arithmetic.
struct Build {
  /// A Var as an operand of op `what`: one Var with derivative 1.  Throws for a bad handle.
  [[gnu::always_inline]] static Expr of(const Var& v, const char* what) {
    Tape& t = detail::tape_of(v, what);
    Expr e;
    e.tape_ = &t;
    e.gen_ = v.generation();
    e.n_ = 1;
    e.leaf_[0] = v.index();
    e.d_[0] = 1.0;
    e.value_ = t.scalar_value(v.index());
    return e;
  }
  /// An expression as an operand: throws if it was made before tape.clear().
  [[gnu::always_inline]] static const Expr& of(const Expr& e, const char* what) {
    e.tape_->check_generation(e.tape_, e.gen_, what);
    return e;
  }

  /// The local derivative p times the derivative d below it; exactly 0 when p is 0 (see above).
  [[gnu::always_inline]] static double chain(double p, double d) { return p == 0.0 ? 0.0 : p * d; }

  /// An elementary op over one repeated Var (x * x) as one Var with the two derivatives added.
  [[gnu::always_inline]] static void merge_repeated(Expr& e) {
    if (e.n_ == 2 && e.leaf_[0] == e.leaf_[1]) {
      e.d_[0] += e.d_[1];
      e.leaf_[1] = 0;
      e.d_[1] = 0.0;
      e.n_ = 1;
    }
  }

  /// Adds derivative d with respect to `leaf` into r; false if r already reads two other Vars.
  [[gnu::always_inline]] static bool add_term(Expr& r, std::uint32_t leaf, double d) {
    if (leaf == r.leaf_[0]) {
      r.d_[0] += d;
    } else if (r.n_ == 1) {
      r.leaf_[1] = leaf;
      r.d_[1] = d;
      r.n_ = 2;
    } else if (leaf == r.leaf_[1]) {
      r.d_[1] += d;
    } else {
      return false;
    }
    return true;
  }

  /// Op `op` of one operand; f(x) returns {value, d value / dx}.
  template <class A, class F>
  [[gnu::always_inline]] static auto unary(const A& x, Op op, F f) {
    const char* what = op_name(op);
    if constexpr (std::same_as<A, UnfusedVar>) {  // one op per entry: recorded now
      Tape& t = detail::tape_of(x, what);
      const auto [y, p] = f(t.scalar_value(x.index()));
      return UnfusedVar(Var(&t, t.push(op, y, x.index(), p, 0, 0.0), x.generation()));
    } else if constexpr (std::same_as<A, Var>) {  // an op on a Var: an elementary entry
      Expr r = of(x, what);
      const auto [y, p] = f(r.value_);
      r.op_ = op;
      r.d_[0] = p;
      r.value_ = y;
      return r;
    } else {
      Expr r = of(x, what);
      const auto [y, p] = f(r.value_);
      merge_repeated(r);
      r.op_ = Op::expr;
      r.d_[0] = chain(p, r.d_[0]);
      if (r.n_ == 2) r.d_[1] = chain(p, r.d_[1]);
      r.value_ = y;
      return r;
    }
  }

  /// Op `op` of two operands; f(x, y) returns {value, d value / dx, d value / dy}.
  template <class A, class B, class F>
  [[gnu::always_inline]] static auto binary(const A& x, const B& y, Op op, F f) {
    const char* what = op_name(op);
    if constexpr (std::same_as<A, UnfusedVar> || std::same_as<B, UnfusedVar>) {  // recorded now
      const Var a = x, b = y;  // an Expr operand is recorded here, as one entry
      Tape& t = detail::tape_of(a, b, what);
      const auto [v, pa, pb] = f(t.scalar_value(a.index()), t.scalar_value(b.index()));
      return UnfusedVar(Var(&t, t.push(op, v, a.index(), pa, b.index(), pb), a.generation()));
    } else if constexpr (std::same_as<A, Var> && std::same_as<B, Var>) {  // an op on Vars: an elementary entry
      Tape& t = detail::tape_of(x, y, what);
      const auto [v, pa, pb] = f(t.scalar_value(x.index()), t.scalar_value(y.index()));
      return elementary(t, x.generation(), op, v, x.index(), pa, y.index(), pb);
    } else {
      const Expr& a = of(x, what);
      const Expr& b = of(y, what);
      a.tape_->check_generation(b.tape_, b.gen_, what);  // one tape
      const auto [v, pa, pb] = f(a.value_, b.value_);
      return combine(a, b, op, v, pa, pb);
    }
  }

  /// An elementary op over two Vars.
  [[gnu::always_inline]] static Expr elementary(Tape& t, std::uint32_t gen, Op op, double v, std::uint32_t a, double pa, std::uint32_t b,
                         double pb) {
    Expr r;
    r.tape_ = &t;
    r.gen_ = gen;
    r.op_ = op;
    r.n_ = 2;
    r.leaf_[0] = a;
    r.leaf_[1] = b;
    r.d_[0] = pa;
    r.d_[1] = pb;
    r.value_ = v;
    return r;
  }

  /// The value v of op `op` on checked operands a and b with local derivatives pa and pb: one
  /// fused expression if a and b read at most two Vars together, else an op over the recorded
  /// operands.
  [[gnu::always_inline]] static Expr combine(const Expr& a, const Expr& b, Op op, double v, double pa, double pb) {
    if (a.op_ == Op::leaf && b.op_ == Op::leaf)
      return elementary(*a.tape_, a.gen_, op, v, a.leaf_[0], pa, b.leaf_[0], pb);
    Expr r = a, rb = b;
    merge_repeated(r);
    merge_repeated(rb);
    r.op_ = Op::expr;
    r.d_[0] = chain(pa, r.d_[0]);
    if (r.n_ == 2) r.d_[1] = chain(pa, r.d_[1]);
    r.value_ = v;
    if (add_term(r, rb.leaf_[0], chain(pb, rb.d_[0])) && (rb.n_ == 1 || add_term(r, rb.leaf_[1], chain(pb, rb.d_[1]))))
      return r;
    // More than two Vars: record the operands, then this op over them.
    const Var ra = record(a), rv = record(b);
    return elementary(*a.tape_, a.gen_, op, v, ra.index(), pa, rv.index(), pb);
  }

  /// Writes an expression to its tape (a plain Var is returned as it is).
  [[gnu::always_inline]] static Var record(const Expr& e) {
    Tape& t = *e.tape_;
    t.check(&t, e.gen_, e.leaf_[0], "Var from an expression");
    if (e.op_ == Op::leaf) return Var(&t, e.leaf_[0], e.gen_);
    return Var(&t, t.push(e.op_, e.value_, e.leaf_[0], e.d_[0], e.leaf_[1], e.d_[1]), e.gen_);
  }
};

}  // namespace expr

inline Var::Var(const Expr& e) : Var(expr::Build::record(e)) {}

}  // namespace ad
