#include "nn/backprop.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace nn::backprop {

namespace {

std::int64_t rows(const Mat& a) { return a.dim(0); }
std::int64_t cols(const Mat& a) { return a.dim(1); }

std::string shape_of(const Mat& a) { return ad::describe(a.dtype(), a.shape()); }

void require_matrix(const Mat& a, const char* what, const char* operand) {
  if (a.rank() != 2)
    throw ad::ShapeError(fmt::format("{}: {} must be a matrix [m, n], it is {}", what, operand, shape_of(a)));
}

void require_same_shape(const Mat& a, const Mat& b, const char* what, const char* na, const char* nb) {
  if (a.shape() != b.shape())
    throw ad::ShapeError(fmt::format("{}: {} is {} but {} is {}", what, na, shape_of(a), nb, shape_of(b)));
}

/// Makes `out` an array of the given shape (reusing it when it already has that shape), zeroed.
void reset(Mat& out, const ad::Shape& shape) {
  if (out.shape() != shape) out = Mat(shape);
  std::fill_n(out.data(), out.size(), 0.0);
}

double stable_sigmoid(double v) {
  if (v >= 0) return 1.0 / (1.0 + std::exp(-v));
  const double e = std::exp(v);
  return e / (1.0 + e);
}

void require_elementwise(Act f, const char* what) {
  if (f == Act::softmax)
    throw ad::InvalidArgument(fmt::format("{}: softmax is not element-wise; use the softmax form", what));
}

/// dx = dz W: ∂J_n/∂x_nj = Σ_i W_ij δ_ni = (Wᵀ δ_n)_j, the sum inside 9.19 (per sample, no 1/m).
/// Shapes are checked by the callers.
void input_backward(Mat& dx, const Mat& dz, const Mat& W) {
  const std::int64_t m = dz.dim(0), out = W.dim(0), in = W.dim(1);
  reset(dx, {m, in});
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t i = 0; i < out; ++i) {
      const double d = dz[n * out + i];
      for (std::int64_t j = 0; j < in; ++j) dx[n * in + j] += W[i * in + j] * d;
    }
}

}  // namespace

const char* name(Act f) {
  switch (f) {
    case Act::identity: return "identity";
    case Act::sigmoid: return "sigmoid";
    case Act::tanh: return "tanh";
    case Act::relu: return "relu";
    case Act::leaky_relu: return "leaky_relu";
    case Act::softmax: return "softmax";
  }
  return "?";
}

const char* name(Loss loss) {
  switch (loss) {
    case Loss::squared_error: return "squared error";
    case Loss::cross_entropy: return "cross-entropy";
    case Loss::binary_cross_entropy: return "binary cross-entropy";
  }
  return "?";
}

double apply(Act f, double v, double slope) {
  switch (f) {
    case Act::identity: return v;
    case Act::sigmoid: return stable_sigmoid(v);
    case Act::tanh: return std::tanh(v);
    case Act::relu: return v > 0.0 ? v : 0.0;
    case Act::leaky_relu: return v > 0.0 ? v : slope * v;
    case Act::softmax: break;
  }
  require_elementwise(f, "nn::backprop::apply");
  return 0.0;
}

double derivative(Act f, double v, double slope) {
  switch (f) {
    case Act::identity: return 1.0;
    case Act::sigmoid: {
      const double s = stable_sigmoid(v);
      return s * (1.0 - s);
    }
    case Act::tanh: {
      const double t = std::tanh(v);
      return 1.0 - t * t;
    }
    case Act::relu: return v > 0.0 ? 1.0 : 0.0;
    case Act::leaky_relu: return v > 0.0 ? 1.0 : slope;
    case Act::softmax: break;
  }
  require_elementwise(f, "nn::backprop::derivative");
  return 0.0;
}

// ---- layers ----------------------------------------------------------------------------------------

