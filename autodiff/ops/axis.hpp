// Ops that work along one axis (reductions, softmax) see a row-major tensor as [outer, n, inner]:
// element (o, k, i) is at (o·n + k)·inner + i, and k runs along the axis.
#pragma once

#include <cstdint>

#include "autodiff/ops/record.hpp"

namespace ad::ops {

struct AxisSplit {
  std::size_t axis = 0;     ///< the axis, counted from the front
  std::int64_t outer = 1;   ///< product of the dimensions before it
  std::int64_t n = 1;       ///< its size
  std::int64_t inner = 1;   ///< product of the dimensions after it
};

/// Splits x's shape around `axis` (negative counts from the end).  Throws IndexError naming the op
/// and the operand if the axis is out of range (a rank-0 tensor has no axis).
inline AxisSplit split_at_axis(const Tensor& x, const Shape& shape, int axis, const char* op) {
  const int rank = static_cast<int>(shape.size());
  if (axis < -rank || axis >= rank)
    throw IndexError(fmt::format("{}: axis {} is out of range for {} (rank {})", op, axis, describe_operand(x, "x"),
                                 rank));
  AxisSplit s;
  s.axis = static_cast<std::size_t>(axis < 0 ? axis + rank : axis);
  for (std::size_t k = 0; k < s.axis; ++k) s.outer *= shape[k];
  s.n = shape[s.axis];
  for (std::size_t k = s.axis + 1; k < shape.size(); ++k) s.inner *= shape[k];
  return s;
}

/// The split of a shape whose axis is already known to be valid (in a backward rule).
inline AxisSplit split_at_axis(const Shape& shape, std::size_t axis) {
  AxisSplit s;
  s.axis = axis;
  for (std::size_t k = 0; k < axis; ++k) s.outer *= shape[k];
  s.n = shape[axis];
  for (std::size_t k = axis + 1; k < shape.size(); ++k) s.inner *= shape[k];
  return s;
}

}  // namespace ad::ops
