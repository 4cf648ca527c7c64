// Checks for forward mode and Hessian-vector products, shared by the second-order tests.
//
//  * check_tangent: the jvp of a tensor computation in a random direction u against a central
//    difference of f(x + εu) in ε (every output element, to 1e-9 relative beyond the difference's
//    rounding), and against reverse mode: ⟨w, J u⟩ from the tangent equals ⟨Jᵀ w, u⟩ from a
//    vector-Jacobian product, for a random w, to rounding.
//  * check_hvp: H·v of a scalar loss against a central difference of the gradient along v,
//    ∂/∂ε ∇f(x + εv), element by element.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <span>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/check.hpp"
#include "autodiff/forward.hpp"
#include "jacobian.hpp"

namespace second_order {

using Build = std::function<ad::Tensor(ad::Tape&, std::span<const ad::Tensor>)>;
using Inputs = std::vector<ad::Array<double>>;

/// Random directions of the inputs' shapes.
inline Inputs directions_like(const Inputs& x, unsigned seed) {
  Inputs u;
  for (std::size_t k = 0; k < x.size(); ++k) {
    ad::Array<double> a(x[k].shape());
    std::mt19937_64 rng(seed + 7919 * k);
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    for (auto& v : a.values()) v = d(rng);
    u.push_back(std::move(a));
  }
  return u;
}

/// x + ε u.
inline Inputs moved(const Inputs& x, const Inputs& u, double eps) {
  Inputs r = x;
  for (std::size_t k = 0; k < x.size(); ++k)
    for (std::int64_t i = 0; i < x[k].size(); ++i) r[k][i] = std::as_const(x[k])[i] + eps * std::as_const(u[k])[i];
  return r;
}

inline std::vector<ad::Tensor> leaves(ad::Tape& tape, const Inputs& x) {
  std::vector<ad::Tensor> l;
  for (const auto& a : x) l.push_back(tape.leaf(a));
  return l;
}

inline std::vector<ad::Direction> pairs(const std::vector<ad::Tensor>& l, const Inputs& u) {
  std::vector<ad::Direction> d;
  for (std::size_t k = 0; k < l.size(); ++k) d.emplace_back(l[k], u[k]);
  return d;
}

/// The descriptors of every node the build records (for coverage checks).
inline std::vector<const ad::OpDescriptor*> recorded_ops(const Build& build, const Inputs& x) {
  ad::Tape tape;
  build(tape, leaves(tape, x));
  std::vector<const ad::OpDescriptor*> r;
  for (std::size_t k = 0; k < tape.node_count(); ++k)
    if (!tape.node_at(k).args.empty()) r.push_back(tape.node_at(k).op);
  return r;
}

/// jvp along u for the inputs marked in `moving` (the others held fixed: no direction given for
/// them) against central differences and against reverse mode; and the output-only jvp against the
/// tangent the pass that keeps every value's tangent gives (the first may hand buffers from a value
/// to its last reader, the second may not: the same arithmetic either way).
inline void check_tangent_along(const Build& build, const Inputs& x, Inputs u, const std::vector<bool>& moving) {
  for (std::size_t k = 0; k < x.size(); ++k)
    if (!moving[k]) std::fill(u[k].values().begin(), u[k].values().end(), 0.0);
  ad::Tape tape;
  const auto l = leaves(tape, x);
  const ad::Tensor y = build(tape, l);
  std::vector<ad::Direction> dirs;
  for (std::size_t k = 0; k < l.size(); ++k)
    if (moving[k]) dirs.emplace_back(l[k], u[k]);
  const ad::Array<double> dy = ad::jvp(tape, y, dirs);
  REQUIRE(dy.shape() == y.shape());
  const ad::Array<double> kept = ad::jvp(tape, dirs).array<double>(y);
  const std::int64_t n = dy.size();
  for (std::int64_t o = 0; o < n; ++o)
    CHECK_MESSAGE(std::fabs(dy[o] - kept[o]) <= 1e-15 * std::max(1.0, std::fabs(kept[o])),
                  fmt::format("(J u)[{}]: {:.17g} from the output-only pass, {:.17g} keeping every tangent", o, dy[o],
                              kept[o]));

  // Central differences of each output element along u.
  double scale = 1.0;
  for (std::int64_t o = 0; o < n; ++o) scale = std::max(scale, std::fabs(y.value().flat(o)));
  for (std::int64_t o = 0; o < n; ++o) {
    const auto f = [&](double eps) {
      ad::Tape t;
      return build(t, leaves(t, moved(x, u, eps))).value().flat(o);
    };
    const ad::Difference d = ad::central_difference(f, 0.0, scale);
    const ad::JacobianElement e = ad::compare(dy[o], d, ad::DType::f64);
    CHECK_MESSAGE(e.error <= e.allowed, fmt::format("(J u)[{}]: jvp {:.17g}, central difference {:.17g}", o, dy[o],
                                                    d.value));
  }

  // ⟨w, J u⟩ = ⟨Jᵀ w, u⟩.
  const Inputs w = directions_like({ad::Array<double>(y.shape())}, 4242);
  const ad::Gradients g = tape.vjp(y, w[0].view());
  double lhs = 0.0, rhs = 0.0, mag = 0.0;
  for (std::int64_t o = 0; o < n; ++o) {
    lhs += w[0][o] * dy[o];
    mag += std::fabs(w[0][o] * dy[o]);
  }
  for (std::size_t k = 0; k < l.size(); ++k) {
    const ad::View gk = g[l[k]];
    for (std::int64_t i = 0; i < gk.size(); ++i) {
      rhs += gk.flat(i) * std::as_const(u[k])[i];
      mag += std::fabs(gk.flat(i) * std::as_const(u[k])[i]);
    }
  }
  CHECK_MESSAGE(std::fabs(lhs - rhs) <= 1e-12 * std::max(1.0, mag),
                fmt::format("<w, J u> = {:.17g} from the tangent, {:.17g} from the reverse sweep", lhs, rhs));
}

/// jvp in a random direction of every input together, then (for several inputs) of each input
/// alone, so that a rule's paths for a zero argument tangent run too (see check_tangent_along).
inline void check_tangent(const Build& build, const Inputs& x, unsigned seed = 1) {
  const Inputs u = directions_like(x, seed);
  {
    INFO("every input moving");
    check_tangent_along(build, x, u, std::vector<bool>(x.size(), true));
  }
  if (x.size() < 2) return;
  for (std::size_t k = 0; k < x.size(); ++k) {
    INFO("only input ", k, " moving");
    std::vector<bool> moving(x.size(), false);
    moving[k] = true;
    check_tangent_along(build, x, u, moving);
  }
}

/// H·v of the one-element output of `build` against central differences of its gradient along v.
inline void check_hvp(const Build& build, const Inputs& x, unsigned seed = 3) {
  const Inputs v = directions_like(x, seed);
  ad::Tape tape;
  const auto l = leaves(tape, x);
  const ad::Tensor loss = build(tape, l);
  const auto dirs = pairs(l, v);
  const ad::Gradients hv = ad::hvp(tape, loss, dirs);
  for (std::size_t k = 0; k < l.size(); ++k) {
    const ad::Array<double> got = hv.array<double>(l[k]);
    for (std::int64_t i = 0; i < got.size(); ++i) {
      const auto f = [&](double eps) {
        ad::Tape t;
        const auto lt = leaves(t, moved(x, v, eps));
        const ad::Tensor out = build(t, lt);
        return t.gradient(out)[lt[k]].flat(i);
      };
      const ad::Difference d = ad::central_difference(f, 0.0, 1.0);
      const ad::JacobianElement e = ad::compare(got[i], d, ad::DType::f64);
      CHECK_MESSAGE(e.error <= e.allowed, fmt::format("(H v) of input {} at {}: hvp {:.17g}, central difference of "
                                                      "the gradient {:.17g}",
                                                      k, i, got[i], d.value));
    }
  }
}

}  // namespace second_order
