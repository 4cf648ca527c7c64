// Linear: the affine map of one layer, in the seed's orientation.
//
// Layer l holds W^(l) of shape [s_l, s_{l-1}] = [out, in] and b^(l) of length s_l = out, and maps
// its input x^(l) to z^(l) = W^(l) x^(l) + b^(l).  A batch stores one sample per row, x of shape
// [B, in], so the batch form is z = x·Wᵀ + b, of shape [B, out], recorded as one ad::linear entry:
// the product reads W transposed through a BLAS flag (nothing is copied) and b is added to every
// row.  The
// parameters are named `layer<l>.W` and `layer<l>.b` and the output `layer<l>.z`, so after a
// sweep δ^(l) = ∂J/∂z^(l) is g["layer<l>.z"].
//
// No backward code here: ad::linear carries the rule.  Its adjoints give
// ∂J/∂W = δᵀ·x (the seed's δ^(l) (x^(l))ᵀ summed over the batch) and ∂J/∂b = Σ_rows δ.
#pragma once

#include "nn/data.hpp"
#include "nn/init.hpp"
#include "nn/module.hpp"

namespace nn {

struct LinearOptions {
  Init init = Init::xavier_uniform;  ///< for W; b starts at zero
  ad::DType dtype = ad::DType::f32;
  int layer = 1;                     ///< l in the names layer<l>.W, layer<l>.b, layer<l>.z
};

class Linear : public Module {
 public:
  Linear(std::int64_t in, std::int64_t out, Rng& rng, LinearOptions options = {});
  /// A layer over existing parameters, which it shares (tied weights: two layers holding one W,
  /// whose optimiser step then sums both layers' gradients).  W must be [out, in] and b [out], of
  /// one element type (ShapeError, DTypeError otherwise).  The parameters keep their names; `layer`
  /// names the output (layer<l>.z).
  Linear(std::shared_ptr<Parameter> W, std::shared_ptr<Parameter> b, int layer = 1);

  /// z = x·Wᵀ + b for x of shape [B, in] (the dtype of the layer).  Throws ShapeError or
  /// DTypeError naming the layer before recording anything.
  ad::Tensor forward(const ad::Tensor& x) override;
  ParameterList parameters() const override { return {W_, b_}; }
  std::string describe() const override;

  std::int64_t in() const { return in_; }
  std::int64_t out() const { return out_; }
  int layer() const { return layer_; }
  /// Renames the parameters and the output for layer l.
  void set_layer(int layer);
  Parameter& weight() { return *W_; }
  Parameter& bias() { return *b_; }
  const Parameter& weight() const { return *W_; }
  const Parameter& bias() const { return *b_; }
  /// The parameters themselves, to share them with another module.
  const std::shared_ptr<Parameter>& shared_weight() const { return W_; }
  const std::shared_ptr<Parameter>& shared_bias() const { return b_; }

 private:
  std::int64_t in_, out_;
  int layer_ = 1;
  std::shared_ptr<Parameter> W_, b_;
  std::string z_name_;
};

}  // namespace nn
