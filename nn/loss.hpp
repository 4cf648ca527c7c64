// Loss functions J, each averaged over the batch (the rows of a [B, K] input; a rank-1 input is a
// single sample).  All return a rank-0 tensor, ready for tape.gradient(J), named "loss" on the tape
// (give it another name with tape.name).  They are autodiff ops, so their gradients come from the
// ops' rules; the comments state what those gradients are.
#pragma once

#include <cstdint>
#include <span>

#include "autodiff/autodiff.hpp"

namespace nn {

/// Squared error (seed eq. 9.22): J = (1/B) Σ_b ½‖y_b − a_b‖².  ∂J/∂a = (a − y)/B.
/// `y` has the shape of `a` and needs no gradient.
ad::Tensor squared_error(const ad::Tensor& a, const ad::Tensor& y);
template <ad::Element T>
ad::Tensor squared_error(const ad::Tensor& a, const ad::Array<T>& y) {
  return squared_error(a, a.tape()->constant(y));
}

/// Cross-entropy on probabilities (seed eq. 9.24): J = −(1/B) Σ_b Σ_k y_bk ln a_bk.
/// ∂J/∂a = −y / (B a).  An a_bk = 0 where y_bk > 0 gives J = inf.
ad::Tensor cross_entropy(const ad::Tensor& a, const ad::Tensor& y);
/// The same for one-hot targets given as labels (eq. 9.25): J = −(1/B) Σ_b ln a_{b, label_b}.
ad::Tensor cross_entropy(const ad::Tensor& a, std::span<const std::int32_t> labels);

/// Softmax followed by cross-entropy, fused into one tape entry (ad::softmax_cross_entropy), from
/// logits z [B, K] and integer labels: J = −(1/B) Σ_b log_softmax(z_b)_{label_b}, computed stably
/// (the row maximum is subtracted first, so any finite logits give a finite J).
/// ∂J/∂z = (softmax(z) − y)/B with y the one-hot labels: the seed's δ^(L) = a − y (corrected
/// eq. 9.27) per sample.
ad::Tensor softmax_cross_entropy(const ad::Tensor& logits, std::span<const std::int32_t> labels);

/// Binary cross-entropy on probabilities p ∈ (0, 1) with targets y ∈ [0, 1] of the same shape:
/// J = −(1/B) Σ_b Σ_k [y ln p + (1 − y) ln(1 − p)].  ∂J/∂p = (p − y) / (B p (1 − p)).
ad::Tensor binary_cross_entropy(const ad::Tensor& p, const ad::Tensor& y);

}  // namespace nn
