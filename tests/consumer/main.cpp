// Differentiates one expression and runs a small network; exits non-zero if the gradient is wrong.
// Includes the headers as "autodiff/..." and "nn/...", from the source tree or the installed package.
#include <cmath>
#include <fmt/core.h>

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"

int main() {
  ad::Tape tape;
  ad::Var x = tape.variable(0.5);
  ad::Var y = sin(x) * x;
  const double got = tape.gradient(y)[x], want = std::cos(0.5) * 0.5 + std::sin(0.5);
  fmt::print("consumer: dy/dx = {} (expected {})\n", got, want);

  nn::MLP net({2, 3, 2}, nn::tanh);
  const ad::Tensor logits = net(tape, ad::Array<float>(ad::make_shape({1, 2}), {0.5f, -1.0f}));
  fmt::print("consumer: logits {}\n", logits);
  return std::fabs(got - want) < 1e-15 && logits.size() == 2 ? 0 : 1;
}
