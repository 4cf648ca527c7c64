#include "nn/activation.hpp"

namespace nn {

ad::Tensor Activation::operator()(const ad::Tensor& z) const {
  switch (kind) {
    case ActivationKind::identity: return z;
    case ActivationKind::sigmoid: return ad::sigmoid(z);
    case ActivationKind::tanh: return ad::tanh(z);
    case ActivationKind::relu: return ad::relu(z);
    case ActivationKind::leaky_relu: return ad::leaky_relu(z, slope);
    case ActivationKind::softmax: return ad::softmax(z, -1);
  }
  throw ad::InvalidArgument("Activation: unknown kind");
}

std::string Activation::name() const {
  switch (kind) {
    case ActivationKind::identity: return "identity";
    case ActivationKind::sigmoid: return "sigmoid";
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::relu: return "relu";
    case ActivationKind::leaky_relu: return fmt::format("leaky_relu({})", slope);
    case ActivationKind::softmax: return "softmax";
  }
  return "?";
}

ActivationLayer::ActivationLayer(Activation f, int layer) : f_(f) { set_layer(layer); }

void ActivationLayer::set_layer(int layer) {
  layer_ = layer;
  a_name_ = layer > 0 ? fmt::format("layer{}.a", layer) : std::string();
}

ad::Tensor ActivationLayer::forward(const ad::Tensor& z) {
  ad::Tensor a = f_(z);
  if (a_name_.empty()) return a;
  // identity records nothing: a^(l) is the entry z^(l), listed as layer<l>.z and found by both names
  if (a.index() == z.index()) return z.tape()->alias(a, a_name_);
  return z.tape()->name(a, a_name_);
}

std::string ActivationLayer::describe() const { return f_.name(); }

}  // namespace nn
