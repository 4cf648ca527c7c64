// The seed's small network on a tape, looked at from every side: the listing, the summary, the
// step-through of layer 1's residual δ^(1), a picture of the tape, and the finiteness check finding
// where a log(0) happened.
//
//   inspect_tape [picture path]      (default: tape.svg in the current directory)
#include <fmt/core.h>

#include <cstdint>

#include "autodiff/autodiff.hpp"

namespace {

/// Records the 3-4-3 network of the seed (sigmoid hidden layer, softmax outputs, cross-entropy)
/// for one sample of class 1, naming every z, a, W and b as nn does.
ad::Tensor record_network(ad::Tape& tape, const ad::Array<double>& x, const ad::Array<double>& W1,
                          const ad::Array<double>& b1, const ad::Array<double>& W2, const ad::Array<double>& b2) {
  ad::Tensor in = tape.name(tape.constant(x), "x");
  ad::Tensor w1 = tape.name(tape.leaf(W1), "layer1.W");
  ad::Tensor c1 = tape.name(tape.leaf(b1), "layer1.b");
  ad::Tensor z1 = tape.name(matmul(in, w1, false, true) + c1, "layer1.z");  // z = x Wᵀ + b
  ad::Tensor a1 = tape.name(sigmoid(z1), "layer1.a");
  ad::Tensor w2 = tape.name(tape.leaf(W2), "layer2.W");
  ad::Tensor c2 = tape.name(tape.leaf(b2), "layer2.b");
  ad::Tensor z2 = tape.name(matmul(a1, w2, false, true) + c2, "layer2.z");
  const std::int32_t label[] = {1};
  return tape.name(-mean(pick(log_softmax(z2), label)), "loss");
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path picture = argc > 1 ? argv[1] : "tape.svg";
  ad::Array<double> x(ad::make_shape({1, 3}), {0.5, -1.0, 2.0});
  ad::Array<double> W1(ad::make_shape({4, 3}), {0.1, -0.2, 0.3, 0.4, 0.1, -0.5, -0.3, 0.2, 0.2, 0.0, -0.1, 0.6});
  ad::Array<double> b1(ad::make_shape({4}), {0.1, -0.1, 0.0, 0.05});
  ad::Array<double> W2(ad::make_shape({3, 4}), {0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.1, 0.3, 0.2, 0.6, -0.3, -0.1});
  ad::Array<double> b2(ad::make_shape({3}), {0.0, 0.1, -0.1});

  ad::Tape tape;
  const ad::Tensor loss = record_network(tape, x, W1, b1, W2, b2);

  // ---- README snippet begin (README.md, "Inspecting the tape")
  ad::Gradients g = tape.gradient(loss);
  fmt::print("{}\n", tape);                                       // the listing; adjoints after a sweep
  fmt::print("{}\n", ad::listing(tape, {.subtree = "layer1.a"}));  // what layer1.a depends on
  fmt::print("{}\n", ad::summary(tape));                          // entries by op, bytes held, parameters

  ad::StepLog steps = ad::step_through(tape, loss);               // the reverse sweep, entry by entry
  fmt::print("{}\n", steps.format({.prefix = "layer1."}));        // what each step added to layer 1
  fmt::print("{}\n", steps.explain("layer1.z", {0, 2}));          // the terms whose sum is δ^(1)[0,2]

  ad::Picture pic = ad::write_picture(tape, picture);             // tape.dot; tape.svg if Graphviz is installed
  fmt::print("{}\n", pic.message);

  ad::check_finite(tape);                                         // throws ad::NonFiniteError at a NaN/inf value
  g = ad::checked_gradient(tape, loss);                           // ... or at a NaN/inf adjoint
  // ---- README snippet end

  // A probability of exactly 0 fed to log: the value is -inf and everything after it follows.
  ad::Tape bad;
  ad::Array<double> p(ad::make_shape({3}), {0.7, 0.3, 0.0});
  ad::Tensor probs = bad.name(bad.leaf(p), "probs");
  ad::Tensor logp = bad.name(log(probs), "logp");
  const ad::Array<double> target(ad::make_shape({3}), {0.0, 0.0, 1.0});
  ad::Tensor nll = bad.name(-sum(logp * bad.constant(target)), "nll");
  fmt::print("check_finite on a tape with log(0):\n");
  try {
    ad::check_finite(bad);
  } catch (const ad::NonFiniteError& e) {
    fmt::print("{}\n", e.what());
  }
  // Its gradient: d log p / dp = 1/p is infinite where p = 0.
  fmt::print("checked_gradient on the same tape:\n");
  try {
    (void)ad::checked_gradient(bad, nll);
  } catch (const ad::NonFiniteError& e) {
    fmt::print("{}", e.what());
  }
}