void linear_forward(Mat& z, const Mat& x, const Mat& W, const Mat& b) {
  constexpr const char* what = "nn::backprop::linear_forward";
  require_matrix(x, what, "x");
  require_matrix(W, what, "W");
  if (b.rank() != 1 || cols(x) != cols(W) || b.dim(0) != rows(W))
    throw ad::ShapeError(fmt::format("{}: x is {}, W is {}, b is {}: need x [m, in], W [out, in], b [out]", what,
                                     shape_of(x), shape_of(W), shape_of(b)));
  const std::int64_t m = rows(x), out = rows(W), in = cols(W);
  reset(z, {m, out});
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t i = 0; i < out; ++i) {
      double s = b[i];
      for (std::int64_t j = 0; j < in; ++j) s += W[i * in + j] * x[n * in + j];  // z_i = Σ_j W_ij x_j + b_i
      z[n * out + i] = s;
    }
}

void linear_backward(Mat& dW, Mat& db, Mat* dx, const Mat& dz, const Mat& x, const Mat& W) {
  constexpr const char* what = "nn::backprop::linear_backward";
  require_matrix(dz, what, "dz");
  require_matrix(x, what, "x");
  require_matrix(W, what, "W");
  if (rows(dz) != rows(x) || cols(dz) != rows(W) || cols(x) != cols(W))
    throw ad::ShapeError(fmt::format("{}: dz is {}, x is {}, W is {}: need dz [m, out], x [m, in], W [out, in]",
                                     what, shape_of(dz), shape_of(x), shape_of(W)));
  require_same_shape(dW, W, what, "dW", "W");
  if (db.rank() != 1 || db.dim(0) != rows(W))
    throw ad::ShapeError(fmt::format("{}: db is {}, W is {}", what, shape_of(db), shape_of(W)));
  const std::int64_t m = rows(x), out = rows(W), in = cols(W);
  const double inv_m = 1.0 / static_cast<double>(m);
  // 9.21: ∂J_n/∂W_ij = δ_ni x_nj and ∂J_n/∂b_i = δ_ni, averaged over the m samples.
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t i = 0; i < out; ++i) {
      const double d = dz[n * out + i] * inv_m;
      db[i] += d;
      for (std::int64_t j = 0; j < in; ++j) dW[i * in + j] += d * x[n * in + j];
    }
  if (dx != nullptr) input_backward(*dx, dz, W);
}

void weight_decay_backward(Mat& dW, const Mat& W, double lambda) {
  require_same_shape(dW, W, "nn::backprop::weight_decay_backward", "dW", "W");
  for (std::int64_t k = 0; k < W.size(); ++k) dW[k] += lambda * W[k];  // ∂/∂W (λ/2)‖W‖² = λW
}

void activation_forward(Mat& a, const Mat& z, Act f, double slope) {
  require_matrix(z, "nn::backprop::activation_forward", "z");
  const std::int64_t m = rows(z), s = cols(z);
  reset(a, z.shape());
  if (f != Act::softmax) {
    for (std::int64_t k = 0; k < z.size(); ++k) a[k] = apply(f, z[k], slope);
    return;
  }
  // softmax: a_i = e^{z_i} / Σ_k e^{z_k}, computed with the row maximum subtracted.
  for (std::int64_t n = 0; n < m; ++n) {
    const double* zr = z.data() + n * s;
    double* ar = a.data() + n * s;
    const double zmax = *std::max_element(zr, zr + s);
    double total = 0.0;
    for (std::int64_t i = 0; i < s; ++i) total += ar[i] = std::exp(zr[i] - zmax);
    for (std::int64_t i = 0; i < s; ++i) ar[i] /= total;
  }
}

void activation_backward(Mat& dz, const Mat& da, const Mat& z, const Mat& a, Act f, double slope) {
  constexpr const char* what = "nn::backprop::activation_backward";
  require_matrix(z, what, "z");
  require_same_shape(da, z, what, "da", "z");
  require_same_shape(a, z, what, "a", "z");
  const std::int64_t m = rows(z), s = cols(z);
  reset(dz, z.shape());
  if (f != Act::softmax) {
    for (std::int64_t k = 0; k < z.size(); ++k) dz[k] = da[k] * derivative(f, z[k], slope);  // ∂a_i/∂z_i = f′(z_i)
    return;
  }
  // ∂a_k/∂z_i = a_k (1[k=i] − a_i), so dz_i = Σ_k da_k a_k (1[k=i] − a_i) = a_i (da_i − Σ_k a_k da_k).
  for (std::int64_t n = 0; n < m; ++n) {
    const double* ar = a.data() + n * s;
    const double* gr = da.data() + n * s;
    double dot = 0.0;
    for (std::int64_t k = 0; k < s; ++k) dot += ar[k] * gr[k];
    for (std::int64_t i = 0; i < s; ++i) dz[n * s + i] = ar[i] * (gr[i] - dot);
  }
}

