// Activation functions f, applied element by element to z^(l) (softmax: row by row), and the
// module that applies one inside a Sequential network and names its output a^(l).
//
// An Activation is a small value, so it can be passed to MLP or called directly:
//   nn::MLP net({784, 256, 10}, nn::relu, rng);     ad::Tensor a = nn::sigmoid(z);
// Each calls the autodiff op of the same name; the op's comment gives the derivative and edge
// cases (relu′(0) = 0, leaky_relu′(0) = slope).
#pragma once

#include <string>

#include "nn/module.hpp"

namespace nn {

enum class ActivationKind { identity, sigmoid, tanh, relu, leaky_relu, softmax };

struct Activation {
  ActivationKind kind = ActivationKind::identity;
  double slope = 0.01;  ///< leaky_relu: the slope for z <= 0

  /// f(z).  identity returns z itself (nothing is recorded); softmax works over the last axis.
  ad::Tensor operator()(const ad::Tensor& z) const;
  /// "relu", "leaky_relu(0.01)", ...
  std::string name() const;
  /// The same activation with another negative slope (leaky_relu).
  constexpr Activation with_slope(double s) const { return Activation{kind, s}; }
  constexpr bool operator==(const Activation&) const = default;
};

inline constexpr Activation identity{ActivationKind::identity};
inline constexpr Activation sigmoid{ActivationKind::sigmoid};
inline constexpr Activation tanh{ActivationKind::tanh};
inline constexpr Activation relu{ActivationKind::relu};
inline constexpr Activation leaky_relu{ActivationKind::leaky_relu, 0.01};
inline constexpr Activation softmax{ActivationKind::softmax};

/// A module applying an activation.  Inside a Sequential it follows layer l's Linear and names
/// its output `layer<l>.a` (a^(l) of the seed); for identity the same entry also carries the
/// name, since a^(l) = z^(l).
class ActivationLayer : public Module {
 public:
  explicit ActivationLayer(Activation f, int layer = 0);
  ad::Tensor forward(const ad::Tensor& z) override;
  std::string describe() const override;
  const Activation& function() const { return f_; }
  /// Sets l in the output's name `layer<l>.a` (0: the output is not named).
  void set_layer(int layer);
  int layer() const { return layer_; }

 private:
  Activation f_;
  int layer_ = 0;
  std::string a_name_;
};

}  // namespace nn
