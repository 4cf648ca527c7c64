// ad::Var: a scalar recorded on a tape, and the scalar math.
//
// A Var is a small handle (tape, entry, generation).  Each function below computes the value,
// records one scalar entry holding the local partial derivatives, and returns the new handle.
// Its comment states the derivative and what happens at the edges of its domain.
//
// Domain errors follow IEEE arithmetic, as plain double code would: log(-1) and sqrt(-1) give NaN
// values, log(0) gives -inf, and the partials are whatever the formula yields there (1/0 = inf).
// Nothing throws for them; the opt-in finiteness check in autodiff/inspect finds where they arise.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include <fmt/format.h>

#include "autodiff/error.hpp"

namespace ad {

class Tape;

class Var {
 public:
  /// An empty handle; using it in an op throws InvalidArgument.
  Var() = default;
  /// Low-level: the handle of entry `index` of `tape`, made in `generation`.
  Var(Tape* tape, std::uint32_t index, std::uint32_t generation) : tape_(tape), index_(index), gen_(generation) {}

  /// The recorded value; throws StaleHandleError after tape.clear().
  double value() const;
  Tape* tape() const { return tape_; }
  std::uint32_t index() const { return index_; }
  std::uint32_t generation() const { return gen_; }
  bool empty() const { return tape_ == nullptr; }

  // The compound forms record a new entry and rebind this handle to it.
  Var& operator+=(const Var& y);
  Var& operator-=(const Var& y);
  Var& operator*=(const Var& y);
  Var& operator/=(const Var& y);
  Var& operator+=(double c);
  Var& operator-=(double c);
  Var& operator*=(double c);
  Var& operator/=(double c);

 private:
  Tape* tape_ = nullptr;
  std::uint32_t index_ = 0;
  std::uint32_t gen_ = 0;
};

namespace detail {
/// Validates a handle for op `what` and returns its tape.
Tape& tape_of(const Var& x, const char* what);
/// Validates two handles for op `what` (same tape, current generation) and returns the tape.
Tape& tape_of(const Var& x, const Var& y, const char* what);
}  // namespace detail

}  // namespace ad

#include "autodiff/tape.hpp"

namespace ad {

namespace detail {

inline Tape& tape_of(const Var& x, const char* what) {
  if (x.empty()) throw InvalidArgument(fmt::format("{}: empty Var (default-constructed handle)", what));
  x.tape()->check(x.tape(), x.generation(), x.index(), what);
  return *x.tape();
}

inline Tape& tape_of(const Var& x, const Var& y, const char* what) {
  Tape& t = tape_of(x, what);
  if (y.empty()) throw InvalidArgument(fmt::format("{}: empty Var (default-constructed handle)", what));
  t.check(y.tape(), y.generation(), y.index(), what);
  return t;
}

/// Records a one-argument entry: f(v) returns {value, d value / dv}.
template <class F>
inline Var unary(const Var& x, Op op, const char* what, F f) {
  Tape& t = tape_of(x, what);
  const auto [value, dx] = f(t.scalar_value(x.index()));
  return Var(&t, t.push(op, value, x.index(), dx, 0, 0.0), t.generation());
}

inline Var binary(const Var& x, const Var& y, Op op, const char* what, double value, double dx, double dy) {
  Tape& t = tape_of(x, y, what);
  return Var(&t, t.push(op, value, x.index(), dx, y.index(), dy), t.generation());
}

inline double stable_sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

}  // namespace detail

inline double Var::value() const { return detail::tape_of(*this, "Var::value").scalar_value(index_); }

// ---- arithmetic -----------------------------------------------------------------------------------

/// x + y.  d/dx = 1, d/dy = 1.
inline Var operator+(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "add");
  return Var(&t, t.push(Op::add, t.scalar_value(x.index()) + t.scalar_value(y.index()), x.index(), 1.0, y.index(), 1.0),
             t.generation());
}
/// x - y.  d/dx = 1, d/dy = -1.
inline Var operator-(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "sub");
  return Var(&t, t.push(Op::sub, t.scalar_value(x.index()) - t.scalar_value(y.index()), x.index(), 1.0, y.index(), -1.0),
             t.generation());
}
/// x * y.  d/dx = y, d/dy = x.
inline Var operator*(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "mul");
  const double a = t.scalar_value(x.index()), b = t.scalar_value(y.index());
  return Var(&t, t.push(Op::mul, a * b, x.index(), b, y.index(), a), t.generation());
}
/// x / y.  d/dx = 1/y, d/dy = -x/y².  y = 0 gives ±inf or NaN, as in IEEE division.
inline Var operator/(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "div");
  const double a = t.scalar_value(x.index()), b = t.scalar_value(y.index());
  const double q = a / b;
  return Var(&t, t.push(Op::div, q, x.index(), 1.0 / b, y.index(), -q / b), t.generation());
}
/// -x.  d/dx = -1.
inline Var operator-(const Var& x) {
  return detail::unary(x, Op::neg, "neg", [](double v) { return std::pair{-v, -1.0}; });
}

