// The weight-decay term of the regularised loss, recorded on the tape.
//
// The seed's regularised objective is J = (data loss) + (λ/2) Σ_l ‖W^(l)‖²_F.  nn::SGD and nn::Adam
// apply λ themselves (the `weight_decay` option adds λW to each weight's gradient), so a training
// loop does not need this term; it is for reading the tape's gradient of the full J, as the seed's
// formulas state it:
//
//   ad::Tensor J = tape.name(nn::softmax_cross_entropy(net(tape, x), y) + nn::l2_penalty(tape, net, λ), "J");
//   ad::Gradients g = tape.gradient(J);   // g["layer1.W"] = (data term) + λ W^(1)
#pragma once

#include "autodiff/autodiff.hpp"
#include "nn/module.hpp"

namespace nn {

/// (λ/2) Σ ‖W‖² over the parameters that weight decay applies to (Parameter::decay(): the weight
/// matrices; biases are left out, as the optimisers leave them out), recorded on `tape` as a scalar
/// named "l2_penalty".  It reads the leaves the forward pass recorded (Parameter::recorded()), so
/// its gradient λW adds to the same adjoints the optimiser reads: run `net` on `tape` first.
/// Throws ad::InvalidArgument if λ is negative or not finite, if `net` has no decayed parameter,
/// or if one of them was not recorded on `tape` since its last clear().
ad::Tensor l2_penalty(ad::Tape& tape, const Module& net, double lambda);

}  // namespace nn
