// The README's scalar-tape snippet ("The scalar tape"), compiled exactly as it stands there.
#include "autodiff/autodiff.hpp"

int main() {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(-4.0), "x");
  ad::Var z = tape.name(2 * x + 2 + x, "z");
  ad::Var y = tanh((relu(z) + z * x) / 10.0) + pow(x, 2.0);
  ad::Gradients g = tape.gradient(y);      // one reverse sweep
  fmt::print("dy/dx = {}  dy/dz = {}\n{}", g[x], g[z], tape);   // any recorded value, and the listing
}
