// Optimisers: they read each parameter's adjoint from the Gradients of one backward sweep and
// update the parameter's Array in place.
//
// Weight decay λ is the regulariser (λ/2) Σ_l ‖W^(l)‖²_F added to the loss J.  Its gradient λW is
// added by the optimiser (the tape only differentiates the recorded loss), and only to parameters
// marked for decay: weight matrices, not biases (Parameter::decay()).  With learning rate α, plain
// SGD is the seed's gradient-descent step (eqs. 9.14, 9.15) on the regularised J:
//     W ← W − α (∂J/∂W + λ W)      b ← b − α ∂J/∂b
#pragma once

#include <vector>

#include "autodiff/gradients.hpp"
#include "nn/module.hpp"

namespace nn {

class Optimizer {
 public:
  explicit Optimizer(ParameterList params);
  virtual ~Optimizer() = default;
  /// One update from the gradients of a sweep in which every parameter was recorded.
  virtual void step(const ad::Gradients& g) = 0;
  /// The learning rate α, and changing it (for a schedule).
  virtual double learning_rate() const = 0;
  virtual void set_learning_rate(double lr) = 0;
  const ParameterList& parameters() const { return params_; }

 protected:
  /// The adjoint of p in g; throws InvalidArgument if p was not recorded on g's tape in g's
  /// generation (the forward pass was not run after the last tape.clear()).
  ad::View gradient_of(const Parameter& p, const ad::Gradients& g, const char* who) const;
  /// Looks up every parameter's adjoint into grads_ before anything is updated, so a parameter
  /// that was not recorded makes the whole step throw with no parameter changed.
  void collect(const ad::Gradients& g, const char* who);
  ParameterList params_;
  std::vector<ad::View> grads_;
};

struct SGDOptions {
  double lr = 0.01;            ///< α
  double momentum = 0.0;       ///< μ: v ← μ v + g, W ← W − α v   (0: the plain step above)
  double weight_decay = 0.0;   ///< λ
  bool nesterov = false;       ///< W ← W − α (g + μ v) after updating v
};

/// Stochastic gradient descent, optionally with (Nesterov) momentum.
class SGD : public Optimizer {
 public:
  SGD(ParameterList params, SGDOptions options = {});
  void step(const ad::Gradients& g) override;
  double learning_rate() const override { return options.lr; }
  void set_learning_rate(double lr) override;
  SGDOptions options;

 private:
  std::vector<std::vector<float>> v32_;
  std::vector<std::vector<double>> v64_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;   ///< λ, added to the gradient as λW (the (λ/2)‖W‖² regulariser)
};

/// Adam (Kingma & Ba): with g = ∂J/∂W + λW and step count t,
///   m ← β1 m + (1 − β1) g,  v ← β2 v + (1 − β2) g²,  W ← W − α m̂ / (√v̂ + ε),
/// where m̂ = m / (1 − β1^t) and v̂ = v / (1 − β2^t).
class Adam : public Optimizer {
 public:
  Adam(ParameterList params, AdamOptions options = {});
  void step(const ad::Gradients& g) override;
  double learning_rate() const override { return options.lr; }
  void set_learning_rate(double lr) override;
  AdamOptions options;
  long steps() const { return t_; }

 private:
  long t_ = 0;
  std::vector<std::vector<float>> m32_, v32_;
  std::vector<std::vector<double>> m64_, v64_;
};

}  // namespace nn