/// x + c and c + x.  d/dx = 1.
inline Var operator+(const Var& x, double c) {
  return detail::unary(x, Op::add_c, "add", [c](double v) { return std::pair{v + c, 1.0}; });
}
inline Var operator+(double c, const Var& x) { return x + c; }
/// x - c.  d/dx = 1.
inline Var operator-(const Var& x, double c) {
  return detail::unary(x, Op::sub_c, "sub", [c](double v) { return std::pair{v - c, 1.0}; });
}
/// c - x.  d/dx = -1.
inline Var operator-(double c, const Var& x) {
  return detail::unary(x, Op::rsub_c, "sub", [c](double v) { return std::pair{c - v, -1.0}; });
}
/// x * c and c * x.  d/dx = c.
inline Var operator*(const Var& x, double c) {
  return detail::unary(x, Op::mul_c, "mul", [c](double v) { return std::pair{v * c, c}; });
}
inline Var operator*(double c, const Var& x) { return x * c; }
/// x / c.  d/dx = 1/c.
inline Var operator/(const Var& x, double c) {
  return detail::unary(x, Op::div_c, "div", [c](double v) { return std::pair{v / c, 1.0 / c}; });
}
/// c / x.  d/dx = -c/x².
inline Var operator/(double c, const Var& x) {
  return detail::unary(x, Op::rdiv_c, "div", [c](double v) {
    const double q = c / v;
    return std::pair{q, -q / v};
  });
}

inline Var& Var::operator+=(const Var& y) { return *this = *this + y; }
inline Var& Var::operator-=(const Var& y) { return *this = *this - y; }
inline Var& Var::operator*=(const Var& y) { return *this = *this * y; }
inline Var& Var::operator/=(const Var& y) { return *this = *this / y; }
inline Var& Var::operator+=(double c) { return *this = *this + c; }
inline Var& Var::operator-=(double c) { return *this = *this - c; }
inline Var& Var::operator*=(double c) { return *this = *this * c; }
inline Var& Var::operator/=(double c) { return *this = *this / c; }

// ---- powers ---------------------------------------------------------------------------------------

/// x^c.  d/dx = c x^(c-1).  At x = 0 with c < 1 the partial is inf (or NaN), as the formula gives.
inline Var pow(const Var& x, double c) {
  return detail::unary(x, Op::pow_c, "pow", [c](double v) { return std::pair{std::pow(v, c), c * std::pow(v, c - 1.0)}; });
}
/// c^x.  d/dx = c^x ln c.  c < 0 gives NaN for non-integer x.
inline Var pow(double c, const Var& x) {
  return detail::unary(x, Op::rpow_c, "pow", [c](double v) {
    const double p = std::pow(c, v);
    return std::pair{p, p * std::log(c)};
  });
}
/// x^y.  d/dx = y x^(y-1), d/dy = x^y ln x.  Where x^y = 0 (x = 0, y > 0) d/dy is taken as 0,
/// its limit; for x < 0, ln x is NaN and so is d/dy.
inline Var pow(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "pow");
  const double a = t.scalar_value(x.index()), b = t.scalar_value(y.index());
  const double p = std::pow(a, b);
  const double dy = p == 0.0 ? 0.0 : p * std::log(a);
  return Var(&t, t.push(Op::pow, p, x.index(), b * std::pow(a, b - 1.0), y.index(), dy), t.generation());
}
/// x².  d/dx = 2x.
inline Var square(const Var& x) {
  return detail::unary(x, Op::square, "square", [](double v) { return std::pair{v * v, 2.0 * v}; });
}

// ---- elementary functions -------------------------------------------------------------------------

