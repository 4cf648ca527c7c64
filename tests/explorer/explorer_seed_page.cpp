// Writes the tape explorer pages of the seed's network for the browser test, and beside them the
// tape's own answer to compare with: the adjoints of an ordinary sweep (tape.gradient), which the
// page must show after replaying the sweep it recorded entry by entry.
//
//   explorer_seed_page OUT_DIR    writes OUT_DIR/seed.html (with the Graphviz graph when dot is
//                                 installed), OUT_DIR/seed-listing.html (listing only) and
//                                 OUT_DIR/expected.json
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "examples/walkthrough_tape.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: explorer_seed_page OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  std::filesystem::create_directories(dir);

  nn::MLP mlp = walkthrough_detail::to_mlp(walkthrough_network());
  ad::Tape tape;
  const ad::Tensor J = record_walkthrough(tape, mlp);
  const ad::Gradients g = tape.gradient(J);

  // expected.json: for every named entry that takes a gradient, its index and its adjoint's
  // elements (shortest round-trip text, so the doubles read back exactly).
  std::string expected = fmt::format("{{\"loss\": {}, \"layers\": {}, \"named\": {{", J.item(), walkthrough_network().layers());
  bool first = true;
  for (std::uint32_t e = 1; e < tape.size(); ++e) {
    const std::string_view name = tape.name_of(e);
    if (name.empty() || !tape.requires_grad(e)) continue;
    const ad::Array<double> adj = ad::to_array<double>(g.adjoint(e));
    expected += fmt::format("{}\"{}\": {{\"entry\": {}, \"adjoint\": [{}]}}", first ? "" : ", ", name, e,
                            fmt::join(adj.values(), ", "));
    first = false;
  }
  expected += "}}\n";

  const ad::Explorer page = write_walkthrough_explorer(dir / "seed.html");
  const ad::Explorer listing = write_walkthrough_explorer(dir / "seed-listing.html", {.graph = false});
  std::ofstream(dir / "expected.json") << expected;

  // A probability of exactly 0 fed to log: logp's value and probs' adjoint are infinite.
  ad::Tape bad;
  const ad::Array<double> p(ad::make_shape({3}), {0.7, 0.3, 0.0});
  const ad::Array<double> target(ad::make_shape({3}), {0.0, 0.0, 1.0});
  const ad::Tensor probs = bad.name(bad.leaf(p), "probs");
  const ad::Tensor logp = bad.name(log(probs), "logp");
  const ad::Tensor nll = bad.name(-sum(logp * bad.constant(target)), "nll");
  ad::write_explorer(bad, nll, dir / "nan.html", {.graph = page.graph});
  fmt::print("{}\n{}\n", page.message, listing.message);
  fmt::print("graph: {}\n", page.graph ? "yes" : "no");
  return 0;
}
