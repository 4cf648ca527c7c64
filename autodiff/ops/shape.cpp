// Shape operations: transpose (the last two dimensions) and reshape.
#include <algorithm>

#include <fmt/ranges.h>

#include "autodiff/forward.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// Writes (or, with accumulate, adds) src, a stack of [rows, cols] matrices, transposed into dst
/// (a stack of [cols, rows]).
template <bool accumulate, Element T>
void transpose_into(T* dst, const T* src, std::int64_t batch, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t b = 0; b < batch; ++b, src += rows * cols, dst += rows * cols)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j) {
        if constexpr (accumulate) dst[j * rows + i] += src[i * cols + j];
        else dst[j * rows + i] = src[i * cols + j];
      }
}

/// The transpose is a permutation: dx += gᵀ (the output adjoint transposed back).
void transpose_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const Shape& s = c.node().shape;  // [..., n, m]: the output
    const std::int64_t rows = s[s.size() - 2], cols = s[s.size() - 1];
    transpose_into<true>(dx, c.grad<T>(), numel(s) / std::max<std::int64_t>(rows * cols, 1), rows, cols);
  });
}

/// A reshape keeps the elements in order: dx += g.
void reshape_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const T* g = c.grad<T>();
    const std::int64_t n = numel(c.node().shape);
    for (std::int64_t i = 0; i < n; ++i) dx[i] += g[i];
  });
}

/// The transpose's tangent is the argument's tangent transposed.
void transpose_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const Shape& s = c.arg_shape(0);  // [..., rows, cols]: the argument
    const std::int64_t rows = s[s.size() - 2], cols = s[s.size() - 1];
    transpose_into<false>(c.fresh_tangent<T>(), c.arg_tangent<T>(0), numel(s) / std::max<std::int64_t>(rows * cols, 1), rows,
                          cols);
  });
}

/// A reshape's tangent is its argument's, read under the new shape (shared, like the value).
void reshape_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() { c.alias_tangent(const_cast<T*>(c.arg_tangent<T>(0))); });
}

constexpr OpDescriptor transpose_op{.name = "transpose", .backward = transpose_backward, .tangent = transpose_tangent,
                                    .curvature = no_curvature};
constexpr OpDescriptor reshape_op{.name = "reshape", .backward = reshape_backward, .tangent = reshape_tangent,
                                  .curvature = no_curvature};

}  // namespace

/// x with its last two dimensions swapped: y[..., j, i] = x[..., i, j].  The value is copied.
/// Rank 0 and 1 throw ShapeError.
Tensor transpose(const Tensor& x) {
  Tape& tape = ops::tape_of(x, "transpose");
  const Node& nx = *tape.node(x.index());
  if (nx.shape.size() < 2)
    throw ShapeError(fmt::format("transpose: needs at least 2 dimensions, {}", ops::describe_operand(x, "x")));
  Shape shape = nx.shape;
  const std::size_t r = shape.size();
  const std::int64_t rows = shape[r - 2], cols = shape[r - 1];
  std::swap(shape[r - 2], shape[r - 1]);
  const std::int64_t n = numel(shape);
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    T* y = tape.allocate_elements<T>(n);
    transpose_into<false>(y, static_cast<const T*>(nx.data), n / std::max<std::int64_t>(rows * cols, 1), rows, cols);
    return y;
  });
  return ops::record_tensor(tape, transpose_op, dtype, shape, out, {x.index()});
}

/// The same elements, in the same row-major order, under a new shape.  One dimension may be -1: it
/// takes whatever size makes the element counts agree.  The value is not copied: the result reads
/// x's elements.  Throws InvalidArgument for more than one -1 or another negative size, ShapeError
/// for a rank above 4 or an element count that differs from x's.
Tensor reshape(const Tensor& x, std::span<const std::int64_t> dims) {
  Tape& tape = ops::tape_of(x, "reshape");
  const Node& nx = *tape.node(x.index());
  const auto requested = [&] { return fmt::format("[{}]", fmt::join(dims, ",")); };
  if (dims.size() > max_rank)
    throw ShapeError(fmt::format("reshape: {} is {} dimensions; at most {} are supported", requested(), dims.size(),
                                 max_rank));
  Shape shape;
  int free_dim = -1;
  std::int64_t known = 1;
  for (std::size_t k = 0; k < dims.size(); ++k) {
    if (dims[k] == -1 && free_dim < 0) {
      free_dim = static_cast<int>(k);
    } else if (dims[k] < 0) {
      throw InvalidArgument(fmt::format("reshape: invalid shape {} for {}: only one dimension may be -1 and none "
                                        "may be otherwise negative",
                                        requested(), ops::describe_operand(x, "x")));
    } else {
      if (dims[k] > 0 && known > max_elements / dims[k])  // known * dims[k] would pass the cap (or overflow)
        throw ShapeError(fmt::format("reshape: {} has more than {} (2^48) elements", requested(), max_elements));
      known *= dims[k];
    }
    shape.push_back(dims[k]);
  }
  const std::int64_t n = numel(nx.shape);
  if (free_dim >= 0) {
    if (known == 0 || n % known != 0)
      throw ShapeError(fmt::format("reshape: cannot view {} as {}", ops::describe_operand(x, "x"), requested()));
    shape[static_cast<std::size_t>(free_dim)] = n / known;
  }
  check_shape(shape, "reshape");
  if (numel(shape) != n)
    throw ShapeError(fmt::format("reshape: cannot view {} ({} elements) as {} ({} elements)",
                                 ops::describe_operand(x, "x"), n, requested(), numel(shape)));
  return ops::record_tensor(tape, reshape_op, nx.dtype, shape, nx.data, {x.index()});
}

Tensor reshape(const Tensor& x, std::initializer_list<std::int64_t> shape) {
  return reshape(x, std::span<const std::int64_t>(shape.begin(), shape.size()));
}

}  // namespace ad
