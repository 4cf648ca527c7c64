// The seed's backpropagation formulas, written out by hand: no tape, plain loops over arrays.
//
// This module is the reference the tests hold the tape against.  Each function is one step of the
// derivation in docs/backprop.md and carries the seed's equation number.  Functions come in
// forward/backward pairs; a backward function takes its gradient outputs first (prefix d), then
// the upstream gradient, then what the forward pass saved.
//
// Notation and shapes (the seed's, with a batch of m samples stored one per row):
//   x^(l)  [m, s_{l-1}]  the input of layer l; x^(1) is the data, x^(l+1) = a^(l)
//   W^(l)  [s_l, s_{l-1}]   b^(l)  [s_l]
//   z^(l)  [m, s_l]      z^(l) = x^(l) W^(l)ᵀ + b^(l): row n is W^(l) x_n^(l) + b^(l)
//   a^(l)  [m, s_l]      a^(l) = f(z^(l))
//   δ^(l)  [m, s_l]      row n is δ_n^(l) = ∂J_n/∂z_n^(l), the residual of sample n
//
// The loss of a batch is the mean of the per-sample losses plus weight decay,
//   J = (1/m) Σ_n J_n + (λ/2) Σ_l ‖W^(l)‖²_F      (biases are not decayed),
// so the adjoint a tape computes for z^(l) is δ^(l)/m, not δ^(l): the per-sample residual of the
// seed is m times the tape's adjoint.  The factor 1/m and the λ term enter only the parameter
// gradients (9.21 with a batch):
//   ∂J/∂W^(l) = (1/m) Σ_n δ_n^(l) (x_n^(l))ᵀ + λ W^(l),    ∂J/∂b^(l) = (1/m) Σ_n δ_n^(l).
#pragma once

#include <cstdint>
#include <vector>

#include "autodiff/array.hpp"
#include "autodiff/error.hpp"

namespace nn::backprop {

using Mat = ad::Array<double>;

/// The activation f of a layer.  All but softmax act element-wise.
enum class Act { identity, sigmoid, tanh, relu, leaky_relu, softmax };
/// The per-sample loss J_n.
///   squared_error:        ½ ‖y − a^(L)‖²                                  (9.22)
///   cross_entropy:        −Σ_k y_k ln a_k^(L)                               (9.24)
///   binary_cross_entropy: −Σ_k [y_k ln a_k^(L) + (1 − y_k) ln(1 − a_k^(L))]
enum class Loss { squared_error, cross_entropy, binary_cross_entropy };
/// Which of the seed's formulas the backward pass takes as printed instead of corrected
/// (everything else is always the corrected derivation of docs/backprop.md).
struct Formulas {
  bool printed_9_19 = false;  ///< the recursion with W_ij^(l) as printed (element-wise hidden activations)
  bool printed_9_27 = false;  ///< softmax + cross-entropy with softmax treated as element-wise, f′ = f(1 − f)

