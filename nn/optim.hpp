// Optimisers: they read each parameter's gradient from the Gradients of one backward sweep and
// update the parameter's Array in place.
//
// A parameter's gradient is the sum of the adjoints of EVERY leaf on the tape that reads its buffer:
// a layer applied twice (lin(lin(x))), or two modules sharing one Parameter, records it twice, and
// both uses count.  A step has two public phases, so that something can happen in between (data-
// parallel training averages the gradients across processes):
//     opt.collect(g);   // each parameter's summed gradient, in buffers the optimiser holds
//     ...               // e.g. an allreduce over opt.gradient<float>(k) for every k
//     opt.apply();      // the update
// and opt.step(g) is the two in one.
//
// Weight decay λ is the regulariser (λ/2) Σ_l ‖W^(l)‖²_F added to the loss J.  Its gradient λW is
// added by the optimiser (the tape only differentiates the recorded loss), and only to parameters
// marked for decay: weight matrices, not biases (Parameter::decay()).  With learning rate α, plain
// SGD is the seed's gradient-descent step (eqs. 9.14, 9.15) on the regularised J:
//     W ← W − α (∂J/∂W + λ W)      b ← b − α ∂J/∂b
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "autodiff/gradients.hpp"
#include "nn/module.hpp"

namespace nn {

/// A copy of parameters' values, to put them back after a step that went wrong.
class ParameterCopy {
 public:
  explicit ParameterCopy(ParameterList params) : params_(std::move(params)), saved_(params_.size()) {}
  /// Copies the current values (reusing the memory of the previous copy).
  void take();
  /// Writes the copied values back into the parameters.
  void restore() const;

 private:
  ParameterList params_;
  std::vector<std::vector<std::byte>> saved_;
};

class Optimizer {
 public:
  /// The parameters to update; one listed twice (shared by two modules) counts once.
  explicit Optimizer(ParameterList params);
  virtual ~Optimizer() = default;
  /// One update from the gradients of a sweep in which every parameter was recorded:
  /// collect(g), then apply().
  void step(const ad::Gradients& g);
  /// Phase 1: for each parameter, the sum of the adjoints in g of every leaf of g's tape that reads
  /// the parameter's buffer.  Throws InvalidArgument (naming the parameter) if a parameter was not
  /// recorded on that tape before the sweep, with nothing collected; the Gradients stay referenced
  /// until apply().
  void collect(const ad::Gradients& g);
  /// Phase 2: updates every parameter in place from its collected gradient (which may have been
  /// changed since collect()), then lets go of the Gradients.  Throws InvalidArgument if nothing
  /// was collected.
  void apply();
  /// The collected gradient of parameter k, as float or double (the parameter's element type;
  /// DTypeError otherwise), writable until apply().  With one leaf reading the parameter this is
  /// that leaf's adjoint in the Gradients itself (no copy); with several, a sum the optimiser owns.
  template <ad::Element T>
  std::span<T> gradient(std::size_t k);
  /// Whether collect() has run since the last apply().
  bool collected() const { return g_.has_value(); }

  /// An element of a parameter that an update made NaN or infinite.
  struct NonFinite {
    std::size_t parameter = 0;  ///< index in parameters()
    std::int64_t index = 0;     ///< flat index of the element
    double value = 0;           ///< the value the update gave it
  };
  /// Phase 2 with a check: as apply(), except that when the update leaves an element of a
  /// parameter NaN or infinite, every parameter is put back exactly as it was and the first such
  /// element (in parameter order, then flat order) is returned; nullopt when the update stands.
  /// SGD and Adam undo without a copy: their update stores each element's old value over the
  /// gradient element it has just read, so afterwards (either way) the collected gradients hold the
  /// parameters' values from before the update.  Other optimisers copy the parameters first.  The
  /// optimiser's own state (momentum, Adam's moments and step count) keeps the step either way.
  std::optional<NonFinite> apply_checked();
  /// The learning rate α, and changing it (for a schedule).
  virtual double learning_rate() const = 0;
  virtual void set_learning_rate(double lr) = 0;
  const ParameterList& parameters() const { return params_; }

 protected:
  /// The update itself, reading gradient_data(k) for parameter k.
  virtual void update() = 0;
  /// The same update keeping the old values, for apply_checked(): each parameter element's old value
  /// is stored over its gradient element once that has been read.  Returns whether every new
  /// parameter value is finite, or nullopt, having done nothing, when the optimiser cannot do this
  /// (the default).
  virtual std::optional<bool> update_keeping_old_values() { return std::nullopt; }
  /// The collected gradient of parameter k (of the parameter's element type).
  const void* gradient_data(std::size_t k) const { return grads_[k]; }
  void* gradient_data(std::size_t k) { return grads_[k]; }
  ParameterList params_;

 private:
  std::optional<ad::Gradients> g_;          // the sweep collected from, kept until apply()
  std::vector<void*> grads_;                // per parameter: its gradient (in g_ or in sums_)
  std::vector<std::vector<float>> sums32_;  // per parameter: a sum over several leaves
  std::vector<std::vector<double>> sums64_;
  std::optional<ParameterCopy> copy_;       // apply_checked() of an optimiser that cannot keep old values
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
  double learning_rate() const override { return options.lr; }
  void set_learning_rate(double lr) override;
  SGDOptions options;

 private:
  void update() override;
  std::optional<bool> update_keeping_old_values() override;
  template <bool keep>
  bool update_all();
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
  double learning_rate() const override { return options.lr; }
  void set_learning_rate(double lr) override;
  AdamOptions options;
  long steps() const { return t_; }

 private:
  void update() override;
  std::optional<bool> update_keeping_old_values() override;
  template <bool keep>
  bool update_all();
  long t_ = 0;
  std::vector<std::vector<float>> m32_, v32_;
  std::vector<std::vector<double>> m64_, v64_;
};

/// The first NaN or infinite element of the parameters (in order, then flat order), or nullopt.
std::optional<Optimizer::NonFinite> first_non_finite(const ParameterList& params);

// ---- inline definitions ---------------------------------------------------------------------------

template <ad::Element T>
std::span<T> Optimizer::gradient(std::size_t k) {
  if (!g_) throw ad::InvalidArgument("Optimizer::gradient: nothing collected (call collect(g) first)");
  const Parameter& p = *params_.at(k);
  if (p.dtype() != ad::dtype_of<T>)
    throw ad::DTypeError(fmt::format("Optimizer::gradient: parameter {} is {}, requested as {}", p.name(),
                                     ad::describe(p.dtype(), p.shape()), ad::to_string(ad::dtype_of<T>)));
  return {static_cast<T*>(grads_[k]), static_cast<std::size_t>(p.size())};
}

}  // namespace nn
