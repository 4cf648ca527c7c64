#include "autodiff/ops/broadcast.hpp"

#include "autodiff/ops/record.hpp"

namespace ad::ops {

std::optional<Shape> broadcast_shape(const Shape& a, const Shape& b) {
  const std::size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (std::size_t k = 0; k < r; ++k) {  // k counts from the last dimension
    const std::int64_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    const std::int64_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[r - 1 - k] = da == 1 ? db : da;
  }
  return out;
}

namespace {

/// An operand's strides over the rank-4 padded output: contiguous, and 0 where it has size 1.
std::array<std::int64_t, 4> padded_strides(const Shape& s) {
  std::array<std::int64_t, 4> st{};
  std::int64_t stride = 1;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const std::size_t d = s.size() - 1 - k;  // operand dimension, from the last
    st[3 - k] = s[d] == 1 ? 0 : stride;
    stride *= s[d];
  }
  return st;
}

}  // namespace

Broadcast::Broadcast(const Shape& a, const Shape& b) {
  // The common cases need no padding or strides: equal shapes, and a rank-0 operand (a Var).
  if (a == b || a.empty() || b.empty()) {
    out_ = b.empty() ? a : b;
    size_ = numel(out_);
    kind_ = a == b ? Kind::same : b.empty() ? Kind::b_single : Kind::a_single;
    return;
  }
  out_ = *broadcast_shape(a, b);
  size_ = numel(out_);
  const std::int64_t na = numel(a), nb = numel(b);
  // With no zero dimension, an operand as large as the output is not stretched anywhere, so its
  // flat index equals the output's.
  if (na == size_ && nb == size_) kind_ = Kind::same;
  else if (na == size_ && nb == 1) kind_ = Kind::b_single;
  else if (nb == size_ && na == 1) kind_ = Kind::a_single;
  else kind_ = Kind::general;
  for (std::size_t k = 0; k < out_.size(); ++k) dim_[4 - out_.size() + k] = out_[k];
  sa_ = padded_strides(a);
  sb_ = padded_strides(b);
}

Broadcast broadcast(const Tensor& a, const Tensor& b, const char* op) {
  const Shape& sa = a.shape();
  const Shape& sb = b.shape();
  if (sa != sb && !broadcast_shape(sa, sb))
    throw ShapeError(fmt::format("{}: shapes cannot be broadcast: {}, {}", op, describe_operand(a, "lhs"),
                                 describe_operand(b, "rhs")));
  return Broadcast(sa, sb);
}

}  // namespace ad::ops
