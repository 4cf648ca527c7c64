// ad::Var: a scalar recorded on a tape, and the scalar math.
//
// A Var is a small handle (tape, entry, generation) naming a recorded value.  The ops below do not
// record their result: they compute the value and the local derivatives and return an ad::Expr
// (autodiff/expr.hpp), which is written to the tape when it becomes a Var (an op whose operands
// read more than two Vars between them records those operands first):
//
//   ad::Var y = tanh(x * w) + b;   // two entries: tanh(x * w) reads two Vars and is one fused
//                                  // entry; `+ b` makes three, so it is a second entry
//   auto e = x * w;                // nothing recorded yet; e becomes an entry each time it is
//                                  // converted to a Var, so keep a value you reuse in an ad::Var
//
// Each op's comment states its derivative and what happens at the edges of its domain.
//
// Domain errors follow IEEE arithmetic, as plain double code would: log(-1) and sqrt(-1) give NaN
// values, log(0) gives -inf, and the partials are whatever the formula yields there (1/0 = inf).
// Nothing throws for them; the opt-in finiteness check in autodiff/inspect finds where they arise.
#pragma once

#include <algorithm>
#include <cmath>
#include <compare>
#include <concepts>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "autodiff/error.hpp"
#include "autodiff/gradients.hpp"
#include "autodiff/handles.hpp"
#include "autodiff/tape.hpp"

namespace ad {



/// A Var, an UnfusedVar or an unrecorded expression: what the scalar ops accept.
template <class T>
concept Operand = std::same_as<T, Var> || std::same_as<T, UnfusedVar> || std::same_as<T, Expr>;

namespace detail {
/// Validates a handle for op `what` and returns its tape.
Tape& tape_of(const Var& x, const char* what);
/// Validates two handles for op `what` (same tape, current generation) and returns the tape.
Tape& tape_of(const Var& x, const Var& y, const char* what);
}  // namespace detail

}  // namespace ad


namespace ad {

namespace detail {

/// Throws the error for an empty handle; out of line, so the ops that check stay small enough to
/// be inlined.
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_empty(const char* what) {
  throw InvalidArgument(fmt::format("{}: empty Var (default-constructed handle)", what));
}

inline Tape& tape_of(const Var& x, const char* what) {
  if (x.empty()) throw_empty(what);
  x.tape()->check(x.tape(), x.generation(), x.index(), what);
  return *x.tape();
}

inline Tape& tape_of(const Var& x, const Var& y, const char* what) {
  Tape& t = tape_of(x, what);
  if (y.empty()) throw_empty(what);
  t.check(y.tape(), y.generation(), y.index(), what);
  return t;
}

inline double stable_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace detail

inline double Var::value() const { return detail::tape_of(*this, "Var::value").scalar_value(index_); }

}  // namespace ad

#include "autodiff/expr.hpp"

namespace ad {

// Each op passes its operands, its op code and name, and its rule: a function of the operand
// values returning the value and the local derivative(s).  The ops are forced inline, like the
// functions of expr::Build they call, so that a source expression becomes straight-line code.

// ---- arithmetic -----------------------------------------------------------------------------------

/// x + y.  d/dx = 1, d/dy = 1.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto operator+(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::add, [](double a, double b) { return std::tuple{a + b, 1.0, 1.0}; });
}
/// x - y.  d/dx = 1, d/dy = -1.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto operator-(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::sub, [](double a, double b) { return std::tuple{a - b, 1.0, -1.0}; });
}
/// x * y.  d/dx = y, d/dy = x.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto operator*(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::mul, [](double a, double b) { return std::tuple{a * b, b, a}; });
}
/// x / y.  d/dx = 1/y, d/dy = -x/y².  y = 0 gives ±inf or NaN, as in IEEE division.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto operator/(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::div, [](double a, double b) {
    const double q = a / b;
    return std::tuple{q, 1.0 / b, -q / b};
  });
}
/// -x.  d/dx = -1.
template <Operand A>
[[gnu::always_inline]] inline auto operator-(const A& x) {
  return expr::Build::unary(x, Op::neg, [](double v) { return std::pair{-v, -1.0}; });
}

/// x + c and c + x.  d/dx = 1.
template <Operand A>
[[gnu::always_inline]] inline auto operator+(const A& x, double c) {
  return expr::Build::unary(x, Op::add_c, [c](double v) { return std::pair{v + c, 1.0}; });
}
template <Operand A>
[[gnu::always_inline]] inline auto operator+(double c, const A& x) {
  return x + c;
}
/// x - c.  d/dx = 1.
template <Operand A>
[[gnu::always_inline]] inline auto operator-(const A& x, double c) {
  return expr::Build::unary(x, Op::sub_c, [c](double v) { return std::pair{v - c, 1.0}; });
}
/// c - x.  d/dx = -1.
template <Operand A>
[[gnu::always_inline]] inline auto operator-(double c, const A& x) {
  return expr::Build::unary(x, Op::rsub_c, [c](double v) { return std::pair{c - v, -1.0}; });
}
/// x * c and c * x.  d/dx = c.
template <Operand A>
[[gnu::always_inline]] inline auto operator*(const A& x, double c) {
  return expr::Build::unary(x, Op::mul_c, [c](double v) { return std::pair{v * c, c}; });
}
template <Operand A>
[[gnu::always_inline]] inline auto operator*(double c, const A& x) {
  return x * c;
}
/// x / c.  d/dx = 1/c.
template <Operand A>
[[gnu::always_inline]] inline auto operator/(const A& x, double c) {
  return expr::Build::unary(x, Op::div_c, [c](double v) { return std::pair{v / c, 1.0 / c}; });
}
/// c / x.  d/dx = -c/x².
template <Operand A>
[[gnu::always_inline]] inline auto operator/(double c, const A& x) {
  return expr::Build::unary(x, Op::rdiv_c, [c](double v) {
    const double q = c / v;
    return std::pair{q, -q / v};
  });
}