// ---- loss and output residuals ---------------------------------------------------------------------

double loss_forward(const Mat& a, const Mat& y, Loss loss) {
  constexpr const char* what = "nn::backprop::loss_forward";
  require_matrix(a, what, "a");
  require_same_shape(a, y, what, "a", "y");
  double total = 0.0;
  for (std::int64_t k = 0; k < a.size(); ++k) {
    switch (loss) {
      case Loss::squared_error: total += 0.5 * (y[k] - a[k]) * (y[k] - a[k]); break;  // 9.22
      case Loss::cross_entropy:                                                    // 9.24; 0·ln 0 counts as 0
        if (y[k] != 0.0) total -= y[k] * std::log(a[k]);
        break;
      case Loss::binary_cross_entropy:
        if (y[k] != 0.0) total -= y[k] * std::log(a[k]);
        if (y[k] != 1.0) total -= (1.0 - y[k]) * std::log1p(-a[k]);
        break;
    }
  }
  return total / static_cast<double>(rows(a));
}

void squared_error_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope) {
  constexpr const char* what = "nn::backprop::squared_error_delta";
  require_elementwise(f, what);
  require_same_shape(a, z, what, "a", "z");
  require_same_shape(y, z, what, "y", "z");
  reset(delta, z.shape());
  // 9.23: ∂J/∂a_i = −(y_i − a_i) and ∂a_i/∂z_i = f′(z_i).
  for (std::int64_t k = 0; k < z.size(); ++k) delta[k] = -(y[k] - a[k]) * derivative(f, z[k], slope);
}

void squared_error_softmax_delta(Mat& delta, const Mat& a, const Mat& y) {
  constexpr const char* what = "nn::backprop::squared_error_softmax_delta";
  require_matrix(a, what, "a");
  require_same_shape(y, a, what, "y", "a");
  Mat da(a.shape());
  for (std::int64_t k = 0; k < a.size(); ++k) da[k] = a[k] - y[k];  // ∂J/∂a = a − y
  activation_backward(delta, da, a, a, Act::softmax);              // J_softmaxᵀ (a − y); z is not read
}

void cross_entropy_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope) {
  constexpr const char* what = "nn::backprop::cross_entropy_delta";
  require_elementwise(f, what);
  require_same_shape(a, z, what, "a", "z");
  require_same_shape(y, z, what, "y", "z");
  reset(delta, z.shape());
  // 9.26: ∂J/∂a_i = −y_i / a_i and ∂a_i/∂z_i = f′(z_i); a term with y_i = 0 contributes nothing.
  for (std::int64_t k = 0; k < z.size(); ++k)
    if (y[k] != 0.0) delta[k] = -y[k] * derivative(f, z[k], slope) / apply(f, z[k], slope);
}

void softmax_cross_entropy_delta(Mat& delta, const Mat& a, const Mat& y) {
  constexpr const char* what = "nn::backprop::softmax_cross_entropy_delta";
  require_matrix(a, what, "a");
  require_same_shape(y, a, what, "y", "a");
  const std::int64_t m = rows(a), s = cols(a);
  reset(delta, a.shape());
  // Corrected 9.27: δ_i = Σ_k (−y_k / a_k) a_k (1[k=i] − a_i) = −y_i + a_i Σ_k y_k.
  for (std::int64_t n = 0; n < m; ++n) {
    double ysum = 0.0;
    for (std::int64_t k = 0; k < s; ++k) ysum += y[n * s + k];
    for (std::int64_t i = 0; i < s; ++i) delta[n * s + i] = a[n * s + i] * ysum - y[n * s + i];
  }
}

