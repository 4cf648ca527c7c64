// The seed's small network on a tape, looked at from every side: the listing, the summary, the
// step-through of layer 1's residual δ^(1), a picture of the tape, the explorer page to click
// through, and the finiteness check finding where a log(0) happened.
//
//   inspect_tape [--out DIR] [picture path]   (default: DIR/tape.svg, DIR the current directory; the
//                                             explorer page is written beside it, extension .html)
#include <fmt/core.h>

#include <cstdint>
#include <stdexcept>

#include "autodiff/autodiff.hpp"
#include "examples/output_dir.hpp"
#include "nn/nn.hpp"

int main(int argc, char** argv) {
  std::filesystem::path out;
  try {
    out = examples::take_output_dir(argc, argv);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "inspect_tape: {}\nusage: inspect_tape [--out DIR] [picture path]\n", e.what());
    return 2;
  }
  const std::filesystem::path picture = argc > 1 ? std::filesystem::path(argv[1]) : out / "tape.svg";
  const std::filesystem::path page = std::filesystem::path(picture).replace_extension(".html");
  // The seed's 3-4-3 network: sigmoid hidden layer, softmax outputs with cross-entropy, float64.
  // nn names what it records layer<l>.W, layer<l>.b, layer<l>.z and layer<l>.a.
  nn::Rng rng(7);
  nn::MLP net({3, 4, 3}, nn::sigmoid, rng, {.dtype = ad::DType::f64});
  const ad::Array<double> x(ad::make_shape({1, 3}), {0.5, -1.0, 2.0});
  const std::int32_t label[] = {1};

  ad::Tape tape;
  const ad::Tensor loss = tape.name(nn::softmax_cross_entropy(net(tape, x), label), "loss");

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

  // ---- README snippet begin (README.md, "The tape explorer")
  ad::Explorer explorer = ad::write_explorer(tape, loss, page);   // one HTML file: graph, listing, sweep replay
  fmt::print("{}\n", explorer.message);                           // open it in a browser
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