/// e^x.  d/dx = e^x.  Overflows to inf above x ≈ 709.78.
inline Var exp(const Var& x) {
  return detail::unary(x, Op::exp, "exp", [](double v) {
    const double e = std::exp(v);
    return std::pair{e, e};
  });
}
/// ln x.  d/dx = 1/x.  x = 0 gives -inf with partial inf; x < 0 gives NaN.
inline Var log(const Var& x) {
  return detail::unary(x, Op::log, "log", [](double v) { return std::pair{std::log(v), 1.0 / v}; });
}
/// ln(1 + x), accurate for small x.  d/dx = 1/(1 + x).  x = -1 gives -inf; x < -1 NaN.
inline Var log1p(const Var& x) {
  return detail::unary(x, Op::log1p, "log1p", [](double v) { return std::pair{std::log1p(v), 1.0 / (1.0 + v)}; });
}
/// √x.  d/dx = 1/(2√x).  x = 0 gives partial inf; x < 0 NaN.
inline Var sqrt(const Var& x) {
  return detail::unary(x, Op::sqrt, "sqrt", [](double v) {
    const double s = std::sqrt(v);
    return std::pair{s, 0.5 / s};
  });
}
/// sin x.  d/dx = cos x.
inline Var sin(const Var& x) {
  return detail::unary(x, Op::sin, "sin", [](double v) { return std::pair{std::sin(v), std::cos(v)}; });
}
/// cos x.  d/dx = -sin x.
inline Var cos(const Var& x) {
  return detail::unary(x, Op::cos, "cos", [](double v) { return std::pair{std::cos(v), -std::sin(v)}; });
}
/// tan x.  d/dx = 1 + tan² x.  Near the poles both grow without bound.
inline Var tan(const Var& x) {
  return detail::unary(x, Op::tan, "tan", [](double v) {
    const double t = std::tan(v);
    return std::pair{t, 1.0 + t * t};
  });
}
/// tanh x.  d/dx = 1 - tanh² x.
inline Var tanh(const Var& x) {
  return detail::unary(x, Op::tanh, "tanh", [](double v) {
    const double t = std::tanh(v);
    return std::pair{t, 1.0 - t * t};
  });
}
/// σ(x) = 1/(1 + e^-x), computed without overflow for either sign.  d/dx = σ(x)(1 - σ(x)).
inline Var sigmoid(const Var& x) {
  return detail::unary(x, Op::sigmoid, "sigmoid", [](double v) {
    const double s = detail::stable_sigmoid(v);
    return std::pair{s, s * (1.0 - s)};
  });
}
/// max(x, 0).  d/dx = 1 for x > 0 and 0 for x ≤ 0 (relu′(0) = 0 by convention).
inline Var relu(const Var& x) {
  return detail::unary(x, Op::relu, "relu", [](double v) { return v > 0.0 ? std::pair{v, 1.0} : std::pair{0.0, 0.0}; });
}
/// |x|.  d/dx = sign(x), and 0 at x = 0 (the subgradient of least norm).
inline Var abs(const Var& x) {
  return detail::unary(x, Op::abs, "abs",
                       [](double v) { return std::pair{std::fabs(v), v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0)}; });
}
/// ln(1 + e^x), computed as max(x, 0) + ln(1 + e^-|x|) so it never overflows.  d/dx = σ(x).
inline Var softplus(const Var& x) {
  return detail::unary(x, Op::softplus, "softplus", [](double v) {
    return std::pair{std::max(v, 0.0) + std::log1p(std::exp(-std::fabs(v))), detail::stable_sigmoid(v)};
  });
}
/// The smaller of x and y.  The derivative is 1 for the one chosen and 0 for the other; on a tie
/// x is chosen.
inline Var min(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "min");
  const double a = t.scalar_value(x.index()), b = t.scalar_value(y.index());
  const bool first = a <= b;
  return Var(&t, t.push(Op::min, first ? a : b, x.index(), first ? 1.0 : 0.0, y.index(), first ? 0.0 : 1.0),
             t.generation());
}
/// The larger of x and y.  The derivative is 1 for the one chosen and 0 for the other; on a tie
/// x is chosen.
inline Var max(const Var& x, const Var& y) {
  Tape& t = detail::tape_of(x, y, "max");
  const double a = t.scalar_value(x.index()), b = t.scalar_value(y.index());
  const bool first = a >= b;
  return Var(&t, t.push(Op::max, first ? a : b, x.index(), first ? 1.0 : 0.0, y.index(), first ? 0.0 : 1.0),
             t.generation());
}

// ---- comparisons (on values; nothing is recorded) -------------------------------------------------

inline bool operator==(const Var& x, const Var& y) { return x.value() == y.value(); }
inline auto operator<=>(const Var& x, const Var& y) { return x.value() <=> y.value(); }
inline bool operator==(const Var& x, double c) { return x.value() == c; }
inline auto operator<=>(const Var& x, double c) { return x.value() <=> c; }

}  // namespace ad

/// Formats a Var as its value.
template <>
struct fmt::formatter<ad::Var> : fmt::formatter<double> {
  auto format(const ad::Var& v, fmt::format_context& ctx) const { return fmt::formatter<double>::format(v.value(), ctx); }
};