void binary_cross_entropy_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope) {
  constexpr const char* what = "nn::backprop::binary_cross_entropy_delta";
  require_elementwise(f, what);
  require_same_shape(a, z, what, "a", "z");
  require_same_shape(y, z, what, "y", "z");
  reset(delta, z.shape());
  for (std::int64_t k = 0; k < z.size(); ++k) {
    if (f == Act::sigmoid) {  // f′ = a(1 − a) cancels the denominator exactly
      delta[k] = a[k] - y[k];
      continue;
    }
    // ∂J/∂a_i = −y_i/a_i + (1 − y_i)/(1 − a_i) = (a_i − y_i) / (a_i (1 − a_i)), times f′(z_i).
    delta[k] = (a[k] - y[k]) / (a[k] * (1.0 - a[k])) * derivative(f, z[k], slope);
  }
}

void output_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, Loss loss, double slope) {
  switch (loss) {
    case Loss::squared_error:
      if (f == Act::softmax) return squared_error_softmax_delta(delta, a, y);
      return squared_error_delta(delta, z, a, y, f, slope);
    case Loss::cross_entropy:
      if (f == Act::softmax) return softmax_cross_entropy_delta(delta, a, y);
      return cross_entropy_delta(delta, z, a, y, f, slope);
    case Loss::binary_cross_entropy:
      if (f == Act::softmax)
        throw ad::InvalidArgument("nn::backprop::output_delta: binary cross-entropy with softmax outputs is not derived");
      return binary_cross_entropy_delta(delta, z, a, y, f, slope);
  }
}

void softmax_cross_entropy_hessian(Mat& H, const Mat& x, const Mat& a) {
  const std::int64_t m = a.shape()[0], K = a.shape()[1], s = x.shape()[1];
  if (x.shape()[0] != m)
    throw ad::ShapeError(fmt::format("softmax_cross_entropy_hessian: x is {} but a is {}", ad::to_string(x.shape()),
                                     ad::to_string(a.shape())));
  const std::int64_t n = K * s;
  H = Mat(ad::Shape{n, n});
  for (std::int64_t r = 0; r < m; ++r)
    for (std::int64_t i = 0; i < K; ++i)
      for (std::int64_t k = 0; k < K; ++k) {
        const double ai = a(r, i), ak = a(r, k);
        const double c = ((i == k ? ai : 0.0) - ai * ak) / static_cast<double>(m);  // (diag(a) − a aᵀ)_ik / m
        for (std::int64_t j = 0; j < s; ++j)
          for (std::int64_t l = 0; l < s; ++l) H(i * s + j, k * s + l) += c * x(r, j) * x(r, l);
      }
}

void delta_recursion(Mat& delta, const Mat& delta_next, const Mat& W_next, const Mat& z, const Mat& a, Act f,
                     double slope) {
  constexpr const char* what = "nn::backprop::delta_recursion";
  require_matrix(delta_next, what, "delta_next");
  require_matrix(W_next, what, "W_next");
  require_matrix(z, what, "z");
  if (cols(delta_next) != rows(W_next) || cols(W_next) != cols(z) || rows(delta_next) != rows(z))
    throw ad::ShapeError(fmt::format("{}: delta_next is {}, W_next is {}, z is {}: need [m, s_l+1], [s_l+1, s_l], "
                                     "[m, s_l]", what, shape_of(delta_next), shape_of(W_next), shape_of(z)));
  require_same_shape(a, z, what, "a", "z");
  Mat da;
  // (W^(l+1))ᵀ δ^(l+1), per sample: the gradient reaching a^(l) = x^(l+1) ...
  input_backward(da, delta_next, W_next);
  // ... times f′(z^(l)) element by element (for a softmax hidden layer, its Jacobian).
  activation_backward(delta, da, z, a, f, slope);
}

double dz_next_dz(const Mat& W_next, const Mat& z, std::int64_t n, std::int64_t j, std::int64_t i, Act f,
                  double slope) {
  // z_j^(l+1) = Σ_k W_jk^(l+1) f(z_k^(l)) + b_j^(l+1): only the term k = i depends on z_i^(l).
  return W_next(j, i) * derivative(f, z(n, i), slope);
}

