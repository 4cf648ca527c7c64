// The optimisers' updates on the backend's threads (a parameter large enough is cut into one range
// per thread).  Checked against the element-wise formulas written out here, on one to three
// threads, with parameter sizes that do not divide evenly.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/backend/pool.hpp"
#include "nn/optim.hpp"

namespace {

struct Hyper {
  const char* name;
  bool adam = false;
  double lr = 0.05, momentum = 0.0, weight_decay = 0.0;
  bool nesterov = false;
};

/// One parameter's values, gradient (the same every step) and the reference's state, in float64.
struct Ref {
  std::vector<double> w, g, m, v;
};

/// The update written out element by element in float64 (the optimisers compute in the
/// parameter's element type, in the same order).
void reference_step(const Hyper& h, std::vector<Ref>& refs, const std::vector<bool>& decay, int t) {
  for (std::size_t k = 0; k < refs.size(); ++k) {
    Ref& r = refs[k];
    const double wd = decay[k] ? h.weight_decay : 0.0;
    for (std::size_t i = 0; i < r.w.size(); ++i) {
      const double d = r.g[i] + wd * r.w[i];
      if (h.adam) {
        const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
        r.m[i] = b1 * r.m[i] + (1 - b1) * d;
        r.v[i] = b2 * r.v[i] + (1 - b2) * d * d;
        const double mhat = r.m[i] / (1 - std::pow(b1, t)), vhat = r.v[i] / (1 - std::pow(b2, t));
        r.w[i] -= h.lr * mhat / (std::sqrt(vhat) + eps);
      } else if (h.momentum == 0.0) {
        r.w[i] -= h.lr * d;
      } else {
        r.v[i] = h.momentum * r.v[i] + d;
        r.w[i] -= h.lr * (h.nesterov ? d + h.momentum * r.v[i] : r.v[i]);
      }
    }
  }
}

/// Runs `steps` steps of the optimiser on fresh parameters of the given sizes and element type T,
/// alternating apply() and apply_checked(); returns the final values, and checks them against the
/// float64 formulas.  `jobs` receives the pool jobs per step.
template <class T>
std::vector<std::vector<T>> run(const Hyper& h, const std::vector<std::int64_t>& sizes, int steps, double tolerance,
                                std::uint64_t& jobs) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  nn::ParameterList params;
  std::vector<ad::Array<T>> grads;
  std::vector<Ref> refs;
  std::vector<bool> decay;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    ad::Array<T> w(ad::Shape{sizes[k]}), g(ad::Shape{sizes[k]});
    Ref r;
    for (std::int64_t i = 0; i < sizes[k]; ++i) {
      w[i] = static_cast<T>(u(gen));
      g[i] = static_cast<T>(u(gen));
      r.w.push_back(w[i]);
      r.g.push_back(g[i]);
    }
    r.m.assign(r.w.size(), 0.0);
    r.v.assign(r.w.size(), 0.0);
    decay.push_back(k % 2 == 0);  // weights and "biases" in turn
    params.push_back(std::make_shared<nn::Parameter>(fmt::format("p{}", k), std::move(w), decay.back()));
    grads.push_back(std::move(g));
    refs.push_back(std::move(r));
  }
  std::unique_ptr<nn::Optimizer> opt;
  if (h.adam) opt = std::make_unique<nn::Adam>(params, nn::AdamOptions{.lr = h.lr, .weight_decay = h.weight_decay});
  else
    opt = std::make_unique<nn::SGD>(params, nn::SGDOptions{.lr = h.lr, .momentum = h.momentum,
                                                           .weight_decay = h.weight_decay, .nesterov = h.nesterov});
  ad::Tape tape;
  for (int t = 1; t <= steps; ++t) {
    tape.clear();
    // J = Σ_k sum(p_k ⊙ g_k): each parameter's gradient is g_k, exactly.
    ad::Tensor J = ad::sum(params[0]->record(tape) * tape.constant(grads[0]));
    for (std::size_t k = 1; k < params.size(); ++k) J = J + ad::sum(params[k]->record(tape) * tape.constant(grads[k]));
    opt->collect(tape.gradient(J));
    const std::uint64_t before = ad::backend::pool_stats().jobs;
    if (t % 2) opt->apply();
    else CHECK(!opt->apply_checked());
    jobs = ad::backend::pool_stats().jobs - before;
    reference_step(h, refs, decay, t);
  }
  std::vector<std::vector<T>> out;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const auto& a = params[k]->template array<T>();
    out.emplace_back(a.values().begin(), a.values().end());
    double worst = 0;
    for (std::size_t i = 0; i < out[k].size(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(out[k][i]) - refs[k].w[i]) / (1.0 + std::abs(refs[k].w[i])));
    CAPTURE(k);
    CHECK(worst <= tolerance);
  }
  return out;
}

struct RestoreThreads {
  ~RestoreThreads() { ad::backend::set_threads(0); }
};

}  // namespace

TEST_CASE("backend: optimiser updates split over 1 to 3 threads equal the element-wise formulas") {
  RestoreThreads restore;
  const Hyper hypers[] = {
      {.name = "sgd with decay", .lr = 0.05, .weight_decay = 0.01},
      {.name = "momentum", .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01},
      {.name = "nesterov", .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true},
      {.name = "adam", .adam = true, .lr = 0.01, .weight_decay = 0.01},
  };
  // The first parameter is above two grains (SGD 32768 elements, Adam 8192), so it is split.
  const std::vector<std::int64_t> sizes{70001, 37, 40003, 16, 5};
  for (const Hyper& h : hypers) {
    CAPTURE(h.name);
    std::vector<std::vector<float>> f32[3];
    std::vector<std::vector<double>> f64[3];
    for (int threads = 1; threads <= 3; ++threads) {
      CAPTURE(threads);
      ad::backend::set_threads(threads);
      std::uint64_t jobs = 0;
      // float32: 4 steps of about five roundings each, at float32's unit roundoff 6e-8, on values
      // of magnitude up to about 4 (velocities): 2e-6 relative to 1 + |w| leaves room and still
      // fails for any wrong term (the smallest term, λw with λ = 0.01, moves w by ~1e-3 a step).
      f32[threads - 1] = run<float>(h, sizes, 4, 2e-6, jobs);
      // The update was spread over the pool (which one thread never uses).
      CHECK((threads == 1 ? jobs == 0 : jobs >= 1));
      // float64: the same operations in the same order as the formulas above, but Adam's bias
      // corrections are folded into its learning rate and epsilon: 1e-14.
      f64[threads - 1] = run<double>(h, sizes, 4, 1e-14, jobs);
    }
    // Element-wise arithmetic: the same bits whatever the thread count.
    CHECK(f32[1] == f32[0]);
    CHECK(f32[2] == f32[0]);
    CHECK(f64[1] == f64[0]);
    CHECK(f64[2] == f64[0]);
  }
}

TEST_CASE("backend: a small update runs on the calling thread alone") {
  RestoreThreads restore;
  ad::backend::set_threads(2);
  std::uint64_t jobs = 0;
  const Hyper h{.name = "momentum", .lr = 0.05, .momentum = 0.9, .weight_decay = 0.01};
  run<float>(h, {30000, 100}, 2, 2e-6, jobs);  // each below two grains of 32768 elements
  CHECK(jobs == 0);
}
