// Reductions: sum and mean (of all elements, or over one axis), max over one axis.
//
// Sums are accumulated in double for both element types, so a float32 sum of many terms keeps
// its accuracy; the result is stored in the tensor's type.
#include <cmath>

#include "autodiff/ops/axis.hpp"
#include "autodiff/forward.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// The shape after reducing `axis`: without it, or with size 1 when keepdims.
Shape reduced_shape(const Shape& s, std::size_t axis, bool keepdims) {
  Shape r;
  for (std::size_t k = 0; k < s.size(); ++k) {
    if (k != axis) r.push_back(s[k]);
    else if (keepdims) r.push_back(1);
  }
  return r;
}

/// The saved state of a sum or mean: the scale c (1, or 1/n for a mean) and the axis reduced.
struct Reduction {
  double scale = 1.0;
  std::int64_t axis = 0;
};

/// max's saved state: the axis, and the flat index of the chosen element of each slice (arena).
struct Argmax {
  std::int64_t axis = 0;
  const std::int64_t* where = nullptr;
};

ParamText axis_text(std::int64_t axis) { return {fmt::format("axis={}", axis)}; }
ParamText reduction_params(const Tape&, const Node& n) {
  return axis_text(static_cast<const Reduction*>(n.saved)->axis);
}
ParamText argmax_params(const Tape&, const Node& n) { return axis_text(static_cast<const Argmax*>(n.saved)->axis); }

/// d(c · Σ x)/dx_i = c: every element gets c times the output adjoint (c = 1 for sum, 1/n for mean).
void sum_all_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const T gc = static_cast<T>(c.saved<Reduction>().scale * static_cast<double>(c.grad<T>()[0]));
    const std::int64_t n = numel(c.arg_shape(0));
    for (std::int64_t i = 0; i < n; ++i) dx[i] += gc;
  });
}

/// Records c · Σ x over all elements as a rank-0 tensor.
Tensor sum_all(const Tensor& x, const OpDescriptor& desc, bool mean) {
  const char* op = desc.name;
  Tape& tape = ops::tape_of(x, op);
  const Node& nx = *tape.node(x.index());
  const std::int64_t n = numel(nx.shape);
  const double scale = 1.0 / static_cast<double>(n);  // inf for n = 0, where the mean is NaN
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* xv = static_cast<const T*>(nx.data);
    double acc = 0.0;
    for (std::int64_t i = 0; i < n; ++i) acc += static_cast<double>(xv[i]);
    T* y = tape.allocate_elements<T>(1);
    y[0] = static_cast<T>(mean ? acc / static_cast<double>(n) : acc);
    return y;
  });
  return ops::record_tensor(tape, desc, dtype, Shape{}, out, {x.index()}, Reduction{.scale = mean ? scale : 1.0});
}

/// dx[o, k, i] += c · g[o, i] for every k along the axis.
void sum_axis_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const T* g = c.grad<T>();
    const Reduction& r = c.saved<Reduction>();
    const T scale = static_cast<T>(r.scale);
    const ops::AxisSplit s = ops::split_at_axis(c.arg_shape(0), static_cast<std::size_t>(r.axis));
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t k = 0; k < s.n; ++k) {
        T* row = dx + (o * s.n + k) * s.inner;
        const T* gr = g + o * s.inner;
        for (std::int64_t i = 0; i < s.inner; ++i) row[i] += scale * gr[i];
      }
  });
}

/// Records Σ_k x[o, k, i] (or the mean) over one axis.
Tensor sum_axis(const Tensor& x, int axis, bool keepdims, const OpDescriptor& desc, bool mean) {
  const char* op = desc.name;
  Tape& tape = ops::tape_of(x, op);
  const Node& nx = *tape.node(x.index());
  const ops::AxisSplit s = ops::split_at_axis(x, nx.shape, axis, op);
  const Shape shape = reduced_shape(nx.shape, s.axis, keepdims);
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* xv = static_cast<const T*>(nx.data);
    T* y = tape.allocate_elements<T>(s.outer * s.inner);
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t i = 0; i < s.inner; ++i) {
        double acc = 0.0;
        for (std::int64_t k = 0; k < s.n; ++k) acc += static_cast<double>(xv[(o * s.n + k) * s.inner + i]);
        y[o * s.inner + i] = static_cast<T>(mean ? acc / static_cast<double>(s.n) : acc);
      }
    return y;
  });
  const double scale = mean ? 1.0 / static_cast<double>(s.n) : 1.0;
  return ops::record_tensor(tape, desc, dtype, shape, out, {x.index()},
                            Reduction{.scale = scale, .axis = static_cast<std::int64_t>(s.axis)});
}

/// The maximum's adjoint goes to the element that was chosen: dx[argmax] += g.  The flat indices
/// of the chosen elements are saved on the tape (Argmax::where), one per output element.
void max_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* dx = c.arg_grad<T>(0);
    if (!dx) return;
    const T* g = c.grad<T>();
    const std::int64_t* where = c.saved<Argmax>().where;
    const std::int64_t n = numel(c.node().shape);
    for (std::int64_t j = 0; j < n; ++j) dx[where[j]] += g[j];
  });
}