  static constexpr Formulas corrected() { return {}; }
  static constexpr Formulas as_printed() { return {true, true}; }
};

const char* name(Act f);
const char* name(Loss loss);

/// f(v) and f′(v) of an element-wise activation (throws ad::InvalidArgument for softmax).
/// relu′(0) = 0; leaky_relu′(0) = slope.
double apply(Act f, double v, double slope = 0.01);
double derivative(Act f, double v, double slope = 0.01);

// ---- layers: forward and backward pairs ------------------------------------------------------------

/// z = x Wᵀ + b, i.e. z_n = W x_n + b for every sample n (the seed's z^(l) = W^(l) x^(l) + b^(l)).
/// z [m, out], x [m, in], W [out, in], b [out].
void linear_forward(Mat& z, const Mat& x, const Mat& W, const Mat& b);

/// The parameter gradients of one layer (9.21, with the batch) and the gradient of its input:
///   dW += (1/m) Σ_n dz_n x_nᵀ      ∂J/∂W_ij = δ_i x_j, averaged over the batch
///   db += (1/m) Σ_n dz_n           ∂J/∂b_i  = δ_i,     averaged over the batch
///   dx  = dz W  (if dx is not null) row n is Wᵀ δ_n: the sum Σ_j W_ji δ_j of 9.19
/// dz [m, out] holds per-sample residuals δ_n; dW [out, in]; db [out]; dx [m, in].
void linear_backward(Mat& dW, Mat& db, Mat* dx, const Mat& dz, const Mat& x, const Mat& W);

/// dW += λ W: the gradient of (λ/2) ‖W‖²_F.
void weight_decay_backward(Mat& dW, const Mat& W, double lambda);

/// a = f(z), row by row (softmax normalises each row; it subtracts the row maximum first).
void activation_forward(Mat& a, const Mat& z, Act f, double slope = 0.01);

/// dz = (∂a/∂z)ᵀ da for each sample: da ⊙ f′(z) for an element-wise f (the factor f′(z_i^(l)) of
/// 9.18/9.19), and J_softmaxᵀ da = a ⊙ (da − ⟨a, da⟩) for softmax, J_softmax = diag(a) − a aᵀ.
void activation_backward(Mat& dz, const Mat& da, const Mat& z, const Mat& a, Act f, double slope = 0.01);

// ---- the loss and the residual of the output layer -------------------------------------------------

/// (1/m) Σ_n J_n: the data term of J (no weight decay).  a, y [m, s_L].
double loss_forward(const Mat& a, const Mat& y, Loss loss);

/// 9.23, squared error with an element-wise f:  δ^(L) = −(y − a^(L)) ⊙ f′(z^(L)).
void squared_error_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope = 0.01);
/// Squared error with softmax outputs: δ^(L) = J_softmaxᵀ (a − y) = a ⊙ ((a − y) − ⟨a, a − y⟩).
void squared_error_softmax_delta(Mat& delta, const Mat& a, const Mat& y);
/// 9.26, cross-entropy with an element-wise f:  δ_i^(L) = −y_i f′(z_i^(L)) / f(z_i^(L)).  With a
/// one-hot y only i = k̃ is non-zero, and for sigmoid outputs δ_k̃ = a_k̃ − 1.  An output
/// f(z_i) = 0 where y_i ≠ 0 (J itself is infinite there) gives ±inf or NaN, as IEEE division does.
void cross_entropy_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope = 0.01);
/// Corrected 9.27, cross-entropy with softmax outputs:  δ_i^(L) = a_i Σ_k y_k − y_i, which is
/// a − y for a one-hot (or any normalised) y.
void softmax_cross_entropy_delta(Mat& delta, const Mat& a, const Mat& y);
/// Binary cross-entropy with an element-wise f:  δ_i = (a_i − y_i) / (a_i (1 − a_i)) · f′(z_i),
/// which is a − y for sigmoid outputs.
void binary_cross_entropy_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, double slope = 0.01);
/// Picks the right one of the above for (f, loss); throws ad::InvalidArgument for binary
/// cross-entropy with softmax, which this module does not derive.
void output_delta(Mat& delta, const Mat& z, const Mat& a, const Mat& y, Act f, Loss loss, double slope = 0.01);

/// Second order, the last layer of softmax + cross-entropy: the Hessian of J = (1/m) Σ_n J_n with
/// respect to W^(L) [K, s] (flattened row-major: element (i, j) is index i·s + j),
///   ∂²J/∂W_ij ∂W_kl = (1/m) Σ_n (δ_ik a_ni − a_ni a_nk) x_nj x_nl,
/// the batch mean of (diag(a_n) − a_n a_nᵀ) ⊗ x_n x_nᵀ.  It follows from 9.21 and corrected 9.27:
/// ∂J_n/∂W_ij = (a_ni − y_ni) x_nj, and ∂a_ni/∂z_nk = δ_ik a_ni − a_ni a_nk (the softmax Jacobian),
/// with ∂z_nk/∂W_kl = x_nl.  The labels drop out.  H [K·s, K·s]; x = x^(L) [m, s]; a = a^(L) [m, K].
void softmax_cross_entropy_hessian(Mat& H, const Mat& x, const Mat& a);

/// Corrected 9.19:  δ^(l) = ((W^(l+1))ᵀ δ^(l+1)) ⊙ f′(z^(l)), for every sample.
/// delta, z, a [m, s_l]; delta_next [m, s_{l+1}]; W_next = W^(l+1) [s_{l+1}, s_l].
void delta_recursion(Mat& delta, const Mat& delta_next, const Mat& W_next, const Mat& z, const Mat& a, Act f,
                     double slope = 0.01);

