// The smallest use of the tape: record a scalar expression, take its gradient, list the tape.
#include <fmt/core.h>

#include "autodiff/autodiff.hpp"

int main() {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(-4.0), "x");
  ad::Var z = tape.name(2 * x + 2 + x, "z");
  ad::Var q = tape.name(relu(z) + z * x, "q");
  ad::Var y = tape.name(tanh(q / 10.0) + pow(x, 2.0), "y");
  ad::Gradients g = tape.gradient(y);
  fmt::print("y = {:.6f}\ndy/dx = {:.6f}   dy/dz = {:.6f}\n\n{}", y.value(), g[x], g[z], tape);
}
