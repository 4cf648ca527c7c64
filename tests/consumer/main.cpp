// Differentiates one expression; exits non-zero if the gradient is wrong.
#include <cmath>
#include <fmt/core.h>

#include "autodiff/autodiff.hpp"

int main() {
  ad::Tape tape;
  ad::Var x = tape.variable(0.5);
  ad::Var y = sin(x) * x;
  const double got = tape.gradient(y)[x], want = std::cos(0.5) * 0.5 + std::sin(0.5);
  fmt::print("consumer: dy/dx = {} (expected {})\n", got, want);
  return std::fabs(got - want) < 1e-15 ? 0 : 1;
}