namespace seed_literal {

void delta_recursion(Mat& delta, const Mat& delta_next, const Mat& W_printed, const Mat& z, Act f, double slope) {
  constexpr const char* what = "nn::backprop::seed_literal::delta_recursion";
  require_matrix(delta_next, what, "delta_next");
  require_matrix(W_printed, what, "W");
  require_matrix(z, what, "z");
  require_elementwise(f, what);
  const std::int64_t m = rows(z), s = cols(z), s_next = cols(delta_next);
  if (rows(delta_next) != m)
    throw ad::ShapeError(fmt::format("{}: delta_next is {} but z is {}", what, shape_of(delta_next), shape_of(z)));
  if (rows(W_printed) < s || cols(W_printed) < s_next)
    throw ad::ShapeError(fmt::format("{}: 9.19 as printed reads W_ij for i < s_l = {} and j < s_l+1 = {}, "
                                     "but the matrix is {}: those weights do not exist", what, s, s_next,
                                     shape_of(W_printed)));
  reset(delta, z.shape());
  const std::int64_t wc = cols(W_printed);
  for (std::int64_t n = 0; n < m; ++n)
    for (std::int64_t i = 0; i < s; ++i) {
      double sum = 0.0;
      for (std::int64_t j = 0; j < s_next; ++j) sum += W_printed[i * wc + j] * delta_next[n * s_next + j];
      delta[n * s + i] = sum * derivative(f, z[n * s + i], slope);
    }
}

double dz_next_dz(const Mat& W_printed, const Mat& z, std::int64_t n, std::int64_t j, std::int64_t i, Act f,
                  double slope) {
  if (W_printed.rank() != 2 || i >= rows(W_printed) || j >= cols(W_printed))
    throw ad::ShapeError(fmt::format("nn::backprop::seed_literal::dz_next_dz: 9.18 as printed reads W_ij with "
                                     "i = {}, j = {}, but the matrix is {}", i, j, shape_of(W_printed)));
  return W_printed(i, j) * derivative(f, z(n, i), slope);
}

void softmax_cross_entropy_delta(Mat& delta, const Mat& a, const Mat& y) {
  constexpr const char* what = "nn::backprop::seed_literal::softmax_cross_entropy_delta";
  require_matrix(a, what, "a");
  require_same_shape(y, a, what, "y", "a");
  reset(delta, a.shape());
  // 9.26 with "f′ = f(1 − f)": −y_i a_i (1 − a_i) / a_i = y_i (a_i − 1); 9.27 for one-hot y.
  for (std::int64_t k = 0; k < a.size(); ++k) delta[k] = y[k] == 0.0 ? 0.0 : y[k] * (a[k] - 1.0);
}

}  // namespace seed_literal

// ---- a whole network -------------------------------------------------------------------------------

std::int64_t Network::width(std::int64_t l) const {
  if (l < 0 || l > layers()) throw ad::IndexError(fmt::format("nn::backprop::Network::width: no layer {}", l));
  return l == 0 ? W.at(0).dim(1) : W.at(static_cast<std::size_t>(l - 1)).dim(0);
}

void check(const Network& net, const Mat& x, const Mat& y, const char* what) {
  if (net.W.empty() || net.W.size() != net.b.size())
    throw ad::ShapeError(fmt::format("{}: the network has {} weight matrices and {} bias vectors (need L >= 1 of "
                                     "each)", what, net.W.size(), net.b.size()));
  for (std::size_t k = 0; k < net.W.size(); ++k) {
    const Mat &W = net.W[k], &b = net.b[k];
    const bool chained = k == 0 || (net.W[k - 1].rank() == 2 && W.rank() == 2 && cols(W) == rows(net.W[k - 1]));
    if (W.rank() != 2 || b.rank() != 1 || b.dim(0) != rows(W) || !chained)
      throw ad::ShapeError(fmt::format("{}: layer {} has W {} and b {}{}", what, k + 1, shape_of(W), shape_of(b),
                                       k ? fmt::format(" after W {}", shape_of(net.W[k - 1])) : ""));
  }
  require_matrix(x, what, "x");
  require_matrix(y, what, "y");
  if (cols(x) != net.width(0) || rows(y) != rows(x) || cols(y) != net.width(net.layers()) || rows(x) == 0)
    throw ad::ShapeError(fmt::format("{}: x is {} and y is {} for a network {} -> {}", what, shape_of(x),
                                     shape_of(y), net.width(0), net.width(net.layers())));
}

