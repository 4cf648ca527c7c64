// Dense Jacobians and Hessians for small problems, built from the sweeps of autodiff/forward.hpp.
//
//   * jacobian: J[i, j] = ∂y_i/∂x_j, with the inputs' elements laid end to end as columns.  Forward
//     mode gives a column per jvp (n passes), reverse mode a row per vector-Jacobian product (m
//     sweeps); Sweep::automatic takes the fewer: forward when there are fewer inputs than outputs.
//   * hessian: H[i, j] = ∂²loss/∂x_i∂x_j, one Hessian-vector product per column (H·e_j), forward
//     over reverse.  H is symmetric up to rounding; nothing symmetrises it.
// Both return float64 [m, n] / [n, n] arrays whatever the tape's element type.
#pragma once

#include <span>

#include "autodiff/forward.hpp"

namespace ad {

enum class Sweep { automatic, forward, reverse };

/// The Jacobian of y (any shape, m elements) with respect to the tensor leaves `inputs` (n elements
/// in all), as an [m, n] array.
Array<double> jacobian(Tape& tape, const Tensor& y, std::span<const Tensor> inputs, Sweep sweep = Sweep::automatic);
/// The Jacobian of scalar outputs with respect to scalar variables, [ys.size(), xs.size()].
Array<double> jacobian(Tape& tape, std::span<const Var> ys, std::span<const Var> xs, Sweep sweep = Sweep::automatic);

/// The Hessian of a one-element loss with respect to the tensor leaves `inputs`, [n, n].
Array<double> hessian(Tape& tape, const Tensor& loss, std::span<const Tensor> inputs);
/// The Hessian of a scalar loss with respect to scalar variables (record it on ad::UnfusedVar).
Array<double> hessian(Tape& tape, const Var& loss, std::span<const Var> xs);

}  // namespace ad
