// Checks for forward mode and Hessian-vector products, shared by the second-order tests.
//
//  * check_tangent: the jvp of a tensor computation in a random direction u against a central
//    difference of f(x + εu) in ε (every output element, to 1e-9 relative beyond the difference's
//    rounding), and against reverse mode: ⟨w, J u⟩ from the tangent equals ⟨Jᵀ w, u⟩ from a
//    vector-Jacobian product, for a random w, to rounding.
//  * check_hvp: H·v of a scalar loss against a central difference of the gradient along v,
//    ∂/∂ε ∇f(x + εv), element by element.
#pragma once

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

/// jvp against central differences and against reverse mode (see the top of this file).
inline void check_tangent(const Build& build, const Inputs& x, unsigned seed = 1) {
  const Inputs u = directions_like(x, seed);
  ad::Tape tape;
  const auto l = leaves(tape, x);
  const ad::Tensor y = build(tape, l);
  const auto dirs = pairs(l, u);
  const ad::Array<double> dy = ad::jvp(tape, y, dirs);
  REQUIRE(dy.shape() == y.shape());

  // Central differences of each output element along u.
  const std::int64_t n = dy.size();
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
  const Inputs w = directions_like({ad::Array<double>(y.shape())}, seed + 100);
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
