// softmax and log_softmax over one axis, with the slice's maximum subtracted first so that no
// exponential overflows: every exponent is ≤ 0, and the largest term of each sum is exactly 1.
// Sums are accumulated in double for both element types.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autodiff/ops/axis.hpp"
#include "autodiff/forward.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// For each slice (o, ·, i) of x along the axis, calls f(m, log Σ_k exp(x_k - m), o, i), where m is
/// the slice's maximum.  A slice of only -inf (or an empty one) takes m = 0, so x - m stays -inf
/// rather than NaN; a +inf element makes its slice NaN.  With `prob`, also writes softmax(x) there
/// (in double, laid out like x) from the same exponentials.
template <Element T, class F>
void for_each_slice(const T* x, const ops::AxisSplit& s, F&& f, double* prob = nullptr) {
  for (std::int64_t o = 0; o < s.outer; ++o)
    for (std::int64_t i = 0; i < s.inner; ++i) {
      const std::int64_t first = o * s.n * s.inner + i;
      const T* xs = x + first;
      double m = -std::numeric_limits<double>::infinity();
      for (std::int64_t k = 0; k < s.n; ++k) m = std::max(m, static_cast<double>(xs[k * s.inner]));
      if (m == -std::numeric_limits<double>::infinity()) m = 0.0;
      double z = 0.0;
      for (std::int64_t k = 0; k < s.n; ++k) {
        const double e = std::exp(static_cast<double>(xs[k * s.inner]) - m);
        if (prob) prob[first + k * s.inner] = e;
        z += e;
      }
      if (prob)
        for (std::int64_t k = 0; k < s.n; ++k) prob[first + k * s.inner] /= z;
      f(m, std::log(z), o, i);
    }
}

/// softmax's and log_softmax's saved state: the axis.
struct Axis {
  std::int64_t axis = 0;
};

ParamText axis_params(const Tape&, const Node& n) { return {fmt::format("axis={}", static_cast<const Axis*>(n.saved)->axis)}; }

/// Records softmax (log = false) or log_softmax (log = true) of x along `axis`.
Tensor record_softmax(const Tensor& x, int axis, bool log, const OpDescriptor& desc) {
  const char* op = desc.name;
  Tape& tape = ops::tape_of(x, op);
  const Node& nx = *tape.node(x.index());
  const ops::AxisSplit s = ops::split_at_axis(x, nx.shape, axis, op);
  const Shape shape = nx.shape;
  const DType dtype = nx.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* xv = static_cast<const T*>(nx.data);
    T* y = tape.allocate_elements<T>(numel(shape));
    if (!log) {
      // softmax: the exponentials the slice sums are made of, divided by their sum, are the values
      // (in double, then rounded once to T), so each exponential is computed once.
      std::vector<double> p(static_cast<std::size_t>(numel(shape)));
      for_each_slice(xv, s, [](double, double, std::int64_t, std::int64_t) {}, p.data());
      for (std::size_t k = 0; k < p.size(); ++k) y[k] = static_cast<T>(p[k]);
      return y;
    }
    for_each_slice(xv, s, [&](double m, double log_z, std::int64_t o, std::int64_t i) {
      const std::int64_t first = o * s.n * s.inner + i;
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = first + k * s.inner;
        y[at] = static_cast<T>(static_cast<double>(xv[at]) - m - log_z);
      }
    });
    return y;
  });
  return ops::record_tensor(tape, desc, dtype, shape, out, {x.index()}, Axis{static_cast<std::int64_t>(s.axis)});
}

/// Applies f(y, g, dx, s) to each slice's value, adjoint and argument adjoint (pointers to the
/// slice's first element; consecutive elements are s.inner apart).
template <Element T, class F>
void backward_slices(BackwardContext& c, F&& f) {
  T* dx = c.arg_grad<T>(0);
  if (!dx) return;
  const T* y = c.value<T>();
  const T* g = c.grad<T>();
  const ops::AxisSplit s = ops::split_at_axis(c.node().shape, static_cast<std::size_t>(c.saved<Axis>().axis));
  for (std::int64_t o = 0; o < s.outer; ++o)
    for (std::int64_t i = 0; i < s.inner; ++i) {
      const std::int64_t first = o * s.n * s.inner + i;
      f(y + first, g + first, dx + first, s);
    }
}

