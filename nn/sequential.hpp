// Sequential: modules applied one after another; MLP: the seed's multilayer perceptron built from
// a list of layer sizes.
//
// Layers are numbered as in the seed: the l-th Linear is layer l (l = 1..L) and the activation
// after it produces a^(l).  Recorded values are named `layer<l>.z` and `layer<l>.a`, parameters
// `layer<l>.W` and `layer<l>.b`.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "nn/activation.hpp"
#include "nn/linear.hpp"

namespace nn {

class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential(Sequential&&) = default;
  Sequential& operator=(Sequential&&) = default;

  /// Appends a Linear: it becomes layer l = (number of Linear layers so far) + 1 and is renamed.
  Sequential& add(Linear layer);
  /// Appends an activation; it names its output a^(l) of the last Linear added.
  Sequential& add(Activation f);
  /// Appends any other module (not renamed).
  Sequential& add(std::unique_ptr<Module> m);

  ad::Tensor forward(const ad::Tensor& x) override;
  ParameterList parameters() const override;
  /// One line per module.
  std::string describe() const override;

  std::size_t size() const { return modules_.size(); }
  Module& operator[](std::size_t k) { return *modules_.at(k); }
  /// Number of Linear layers (L).
  int layers() const { return layers_; }
  /// The Linear of layer l (1..L).
  Linear& linear(int l);

 private:
  std::vector<std::unique_ptr<Module>> modules_;
  std::vector<Linear*> linears_;
  int layers_ = 0;
};

struct MLPOptions {
  ad::DType dtype = ad::DType::f32;
  /// Weight initialisation; by default He (uniform) for layers followed by relu or leaky_relu and
  /// Xavier/Glorot (uniform) for the others.
  std::optional<Init> init = std::nullopt;
};

/// sizes = {s_0, s_1, ..., s_L}: L Linear layers s_{l-1} -> s_l, each followed by `hidden`, except
/// the last, followed by `output` (identity by default: the network returns logits z^(L)).
class MLP : public Sequential {
 public:
  MLP(const std::vector<std::int64_t>& sizes, Activation hidden, Activation output, Rng& rng, MLPOptions options = {});
  MLP(const std::vector<std::int64_t>& sizes, Activation hidden, Rng& rng, MLPOptions options = {})
      : MLP(sizes, hidden, identity, rng, options) {}
  /// Without a generator: the weights are drawn from a default-seeded Rng (the same numbers every
  /// time), for a network whose weights are loaded next (nn::load) or that needs no particular seed.
  MLP(const std::vector<std::int64_t>& sizes, Activation hidden, Activation output, MLPOptions options = {});
  MLP(const std::vector<std::int64_t>& sizes, Activation hidden, MLPOptions options = {})
      : MLP(sizes, hidden, identity, options) {}
  const std::vector<std::int64_t>& sizes() const { return sizes_; }

 private:
  void build(Activation hidden, Activation output, Rng& rng, const MLPOptions& options);
  std::vector<std::int64_t> sizes_;
};

}  // namespace nn
