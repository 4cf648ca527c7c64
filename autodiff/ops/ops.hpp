// The tensor operations, by family.  Each op validates its operands before recording anything and
// throws a typed ad::Error naming the op, the operands (by name when named) and their shapes.
// Element types must match (f32 with f32, f64 with f64); a Var or double operand is converted to
// the tensor's element type.  Each op's derivative and edge cases are stated beside its forward
// and backward rules in ops/<family>.cpp.
#pragma once

#include <cstdint>
#include <span>

#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"
#include "autodiff/var.hpp"

namespace ad {

// ---- element-wise (ops/elementwise.cpp) ------------------------------------------------------------
// Binary ops broadcast like NumPy (shapes are aligned at the trailing dimension; a dimension of 1
// stretches).  The gradient of a broadcast operand is summed back to its shape (ops/broadcast.hpp).
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, const Var& b);
Tensor operator+(const Var& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Var& b);
Tensor operator-(const Var& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Var& b);
Tensor operator*(const Var& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Var& b);
Tensor operator/(const Var& a, const Tensor& b);
Tensor operator+(const Tensor& a, double c);
Tensor operator+(double c, const Tensor& a);
Tensor operator-(const Tensor& a, double c);
Tensor operator-(double c, const Tensor& a);
Tensor operator*(const Tensor& a, double c);
Tensor operator*(double c, const Tensor& a);
Tensor operator/(const Tensor& a, double c);
Tensor operator/(double c, const Tensor& a);
Tensor operator-(const Tensor& a);

Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double slope = 0.01);
Tensor softplus(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);
Tensor pow(const Tensor& x, double p);

// ---- matrix products (ops/matmul.cpp) --------------------------------------------------------------
/// a·b for 2-D a [m,k] and b [k,n], or batched over a leading dimension ([B,m,k]·[B,k,n], or a 3-D
/// operand with a 2-D one shared across the batch).  With transpose_a / transpose_b the operand is
/// read transposed (its last two dimensions swapped); the flag is passed to BLAS, nothing is copied.
/// Derivative of C = A·B with upstream adjoint G: dA = G·Bᵀ, dB = Aᵀ·G (a shared operand sums over
/// the batch).  Empty dimensions are allowed (k = 0 gives zeros).  Runs through ad::blas (blas.hpp).
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a = false, bool transpose_b = false);
/// z = x·Wᵀ + b as one entry (a dense layer in the seed's orientation: W is [out, in], x [B, in] holds
/// one sample a row, b is [out]; z is [B, out]).  dx = G·W, dW = Gᵀ·x, db = Σ_rows G.
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b);

// ---- shape (ops/shape.cpp) -------------------------------------------------------------------------
/// Swaps the last two dimensions (a 2-D transpose; batched for rank 3-4).
Tensor transpose(const Tensor& x);
/// The same elements under a new shape with the same number of elements; one dimension may be -1.
/// Nothing is copied: the result reads x's elements.
Tensor reshape(const Tensor& x, std::span<const std::int64_t> shape);
Tensor reshape(const Tensor& x, std::initializer_list<std::int64_t> shape);

// ---- reductions (ops/reduce.cpp) -------------------------------------------------------------------
/// Sum of all elements (rank 0 result).
Tensor sum(const Tensor& x);
/// Sum over one axis (negative counts from the end); keepdims keeps it with size 1.
Tensor sum(const Tensor& x, int axis, bool keepdims = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, int axis, bool keepdims = false);
/// Maximum over one axis; the gradient goes to the first maximal element (NaN counts as maximal).
Tensor max(const Tensor& x, int axis, bool keepdims = false);

// ---- softmax (ops/softmax.cpp) ---------------------------------------------------------------------
/// exp(x - max) / Σ exp(x - max) over an axis: finite for any finite input.
Tensor softmax(const Tensor& x, int axis = -1);
/// x - max - log Σ exp(x - max) over an axis.
Tensor log_softmax(const Tensor& x, int axis = -1);
/// The mean over the B rows of −log softmax(z)[b, labels[b]] for logits z of shape [B, C] (B > 0),
/// as ONE scalar entry (op "softmax_cross_entropy") with its own rule: the adjoint of z is
/// (softmax(z) − onehot(labels)) / B times the output's adjoint.  The same value as
/// -mean(pick(log_softmax(z), labels)), stable for any finite z.  Throws ShapeError if z is not
/// 2-D, has no rows, or the label count is not B; IndexError naming the row for a label outside [0, C).
Tensor softmax_cross_entropy(const Tensor& z, std::span<const std::int32_t> labels);

// ---- indexing (ops/index.cpp) ----------------------------------------------------------------------
/// For x of shape [B, C] and labels of length B: the [B] tensor of x[b, labels[b]].  Throws
/// IndexError naming the row if a label is outside [0, C).
Tensor pick(const Tensor& x, std::span<const std::int32_t> labels);
/// A [B, C] constant tensor (no gradient) with 1 at (b, labels[b]) and 0 elsewhere.
Tensor one_hot(Tape& tape, std::span<const std::int32_t> labels, std::int64_t classes, DType dtype = DType::f32);

}  // namespace ad