template <class E>
Var& Var::operator+=(const E& y) { return *this = *this + y; }
template <class E>
Var& Var::operator-=(const E& y) { return *this = *this - y; }
template <class E>
Var& Var::operator*=(const E& y) { return *this = *this * y; }
template <class E>
Var& Var::operator/=(const E& y) { return *this = *this / y; }
template <class E>
UnfusedVar& UnfusedVar::operator+=(const E& y) { return *this = *this + y; }
template <class E>
UnfusedVar& UnfusedVar::operator-=(const E& y) { return *this = *this - y; }
template <class E>
UnfusedVar& UnfusedVar::operator*=(const E& y) { return *this = *this * y; }
template <class E>
UnfusedVar& UnfusedVar::operator/=(const E& y) { return *this = *this / y; }

// ---- powers ---------------------------------------------------------------------------------------

/// x^c.  d/dx = c x^(c-1), and 0 when c = 0 (x^0 is the constant 1, also at x = 0, where the
/// formula would give 0·inf = NaN).  At x = 0 with 0 < c < 1 the partial is inf.
template <Operand A>
[[gnu::always_inline]] inline auto pow(const A& x, double c) {
  return expr::Build::unary(x, Op::pow_c, [c](double v) {
    return std::pair{std::pow(v, c), c == 0.0 ? 0.0 : c * std::pow(v, c - 1.0)};
  });
}
/// c^x.  d/dx = c^x ln c; with c = 0 and x >= 0 it is taken as 0 (0^x is 0 for x > 0 and 1 at 0:
/// ln 0 = -inf would make it NaN or -inf).  c < 0 gives NaN for non-integer x.
template <Operand A>
[[gnu::always_inline]] inline auto pow(double c, const A& x) {
  return expr::Build::unary(x, Op::rpow_c, [c](double v) {
    const double p = std::pow(c, v);
    return std::pair{p, c == 0.0 && v >= 0.0 ? 0.0 : p * std::log(c)};
  });
}
/// x^y.  d/dx = y x^(y-1), and 0 when y = 0.  d/dy = x^y ln x, taken as 0 where x = 0 and y >= 0
/// (its limit from y > 0, as PyTorch does): pow(0, 0) has partials 0 and 0, not NaN and -inf.  For
/// x < 0, ln x is NaN and so is d/dy.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto pow(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::pow, [](double a, double b) {
    const double p = std::pow(a, b);
    return std::tuple{p, b == 0.0 ? 0.0 : b * std::pow(a, b - 1.0), a == 0.0 && b >= 0.0 ? 0.0 : p * std::log(a)};
  });
}
/// x².  d/dx = 2x.
template <Operand A>
[[gnu::always_inline]] inline auto square(const A& x) {
  return expr::Build::unary(x, Op::square, [](double v) { return std::pair{v * v, 2.0 * v}; });
}

// ---- elementary functions -------------------------------------------------------------------------

