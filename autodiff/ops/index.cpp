// Indexing by integer labels: pick one element per row, and one-hot encoding.
#include <algorithm>
#include <cstring>

#include "autodiff/forward.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// pick's saved state: the labels, copied onto the tape, and the number of classes.
struct Labels {
  const std::int32_t* labels = nullptr;
  std::int64_t classes = 0;
};

/// Each picked element's adjoint goes back to where it was taken from: dx[b, labels[b]] += g[b].
void pick_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const T* g = c.grad<T>();
    const auto [labels, classes] = c.saved<Labels>();
    const std::int64_t rows = numel(c.node().shape);
    for (std::int64_t b = 0; b < rows; ++b) dx[b * classes + labels[b]] += g[b];
  });
}

/// The picked elements' tangents: ẏ[b] = ẋ[b, labels[b]].
void pick_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dx = c.arg_tangent<T>(0);
    T* dy = c.fresh_tangent<T>();
    const auto [labels, classes] = c.saved<Labels>();
    for (std::int64_t b = 0, rows = numel(c.node().shape); b < rows; ++b) dy[b] = dx[b * classes + labels[b]];
  });
}

constexpr OpDescriptor pick_op{.name = "pick", .backward = pick_backward, .tangent = pick_tangent,
                               .curvature = no_curvature};
constexpr OpDescriptor one_hot_op{.name = "one_hot"};  // a constant: nothing flows back

}  // namespace

/// y[b] = x[b, labels[b]] for x of shape [B, C].  d y[b] / d x[b, c] = 1 if c = labels[b], else 0.
/// Throws ShapeError if x is not 2-D or the number of labels is not B, IndexError naming the row
/// and the label if a label is outside [0, C).
Tensor pick(const Tensor& x, std::span<const std::int32_t> labels) {
  Tape& tape = ops::tape_of(x, "pick");
  const Node& nx = *tape.node(x.index());
  if (nx.shape.size() != 2)
    throw ShapeError(fmt::format("pick: expected a 2-D [batch, classes] tensor, {}", ops::describe_operand(x, "x")));
  const std::int64_t rows = nx.shape[0], classes = nx.shape[1];
  if (static_cast<std::int64_t>(labels.size()) != rows)
    throw ShapeError(fmt::format("pick: {} labels given for {} ({} rows)", labels.size(), ops::describe_operand(x, "x"),
                                 rows));
  for (std::int64_t b = 0; b < rows; ++b)
    if (labels[b] < 0 || labels[b] >= classes)
      throw IndexError(fmt::format("pick: label {} in row {} is outside [0, {}) for {}", labels[b], b, classes,
                                   ops::describe_operand(x, "x")));
  auto* saved = static_cast<std::int32_t*>(tape.allocate(sizeof(std::int32_t) * labels.size()));
  std::copy(labels.begin(), labels.end(), saved);
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* xv = static_cast<const T*>(nx.data);
    T* y = tape.allocate_elements<T>(rows);
    for (std::int64_t b = 0; b < rows; ++b) y[b] = xv[b * classes + saved[b]];
    return y;
  });
  return ops::record_tensor(tape, pick_op, dtype, Shape{rows}, out, {x.index()}, Labels{saved, classes});
}

/// A [B, classes] constant: 1 at (b, labels[b]), 0 elsewhere.  It needs no gradient.  Throws
/// InvalidArgument for a negative class count, IndexError naming the position and the label if a
/// label is outside [0, classes).
Tensor one_hot(Tape& tape, std::span<const std::int32_t> labels, std::int64_t classes, DType dtype) {
  if (classes < 0) throw InvalidArgument(fmt::format("one_hot: negative number of classes {}", classes));
  const auto rows = static_cast<std::int64_t>(labels.size());
  for (std::int64_t b = 0; b < rows; ++b)
    if (labels[b] < 0 || labels[b] >= classes)
      throw IndexError(fmt::format("one_hot: label {} at position {} is outside [0, {})", labels[b], b, classes));
  const Shape shape = make_shape({rows, classes}, "one_hot");
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    T* y = tape.allocate_value<T>(shape, "one_hot");
    std::fill_n(y, rows * classes, T(0));
    for (std::int64_t b = 0; b < rows; ++b) y[b * classes + labels[b]] = T(1);
    return y;
  });
  return ops::record_tensor(tape, one_hot_op, dtype, shape, out, {});
}

}  // namespace ad