/// softmax: ∂y_j/∂x_k = y_j (δ_jk - y_k), so g_x = y ⊙ (g - Σ_j g_j y_j) along each slice.
void softmax_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    backward_slices<T>(c, [](const T* y, const T* g, T* dx, const ops::AxisSplit& s) {
      double gy = 0.0;
      for (std::int64_t k = 0; k < s.n; ++k) gy += static_cast<double>(g[k * s.inner]) * static_cast<double>(y[k * s.inner]);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = k * s.inner;
        dx[at] += static_cast<T>(static_cast<double>(y[at]) * (static_cast<double>(g[at]) - gy));
      }
    });
  });
}

/// log_softmax: ∂y_j/∂x_k = δ_jk - softmax_k, so g_x = g - softmax ⊙ Σ_j g_j, with softmax = e^y.
void log_softmax_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    backward_slices<T>(c, [](const T* y, const T* g, T* dx, const ops::AxisSplit& s) {
      double gsum = 0.0;
      for (std::int64_t k = 0; k < s.n; ++k) gsum += static_cast<double>(g[k * s.inner]);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = k * s.inner;
        dx[at] += static_cast<T>(static_cast<double>(g[at]) - std::exp(static_cast<double>(y[at])) * gsum);
      }
    });
  });
}

/// Calls f(first, s) for each slice along the saved axis (first: its first element's flat index).
template <class F>
void each_slice(const Shape& shape, std::int64_t axis, F&& f) {
  const ops::AxisSplit s = ops::split_at_axis(shape, static_cast<std::size_t>(axis));
  for (std::int64_t o = 0; o < s.outer; ++o)
    for (std::int64_t i = 0; i < s.inner; ++i) f(o * s.n * s.inner + i, s);
}

/// Σ_k a[k] b[k] along a slice, in double (b null: Σ a; a given as e^y when exp_a).
template <Element T>
double slice_dot(const T* a, const T* b, const ops::AxisSplit& s, bool exp_a = false) {
  double acc = 0.0;
  for (std::int64_t k = 0; k < s.n; ++k) {
    const double av = exp_a ? std::exp(static_cast<double>(a[k * s.inner])) : static_cast<double>(a[k * s.inner]);
    acc += b ? av * static_cast<double>(b[k * s.inner]) : av;
  }
  return acc;
}

/// softmax tangent: ẏ = y ⊙ (ẋ - Σ_k y_k ẋ_k) along each slice.
void softmax_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* y = c.value<T>();
    const T* dx = c.arg_tangent<T>(0);
    T* dy = c.fresh_tangent<T>();
    each_slice(c.node().shape, c.saved<Axis>().axis, [&](std::int64_t first, const ops::AxisSplit& s) {
      const double m = slice_dot(y + first, dx + first, s);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = first + k * s.inner;
        dy[at] = static_cast<T>(static_cast<double>(y[at]) * (static_cast<double>(dx[at]) - m));
      }
    });
  });
}

/// log_softmax tangent: ẏ = ẋ - Σ_k softmax_k ẋ_k, softmax = e^y.
void log_softmax_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* y = c.value<T>();
    const T* dx = c.arg_tangent<T>(0);
    T* dy = c.fresh_tangent<T>();
    each_slice(c.node().shape, c.saved<Axis>().axis, [&](std::int64_t first, const ops::AxisSplit& s) {
      const double m = slice_dot(y + first, dx + first, s, true);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = first + k * s.inner;
        dy[at] = static_cast<T>(static_cast<double>(dx[at]) - m);
      }
    });
  });
}

/// softmax curvature: dx = y ⊙ (g - Σ g y) moves, with g fixed, by ẏ ⊙ (g - Σ g y) - y ⊙ Σ g ẏ.
void softmax_curvature(CurvatureContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* r = c.arg_rgrad<T>(0);
    const T* dy = c.tangent<T>();
    if (!r || !dy) return;
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    each_slice(c.node().shape, c.saved<Axis>().axis, [&](std::int64_t first, const ops::AxisSplit& s) {
      const double gy = slice_dot(g + first, y + first, s), gdy = slice_dot(g + first, dy + first, s);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = first + k * s.inner;
        r[at] += static_cast<T>(static_cast<double>(dy[at]) * (static_cast<double>(g[at]) - gy) -
                                static_cast<double>(y[at]) * gdy);
      }
    });
  });
}

