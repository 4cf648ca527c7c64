// NumPy broadcasting of two operands, and the one helper that sums a broadcast gradient back.
//
// Two shapes broadcast when, aligned at their last dimension, each pair of dimensions is equal or
// one of them is 1 (a missing leading dimension counts as 1).  The result takes the larger size of
// each pair: [3,1] with [1,4] gives [3,4]; [2,3,4] with [4] gives [2,3,4]; [] with anything gives
// the other shape.
//
// An operand element that was stretched over several output elements receives, in the backward
// sweep, the sum of the gradient over all of them.  Every broadcasting op does that through
// sum_to_operand(), so the reduction is written once.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "autodiff/tape.hpp"

namespace ad::ops {

/// The shape two shapes broadcast to, or nothing if they are incompatible.
std::optional<Shape> broadcast_shape(const Shape& a, const Shape& b);

/// How the output of a binary op walks its two operands.  The shapes are padded on the left to
/// rank 4; an operand's stride is 0 along each dimension where it is broadcast.
class Broadcast {
 public:
  /// Precondition: a and b broadcast (check with broadcast_shape or ops::broadcast first).
  Broadcast(const Shape& a, const Shape& b);

  const Shape& out() const { return out_; }
  std::int64_t size() const { return size_; }

  /// Calls f(o, ia, ib) for every output element o in row-major order, with the flat indices of
  /// the operand elements it reads.  Operands of the output's full size (and one-element operands)
  /// take a single flat loop the compiler can vectorise.
  template <class F>
  void for_each(F&& f) const;

 private:
  enum class Kind : std::uint8_t { same, b_single, a_single, general };
  Shape out_;
  std::int64_t size_ = 0;
  Kind kind_ = Kind::general;
  std::array<std::int64_t, 4> dim_{1, 1, 1, 1};
  std::array<std::int64_t, 4> sa_{}, sb_{};
};

/// The broadcast of two tensor operands.  Throws ShapeError naming the op and both operands, e.g.
/// "add: shapes cannot be broadcast: x is f32[64,784], W1 is f32[100,10]".
Broadcast broadcast(const Tensor& a, const Tensor& b, const char* op);

/// Sums a gradient over the broadcast output back to operand k's shape (k = 0 for a, 1 for b),
/// adding into that operand's adjoint dx:
///     dx[i] += Σ over output elements o that read element i of  local(o, ia, ib),
/// where local(o, ia, ib) = ∂J/∂out[o] · ∂out[o]/∂operand[i] is computed by the caller.  The sum is
/// accumulated in Acc (an operand adjoint's type, or double for a Var's adjoint).
template <class Acc, class F>
void sum_to_operand(Acc* dx, int k, const Broadcast& p, F&& local) {
  if (k == 0)
    p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) { dx[ia] += static_cast<Acc>(local(o, ia, ib)); });
  else
    p.for_each([&](std::int64_t o, std::int64_t ia, std::int64_t ib) { dx[ib] += static_cast<Acc>(local(o, ia, ib)); });
}

template <class F>
void Broadcast::for_each(F&& f) const {
  const std::int64_t n = size_;
  switch (kind_) {
    case Kind::same:
      for (std::int64_t o = 0; o < n; ++o) f(o, o, o);
      return;
    case Kind::b_single:
      for (std::int64_t o = 0; o < n; ++o) f(o, o, std::int64_t{0});
      return;
    case Kind::a_single:
      for (std::int64_t o = 0; o < n; ++o) f(o, std::int64_t{0}, o);
      return;
    case Kind::general:
      break;
  }
  std::int64_t o = 0;
  for (std::int64_t i0 = 0; i0 < dim_[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < dim_[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < dim_[2]; ++i2) {
        const std::int64_t ia = i0 * sa_[0] + i1 * sa_[1] + i2 * sa_[2];
        const std::int64_t ib = i0 * sb_[0] + i1 * sb_[1] + i2 * sb_[2];
        for (std::int64_t i3 = 0; i3 < dim_[3]; ++i3, ++o) f(o, ia + i3 * sa_[3], ib + i3 * sb_[3]);
      }
}

}  // namespace ad::ops