/// The seed's formulas exactly as printed, for the tests and the walkthrough to hold against the
/// corrected ones.
namespace seed_literal {

/// 9.19 as printed:  δ_i^(l) = (Σ_{j=1}^{s_{l+1}} W_ij^(l) δ_j^(l+1)) f′(z_i^(l)).
/// `W_printed` is the matrix the reader takes the printed W^(l) to be; read literally in this
/// project's convention it is W^(l) [s_l, s_{l-1}], which is the wrong matrix (layer index) read
/// the wrong way round (index order).  Throws ad::ShapeError if W_printed has no entry (i, j) for
/// some i < s_l, j < s_{l+1}: the printed formula then refers to weights that do not exist.
void delta_recursion(Mat& delta, const Mat& delta_next, const Mat& W_printed, const Mat& z, Act f,
                     double slope = 0.01);

/// 9.18 as printed: ∂z_j^(l+1)/∂z_i^(l) = W_ij^(l) f′(z_i^(l)), for one sample (row n of z^(l)).
/// The correct entry is W_ji^(l+1) f′(z_i^(l)).  Throws ad::ShapeError if W^(l) has no entry (i, j).
double dz_next_dz(const Mat& W_printed, const Mat& z, std::int64_t n, std::int64_t j, std::int64_t i, Act f,
                  double slope = 0.01);

/// 9.26/9.27 as printed, for softmax outputs: the derivative of f is taken to be f(1 − f) as if
/// softmax were element-wise, so δ_i^(L) = −y_i f(z_i)(1 − f(z_i)) / f(z_i) = y_i (a_i − 1):
/// a_k̃ − 1 at the true class and 0 at every other class.
void softmax_cross_entropy_delta(Mat& delta, const Mat& a, const Mat& y);

}  // namespace seed_literal

/// The corrected entry of 9.18:  ∂z_j^(l+1)/∂z_i^(l) = W_ji^(l+1) f′(z_i^(l)), for sample n.
double dz_next_dz(const Mat& W_next, const Mat& z, std::int64_t n, std::int64_t j, std::int64_t i, Act f,
                  double slope = 0.01);

// ---- a whole network -------------------------------------------------------------------------------

/// An MLP as plain arrays: W[l-1] is W^(l) [s_l, s_{l-1}], b[l-1] is b^(l) [s_l], for l = 1..L.
/// Layers 1..L-1 use `hidden`, layer L uses `output`.
struct Network {
  std::vector<Mat> W;
  std::vector<Mat> b;
  Act hidden = Act::sigmoid;
  Act output = Act::softmax;
  double slope = 0.01;  ///< leaky_relu's slope for negative inputs

  std::int64_t layers() const { return static_cast<std::int64_t>(W.size()); }
  /// s_l for l = 0..L.
  std::int64_t width(std::int64_t l) const;
  Act activation(std::int64_t l) const { return l == layers() ? output : hidden; }
};

/// What the forward and backward pass computed for layer l (all [m, s_l] but dW, db).
struct Layer {
  Mat z, a, delta;  ///< delta: per-sample residuals δ_n^(l) = ∂J_n/∂z_n^(l) (m times the tape's adjoint)
  Mat dW, db;       ///< ∂J/∂W^(l) [s_l, s_{l-1}], ∂J/∂b^(l) [s_l]: for the whole J (batch mean and λ)
};

struct Pass {
  std::vector<Layer> layers;  ///< layers[l-1] is layer l
  double data_loss = 0.0;     ///< (1/m) Σ_n J_n
  double penalty = 0.0;       ///< (λ/2) Σ_l ‖W^(l)‖²_F
  double loss = 0.0;          ///< J = data_loss + penalty

  /// Layer l, for l = 1..L.
  const Layer& layer(std::int64_t l) const { return layers.at(static_cast<std::size_t>(l - 1)); }
};

/// Checks that the network's shapes chain (W^(l) [s_l, s_{l-1}], b^(l) [s_l]) and that x [m, s_0]
/// and y [m, s_L] fit; throws ad::ShapeError naming `what`, the operands and their shapes.
void check(const Network& net, const Mat& x, const Mat& y, const char* what);

/// The forward pass only: z^(l), a^(l) of every layer and the loss.  delta, dW, db are left empty.
Pass forward(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda);

/// J alone (the same arithmetic as forward()).
double loss_value(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda);

/// The forward pass and the hand-derived backward pass: δ^(L) from the output formula for
/// (output activation, loss), δ^(L-1) … δ^(1) by 9.19, and ∂J/∂W^(l), ∂J/∂b^(l) by 9.21 with the
/// batch mean and λ W^(l).
Pass forward_backward(const Network& net, const Mat& x, const Mat& y, Loss loss, double lambda,
                      Formulas formulas = Formulas::corrected());

/// One step of gradient descent, 9.14 and 9.15:  W^(l) ← W^(l) − α ∂J/∂W^(l),  b^(l) ← b^(l) − α ∂J/∂b^(l).
void gradient_descent_step(Network& net, const Pass& pass, double alpha);

}  // namespace nn::backprop
