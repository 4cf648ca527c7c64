// Must not compile: looking up the adjoint of an unrecorded expression.  CTest compiles this file
// and expects the build to stop with the reason given in autodiff/gradients.hpp.
#include "autodiff/autodiff.hpp"

double adjoint_of_unrecorded(ad::Tape& tape) {
  ad::Var x = tape.variable(2.0);
  ad::Var y = tape.variable(3.0);
  auto e = x * y + 1.0;  // an ad::Expr: not on the tape
  ad::Gradients g = tape.gradient(ad::Var(e * x));
  return g[e];
}