/// e^x.  d/dx = e^x.  Overflows to inf above x ≈ 709.78.
template <Operand A>
[[gnu::always_inline]] inline auto exp(const A& x) {
  return expr::Build::unary(x, Op::exp, [](double v) {
    const double e = std::exp(v);
    return std::pair{e, e};
  });
}
/// ln x.  d/dx = 1/x.  x = 0 gives -inf with partial inf; x < 0 gives NaN.
template <Operand A>
[[gnu::always_inline]] inline auto log(const A& x) {
  return expr::Build::unary(x, Op::log, [](double v) { return std::pair{std::log(v), 1.0 / v}; });
}
/// ln(1 + x), accurate for small x.  d/dx = 1/(1 + x).  x = -1 gives -inf; x < -1 NaN.
template <Operand A>
[[gnu::always_inline]] inline auto log1p(const A& x) {
  return expr::Build::unary(x, Op::log1p,
                            [](double v) { return std::pair{std::log1p(v), 1.0 / (1.0 + v)}; });
}
/// √x.  d/dx = 1/(2√x).  x = 0 gives partial inf; x < 0 NaN.
template <Operand A>
[[gnu::always_inline]] inline auto sqrt(const A& x) {
  return expr::Build::unary(x, Op::sqrt, [](double v) {
    const double s = std::sqrt(v);
    return std::pair{s, 0.5 / s};
  });
}
/// sin x.  d/dx = cos x.
template <Operand A>
[[gnu::always_inline]] inline auto sin(const A& x) {
  return expr::Build::unary(x, Op::sin, [](double v) { return std::pair{std::sin(v), std::cos(v)}; });
}
/// cos x.  d/dx = -sin x.
template <Operand A>
[[gnu::always_inline]] inline auto cos(const A& x) {
  return expr::Build::unary(x, Op::cos, [](double v) { return std::pair{std::cos(v), -std::sin(v)}; });
}
/// tan x.  d/dx = 1 + tan² x.  Near the poles both grow without bound.
template <Operand A>
[[gnu::always_inline]] inline auto tan(const A& x) {
  return expr::Build::unary(x, Op::tan, [](double v) {
    const double t = std::tan(v);
    return std::pair{t, 1.0 + t * t};
  });
}
/// tanh x.  d/dx = 1 - tanh² x.
template <Operand A>
[[gnu::always_inline]] inline auto tanh(const A& x) {
  return expr::Build::unary(x, Op::tanh, [](double v) {
    const double t = std::tanh(v);
    return std::pair{t, 1.0 - t * t};
  });
}
/// σ(x) = 1/(1 + e^-x), computed without overflow for either sign.  d/dx = σ(x)(1 - σ(x)).
template <Operand A>
[[gnu::always_inline]] inline auto sigmoid(const A& x) {
  return expr::Build::unary(x, Op::sigmoid, [](double v) {
    const double s = detail::stable_sigmoid(v);
    return std::pair{s, s * (1.0 - s)};
  });
}
/// max(x, 0).  d/dx = 1 for x > 0 and 0 for x ≤ 0 (relu′(0) = 0 by convention).
template <Operand A>
[[gnu::always_inline]] inline auto relu(const A& x) {
  return expr::Build::unary(x, Op::relu,
                            [](double v) { return v > 0.0 ? std::pair{v, 1.0} : std::pair{0.0, 0.0}; });
}
/// |x|.  d/dx = sign(x), and 0 at x = 0 (the subgradient of least norm).
template <Operand A>
[[gnu::always_inline]] inline auto abs(const A& x) {
  return expr::Build::unary(x, Op::abs, [](double v) {
    return std::pair{std::fabs(v), v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0)};
  });
}
/// ln(1 + e^x), computed as max(x, 0) + ln(1 + e^-|x|) so it never overflows.  d/dx = σ(x).
template <Operand A>
[[gnu::always_inline]] inline auto softplus(const A& x) {
  return expr::Build::unary(x, Op::softplus, [](double v) {
    return std::pair{std::max(v, 0.0) + std::log1p(std::exp(-std::fabs(v))), detail::stable_sigmoid(v)};
  });
}
/// The smaller of x and y.  The derivative is 1 for the one chosen and 0 for the other; on a tie
/// x is chosen.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto min(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::min, [](double a, double b) {
    return a <= b ? std::tuple{a, 1.0, 0.0} : std::tuple{b, 0.0, 1.0};
  });
}
/// The larger of x and y.  The derivative is 1 for the one chosen and 0 for the other; on a tie
/// x is chosen.
template <Operand A, Operand B>
[[gnu::always_inline]] inline auto max(const A& x, const B& y) {
  return expr::Build::binary(x, y, Op::max, [](double a, double b) {
    return a >= b ? std::tuple{a, 1.0, 0.0} : std::tuple{b, 0.0, 1.0};
  });
}

// ---- comparisons (on values; nothing is recorded) -------------------------------------------------

// The constraint sits in the return type (enable_if), not in a requires-clause: some compilers
// (clang 14) check that an operator has a class-type parameter before they check its constraints,
// and reject `1 == 2` wherever these templates are visible.
template <class A, class B>
std::enable_if_t<Operand<A> && Operand<B>, bool> operator==(const A& x, const B& y) {
  return x.value() == y.value();
}
template <class A, class B>
std::enable_if_t<Operand<A> && Operand<B>, std::partial_ordering> operator<=>(const A& x, const B& y) {
  return x.value() <=> y.value();
}
template <class A>
std::enable_if_t<Operand<A>, bool> operator==(const A& x, double c) {
  return x.value() == c;
}
template <class A>
std::enable_if_t<Operand<A>, std::partial_ordering> operator<=>(const A& x, double c) {
  return x.value() <=> c;
}

}  // namespace ad

/// Formats a Var or an unrecorded expression as its value.
template <>
struct fmt::formatter<ad::Var> : fmt::formatter<double> {
  auto format(const ad::Var& v, fmt::format_context& ctx) const { return fmt::formatter<double>::format(v.value(), ctx); }
};
template <>
struct fmt::formatter<ad::UnfusedVar> : fmt::formatter<ad::Var> {};
template <>
struct fmt::formatter<ad::Expr> : fmt::formatter<double> {
  auto format(const ad::Expr& e, fmt::format_context& ctx) const { return fmt::formatter<double>::format(e.value(), ctx); }
};