Pass forward(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda) {
  check(net, x, y, "nn::backprop::forward");
  Pass p;
  p.layers.resize(net.W.size());
  const Mat* input = &x;
  for (std::int64_t l = 1; l <= net.layers(); ++l) {
    Layer& L = p.layers[static_cast<std::size_t>(l - 1)];
    linear_forward(L.z, *input, net.W[static_cast<std::size_t>(l - 1)], net.b[static_cast<std::size_t>(l - 1)]);
    activation_forward(L.a, L.z, net.activation(l), net.slope);
    input = &L.a;  // x^(l+1) = a^(l)
  }
  p.data_loss = loss_forward(p.layers.back().a, y, loss);
  for (const Mat& W : net.W)
    for (double w : W.values()) p.penalty += 0.5 * lambda * w * w;
  p.loss = p.data_loss + p.penalty;
  return p;
}

double loss_value(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda) {
  return forward(net, x, y, loss, lambda).loss;
}

Pass forward_backward(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda, Formulas formulas) {
  Pass p = forward(net, x, y, loss, lambda);
  const std::int64_t L = net.layers();
  Layer& out = p.layers.back();
  // δ^(L): 9.23 / 9.26 / corrected 9.27, or the seed's 9.27 as printed.
  if (formulas.printed_9_27 && loss == Loss::cross_entropy && net.output == Act::softmax)
    seed_literal::softmax_cross_entropy_delta(out.delta, out.a, y);
  else
    output_delta(out.delta, out.z, out.a, y, net.output, loss, net.slope);
  // δ^(L-1), …, δ^(1): 9.19.
  for (std::int64_t l = L - 1; l >= 1; --l) {
    Layer& cur = p.layers[static_cast<std::size_t>(l - 1)];
    const Layer& next = p.layers[static_cast<std::size_t>(l)];
    if (formulas.printed_9_19 && net.hidden != Act::softmax)
      seed_literal::delta_recursion(cur.delta, next.delta, net.W[static_cast<std::size_t>(l - 1)], cur.z, net.hidden,
                                    net.slope);
    else
      delta_recursion(cur.delta, next.delta, net.W[static_cast<std::size_t>(l)], cur.z, cur.a, net.hidden, net.slope);
  }
  // ∂J/∂W^(l), ∂J/∂b^(l): 9.21 with the batch mean, plus λ W^(l).
  for (std::int64_t l = 1; l <= L; ++l) {
    Layer& cur = p.layers[static_cast<std::size_t>(l - 1)];
    const Mat& W = net.W[static_cast<std::size_t>(l - 1)];
    const Mat& input = l == 1 ? x : p.layers[static_cast<std::size_t>(l - 2)].a;
    cur.dW = Mat(W.shape());
    cur.db = Mat(ad::Shape{rows(W)});
    linear_backward(cur.dW, cur.db, nullptr, cur.delta, input, W);
    weight_decay_backward(cur.dW, W, lambda);
  }
  return p;
}

void gradient_descent_step(Network& net, const Pass& pass, double alpha) {
  if (pass.layers.size() != net.W.size())
    throw ad::ShapeError(fmt::format("nn::backprop::gradient_descent_step: the pass has {} layers, the network {}",
                                     pass.layers.size(), net.W.size()));
  for (std::size_t k = 0; k < net.W.size(); ++k) {
    const Layer& g = pass.layers[k];
    require_same_shape(g.dW, net.W[k], "nn::backprop::gradient_descent_step", "dW", "W");
    require_same_shape(g.db, net.b[k], "nn::backprop::gradient_descent_step", "db", "b");
    for (std::int64_t i = 0; i < net.W[k].size(); ++i) net.W[k][i] -= alpha * g.dW[i];  // 9.14
    for (std::int64_t i = 0; i < net.b[k].size(); ++i) net.b[k][i] -= alpha * g.db[i];  // 9.15
  }
}

}  // namespace nn::backprop