/// log_softmax curvature: dx = g - e^y Σ g moves, with g fixed, by -e^y ẏ Σ g.
void log_softmax_curvature(CurvatureContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* r = c.arg_rgrad<T>(0);
    const T* dy = c.tangent<T>();
    if (!r || !dy) return;
    const T* y = c.value<T>();
    const T* g = c.grad<T>();
    each_slice(c.node().shape, c.saved<Axis>().axis, [&](std::int64_t first, const ops::AxisSplit& s) {
      const double gsum = slice_dot(g + first, static_cast<const T*>(nullptr), s);
      for (std::int64_t k = 0; k < s.n; ++k) {
        const std::int64_t at = first + k * s.inner;
        r[at] -= static_cast<T>(std::exp(static_cast<double>(y[at])) * static_cast<double>(dy[at]) * gsum);
      }
    });
  });
}

constexpr OpDescriptor softmax_op{.name = "softmax", .backward = softmax_backward, .tangent = softmax_tangent,
                                  .curvature = softmax_curvature, .params = axis_params};
constexpr OpDescriptor log_softmax_op{.name = "log_softmax", .backward = log_softmax_backward,
                                      .tangent = log_softmax_tangent, .curvature = log_softmax_curvature,
                                      .params = axis_params};

/// softmax_cross_entropy's saved state: the labels and softmax(z) in double, both on the tape.  The
/// forward pass computes the exponentials anyway; keeping p spares the backward, tangent and
/// curvature rules from computing them again.
struct CrossEntropyState {
  const std::int32_t* labels = nullptr;
  const double* prob = nullptr;  // [rows, classes]
  std::int64_t rows = 0, classes = 0;
};

/// J = (1/B) Σ_b (lse_b − z[b, y_b]), so ∂J/∂z[b, k] = (softmax(z)[b, k] − 1[k = y_b]) / B:
/// the seed's δ^(L) = a − y per sample, divided by the batch size.
void softmax_cross_entropy_backward(BackwardContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    bool fresh = false;
    T* dz = c.arg_grad_or_fresh<T>(0, fresh);
    if (!dz) return;
    const auto& s = c.saved<CrossEntropyState>();
    const double g = static_cast<double>(c.grad<T>()[0]) / static_cast<double>(s.rows);
    for (std::int64_t b = 0; b < s.rows; ++b) {
      const std::int64_t row = b * s.classes;
      const double* p = s.prob + row;
      ops::accumulate(dz + row, fresh, s.classes,
                      [&](std::int64_t k) { return static_cast<T>(g * (p[k] - (k == s.labels[b] ? 1.0 : 0.0))); });
    }
  });
}

/// Forward mode: J̇ = (1/B) Σ_b (Σ_k p_bk ż_bk − ż_{b, y_b}), p = softmax(z).
void softmax_cross_entropy_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dz = c.arg_tangent<T>(0);
    if (!dz) return;
    const auto& s = c.saved<CrossEntropyState>();
    double total = 0.0;
    for (std::int64_t b = 0; b < s.rows; ++b) {
      const std::int64_t row = b * s.classes;
      for (std::int64_t k = 0; k < s.classes; ++k) total += s.prob[row + k] * static_cast<double>(dz[row + k]);
      total -= static_cast<double>(dz[row + s.labels[b]]);
    }
    c.fresh_tangent<T>()[0] = static_cast<T>(total / static_cast<double>(s.rows));
  });
}

/// Curvature: the rule's dz = (g/B)(p − onehot) moves, with g fixed, by (g/B) ṗ, where
/// ṗ_k = p_k (ż_k − Σ_j p_j ż_j) along each row (softmax's Jacobian applied to ż).
void softmax_cross_entropy_curvature(CurvatureContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    T* r = c.arg_rgrad<T>(0);
    const T* dz = c.arg_tangent<T>(0);
    const T* g = c.grad<T>();
    if (!r || !dz || !g) return;
    const auto& s = c.saved<CrossEntropyState>();
    const double scale = static_cast<double>(g[0]) / static_cast<double>(s.rows);
    for (std::int64_t b = 0; b < s.rows; ++b) {
      const std::int64_t row = b * s.classes;
      const double* pb = s.prob + row;
      double mean_dz = 0.0;
      for (std::int64_t k = 0; k < s.classes; ++k) mean_dz += pb[k] * static_cast<double>(dz[row + k]);
      for (std::int64_t k = 0; k < s.classes; ++k)
        r[row + k] += static_cast<T>(scale * pb[k] * (static_cast<double>(dz[row + k]) - mean_dz));
    }
  });
}