/// Tangent of y = c · Σ x: ẏ = c · Σ ẋ (accumulated in double).
void sum_all_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dx = c.arg_tangent<T>(0);
    double acc = 0.0;
    for (std::int64_t i = 0, n = numel(c.arg_shape(0)); i < n; ++i) acc += static_cast<double>(dx[i]);
    c.fresh_tangent<T>()[0] = static_cast<T>(c.saved<Reduction>().scale * acc);
  });
}

/// Tangent of a sum (or mean) over an axis: the same reduction of ẋ.
void sum_axis_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dx = c.arg_tangent<T>(0);
    T* dy = c.fresh_tangent<T>();
    const Reduction& r = c.saved<Reduction>();
    const ops::AxisSplit s = ops::split_at_axis(c.arg_shape(0), static_cast<std::size_t>(r.axis));
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t i = 0; i < s.inner; ++i) {
        double acc = 0.0;
        for (std::int64_t k = 0; k < s.n; ++k) acc += static_cast<double>(dx[(o * s.n + k) * s.inner + i]);
        dy[o * s.inner + i] = static_cast<T>(r.scale * acc);
      }
  });
}

/// Tangent of the maximum: the chosen element's tangent, ẏ[j] = ẋ[argmax j].
void max_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dx = c.arg_tangent<T>(0);
    T* dy = c.fresh_tangent<T>();
    const std::int64_t* where = c.saved<Argmax>().where;
    for (std::int64_t j = 0, n = numel(c.node().shape); j < n; ++j) dy[j] = dx[where[j]];
  });
}

// Every backward rule here reads only the adjoint and saved indices: no curvature.
constexpr OpDescriptor sum_all_op{.name = "sum", .backward = sum_all_backward, .tangent = sum_all_tangent,
                                  .curvature = no_curvature};
constexpr OpDescriptor mean_all_op{.name = "mean", .backward = sum_all_backward, .tangent = sum_all_tangent,
                                   .curvature = no_curvature};
constexpr OpDescriptor sum_axis_op{.name = "sum", .backward = sum_axis_backward, .tangent = sum_axis_tangent,
                                   .curvature = no_curvature, .params = reduction_params};
constexpr OpDescriptor mean_axis_op{.name = "mean", .backward = sum_axis_backward, .tangent = sum_axis_tangent,
                                    .curvature = no_curvature, .params = reduction_params};
constexpr OpDescriptor max_op{.name = "max", .backward = max_backward, .tangent = max_tangent,
                              .curvature = no_curvature, .params = argmax_params};

}  // namespace

/// Σ x over all elements, a rank-0 tensor.  d/dx_i = 1.  An empty tensor sums to 0.
Tensor sum(const Tensor& x) { return sum_all(x, sum_all_op, false); }

/// Σ over one axis.  d/dx[o, k, i] = 1 for output element (o, i).  Bad axis: IndexError.
Tensor sum(const Tensor& x, int axis, bool keepdims) { return sum_axis(x, axis, keepdims, sum_axis_op, false); }

/// The mean of all elements.  d/dx_i = 1/n.  An empty tensor's mean is NaN (0/0).
Tensor mean(const Tensor& x) { return sum_all(x, mean_all_op, true); }

/// The mean over one axis.  d/dx[o, k, i] = 1/n.  An axis of size 0 gives NaN.
Tensor mean(const Tensor& x, int axis, bool keepdims) { return sum_axis(x, axis, keepdims, mean_axis_op, true); }

/// The maximum over one axis.  d/dx = 1 at the first maximal element of each slice and 0 elsewhere
/// (ties go to the lowest index).  A NaN in a slice is its maximum (NaN propagates), and the
/// gradient goes to the first NaN.  An axis of size 0 has no maximum: ShapeError.
Tensor max(const Tensor& x, int axis, bool keepdims) {
  Tape& tape = ops::tape_of(x, "max");
  const Node& nx = *tape.node(x.index());
  const ops::AxisSplit s = ops::split_at_axis(x, nx.shape, axis, "max");
  if (s.n == 0)
    throw ShapeError(fmt::format("max: axis {} of {} is empty: an empty slice has no maximum", axis,
                                 ops::describe_operand(x, "x")));
  const Shape shape = reduced_shape(nx.shape, s.axis, keepdims);
  const DType dtype = nx.dtype;
  auto* where = static_cast<std::int64_t*>(tape.allocate(sizeof(std::int64_t) * static_cast<std::size_t>(s.outer * s.inner)));
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* xv = static_cast<const T*>(nx.data);
    T* y = tape.allocate_elements<T>(s.outer * s.inner);
    for (std::int64_t o = 0; o < s.outer; ++o)
      for (std::int64_t i = 0; i < s.inner; ++i) {
        std::int64_t best = o * s.n * s.inner + i;
        for (std::int64_t k = 1; k < s.n; ++k) {
          const std::int64_t at = (o * s.n + k) * s.inner + i;
          if (xv[at] > xv[best] || (std::isnan(xv[at]) && !std::isnan(xv[best]))) best = at;
        }
        where[o * s.inner + i] = best;
        y[o * s.inner + i] = xv[best];
      }
    return y;
  });
  return ops::record_tensor(tape, max_op, dtype, shape, out, {x.index()},
                            Argmax{.axis = static_cast<std::int64_t>(s.axis), .where = where});
}

}  // namespace ad
