#include "nn/penalty.hpp"

#include <cmath>

namespace nn {

ad::Tensor l2_penalty(ad::Tape& tape, const Module& net, double lambda) {
  if (!(lambda >= 0) || !std::isfinite(lambda))
    throw ad::InvalidArgument(fmt::format("l2_penalty: λ = {} (must be finite and ≥ 0)", lambda));
  ad::Tensor squares;  // Σ ‖W‖² so far
  for (const auto& p : net.parameters()) {
    if (!p->decay()) continue;
    const ad::Tensor& w = p->recorded();
    if (w.tape() != &tape || w.generation() != tape.generation())
      throw ad::InvalidArgument(fmt::format(
          "l2_penalty: {} ({}) is not recorded on this tape: run the network's forward pass on it first", p->name(),
          ad::describe(p->dtype(), p->shape())));
    const ad::Tensor s = sum(square(w));
    squares = squares.empty() ? s : squares + s;
  }
  if (squares.empty())
    throw ad::InvalidArgument("l2_penalty: the network has no weights that weight decay applies to");
  return tape.name(squares * (0.5 * lambda), "l2_penalty");
}

}  // namespace nn