ParamText labels_params(const Tape&, const Node& n) {
  const auto* s = static_cast<const CrossEntropyState*>(n.saved);
  return {fmt::format("{} label{}", s->rows, s->rows == 1 ? "" : "s")};
}

/// Step-through: element [b, k] of the logits' adjoint is the factor (softmax(z)[b, k] − 1[k = y_b]) / B
/// times the loss's adjoint.
void softmax_cross_entropy_explain(const ExplainQuery& q, Explanation& out) {
  const auto& s = *static_cast<const CrossEntropyState*>(q.node.saved);
  const std::int64_t b = q.element / s.classes, k = q.element % s.classes;
  const double p = s.prob[q.element];
  out.products.push_back(
      {.factor = (p - (k == s.labels[b] ? 1.0 : 0.0)) / static_cast<double>(s.rows), .adjoint_element = 0});
  out.note = fmt::format("(softmax − onehot) / B at row {}, label {}", b, s.labels[b]);
}

constexpr OpDescriptor softmax_cross_entropy_op{.name = "softmax_cross_entropy",
                                                .backward = softmax_cross_entropy_backward,
                                                .tangent = softmax_cross_entropy_tangent,
                                                .curvature = softmax_cross_entropy_curvature,
                                                .explain = softmax_cross_entropy_explain,
                                                .params = labels_params};

}  // namespace

/// y = exp(x - m) / Σ exp(x - m) along `axis` (m the slice maximum).  Finite for any finite x;
/// values in [0, 1] summing to 1.  Bad axis: IndexError.
Tensor softmax(const Tensor& x, int axis) { return record_softmax(x, axis, false, softmax_op); }

/// y = x - m - log Σ exp(x - m) along `axis`: finite for any finite x (a very negative logit
/// gives a very negative y, never -inf from underflow).  Bad axis: IndexError.
Tensor log_softmax(const Tensor& x, int axis) {
  return record_softmax(x, axis, true, log_softmax_op);
}

Tensor softmax_cross_entropy(const Tensor& z, std::span<const std::int32_t> labels) {
  constexpr const char* op = "softmax_cross_entropy";
  Tape& tape = ops::tape_of(z, op);
  const Node& nz = *tape.node(z.index());
  if (nz.shape.size() != 2 || nz.shape[0] == 0)
    throw ShapeError(fmt::format("{}: expected [B, C] logits with B > 0, {}", op, ops::describe_operand(z, "logits")));
  const std::int64_t rows = nz.shape[0], classes = nz.shape[1];
  if (static_cast<std::int64_t>(labels.size()) != rows)
    throw ShapeError(fmt::format("{}: {} labels given for {} ({} rows)", op, labels.size(),
                                 ops::describe_operand(z, "logits"), rows));
  for (std::int64_t b = 0; b < rows; ++b)
    if (labels[static_cast<std::size_t>(b)] < 0 || labels[static_cast<std::size_t>(b)] >= classes)
      throw IndexError(fmt::format("{}: label {} in row {} is outside [0, {}) for {}", op,
                                   labels[static_cast<std::size_t>(b)], b, classes, ops::describe_operand(z, "logits")));
  auto* kept = static_cast<std::int32_t*>(tape.allocate(sizeof(std::int32_t) * labels.size()));
  std::copy(labels.begin(), labels.end(), kept);
  double* prob = tape.allocate_elements<double>(rows * classes);
  const DType dtype = nz.dtype;
  void* out = dispatch(dtype, [&]<class T>() -> void* {
    const T* zv = static_cast<const T*>(nz.data);
    double total = 0.0;
    for_each_slice(
        zv, ops::split_at_axis(nz.shape, 1),
        [&](double m, double log_z, std::int64_t b, std::int64_t) {
          total += m + log_z - static_cast<double>(zv[b * classes + kept[b]]);
        },
        prob);
    T* y = tape.allocate_elements<T>(1);
    // A logit of ±inf or NaN makes J NaN; x86 makes inf − inf a NaN with the sign bit set, which
    // prints as "-nan": give it the plain NaN that -mean(pick(log_softmax(z))) gives.
    const double J = total / static_cast<double>(rows);
    y[0] = static_cast<T>(std::isnan(J) ? std::numeric_limits<double>::quiet_NaN() : J);
    return y;
  });
  return ops::record_tensor(tape, softmax_cross_entropy_op, dtype, Shape{}, out, {z.index()},
                            CrossEntropyState{kept, prob, rows, classes});
}

}  // namespace ad
