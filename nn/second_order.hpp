// Second order for networks: Hessian-vector products over a module's parameters (the optimiser's
// parameter list) and dense Hessians with respect to a few parameters (one layer's W and b).
//
//     ad::Tape tape;
//     const ad::Tensor loss = nn::softmax_cross_entropy(net(tape, x), labels);
//     auto hv = nn::hvp(net.parameters(), tape, loss, v);   // v, hv: one Array per parameter
//
// A parameter read by several leaves (a layer applied twice) moves along v at every use, and its
// (H·v) is the sum over those leaves, as its gradient is.  Built on ad::hvp (autodiff/forward.hpp):
// one tangent pass and two reverse sweeps over the recorded tape.
#pragma once

#include <utility>
#include <vector>

#include "autodiff/second_order.hpp"
#include "nn/module.hpp"

namespace nn {

/// H·v for the loss recorded on `tape` with respect to `params` together; v[k] has the shape of
/// params[k] (any element type); the result has each parameter's element type.  Throws
/// InvalidArgument naming a parameter that was not recorded on the tape, ShapeError for a v of the
/// wrong size or shape.
template <ad::Element T>
std::vector<ad::Array<T>> hvp(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss,
                              const std::vector<ad::Array<T>>& v);
/// The same over all parameters of a module.
template <ad::Element T>
std::vector<ad::Array<T>> hvp(const Module& net, ad::Tape& tape, const ad::Tensor& loss,
                              const std::vector<ad::Array<T>>& v) {
  return hvp(net.parameters(), tape, loss, v);
}

/// The dense Hessian of the loss with respect to `params` together (their elements laid end to end
/// in order, each row-major): [n, n] in float64, n = Σ sizes, from n Hessian-vector products.
ad::Array<double> hessian(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss);

/// The work behind hvp: directions as views, results in float64.
std::vector<ad::Array<double>> hvp_views(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss,
                                         const std::vector<ad::View>& v);

namespace detail {
/// One Hessian-vector product over the parameters' leaves: the result, and the leaves reading each
/// parameter (their R-adjoints summed give (H·v) for that parameter).
std::pair<ad::Gradients, std::vector<std::vector<std::uint32_t>>> hvp_leaves(const ParameterList& params,
                                                                             ad::Tape& tape, const ad::Tensor& loss,
                                                                             const std::vector<ad::View>& v);
/// Σ over `leaves` of their entries in r, as an Array<T>.
template <ad::Element T>
ad::Array<T> sum_over(const ad::Gradients& r, const std::vector<std::uint32_t>& leaves) {
  ad::Array<T> sum = ad::to_array<T>(r.adjoint(leaves[0]));
  for (std::size_t q = 1; q < leaves.size(); ++q) {
    const ad::Array<T> part = ad::to_array<T>(r.adjoint(leaves[q]));
    for (std::int64_t i = 0; i < sum.size(); ++i) sum[i] += std::as_const(part)[i];
  }
  return sum;
}
}  // namespace detail

template <ad::Element T>
std::vector<ad::Array<T>> hvp(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss,
                              const std::vector<ad::Array<T>>& v) {
  std::vector<ad::View> views;
  for (const auto& a : v) views.push_back(a.view());
  const auto [r, leaves] = detail::hvp_leaves(params, tape, loss, views);
  std::vector<ad::Array<T>> out;
  for (const auto& l : leaves) out.push_back(detail::sum_over<T>(r, l));
  return out;
}

}  // namespace nn
