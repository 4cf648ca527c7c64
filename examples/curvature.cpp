// Why the learning rate matters, answered with the network's own curvature.
//
// Near a minimum, gradient descent w ← w − α ∇J behaves like it does on the quadratic ½ Δwᵀ H Δw:
// along the Hessian's eigenvector of eigenvalue λ the error is multiplied by (1 − αλ) each step.
// With λ_max the largest eigenvalue, the step is stable only when |1 − α λ_max| < 1, i.e.
// α < 2/λ_max.  This program
//   1. estimates λ_max by power iteration on Hessian-vector products (nn::hvp, forward over reverse,
//      never forming H), for the seed's 3-4-4-3 network and for an MLP on a Fashion-MNIST subset;
//   2. after some safe descent towards a minimum, runs gradient descent from the same weights with
//      α = 0.9, 1.1 and 2 × 2/λ_max and prints (and plots) the loss curves.  Above the edge the
//      sharpest direction grows: J rises (a spike, after which the network often settles where the
//      curvature is lower) or diverges outright;
//   3. takes one Newton step (solved by conjugate gradients on Hessian-vector products: Hessian-free)
//      on a small regression net and compares it with gradient descent.
//
//   curvature [--out DIR] [--data DIR] [--samples N] [--steps N]
// writes DIR/curvature.svg (default: the current directory).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "nn/nn.hpp"
#include "svg_plot.hpp"
#include "walkthrough_tape.hpp"

namespace {

/// A network and how to record its loss on a tape.
struct Problem {
  std::string name;
  nn::ParameterList params;
  std::function<ad::Tensor(ad::Tape&)> loss;
};

using Vec = std::vector<ad::Array<double>>;

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k)
    for (std::int64_t i = 0; i < a[k].size(); ++i) s += std::as_const(a[k])[i] * std::as_const(b[k])[i];
  return s;
}

void axpy(Vec& y, double alpha, const Vec& x) {  // y += α x
  for (std::size_t k = 0; k < y.size(); ++k)
    for (std::int64_t i = 0; i < y[k].size(); ++i) y[k][i] += alpha * std::as_const(x[k])[i];
}

Vec zeros_like(const nn::ParameterList& params) {
  Vec v;
  for (const auto& p : params) v.emplace_back(p->shape());
  return v;
}

Vec values(const nn::ParameterList& params) {
  Vec v;
  for (const auto& p : params) v.push_back(ad::to_array<double>(p->view()));
  return v;
}

void set_values(const nn::ParameterList& params, const Vec& v) {
  for (std::size_t k = 0; k < params.size(); ++k)
    ad::dispatch(params[k]->dtype(), [&]<class T>() {
      auto dst = params[k]->array<T>().values();
      for (std::size_t i = 0; i < dst.size(); ++i) dst[i] = static_cast<T>(v[k].values()[i]);
    });
}

/// H·v at the current parameters.
Vec hessian_times(Problem& p, const Vec& v) {
  ad::Tape tape;
  const ad::Tensor loss = p.loss(tape);
  std::vector<ad::View> views;
  for (const auto& a : v) views.push_back(a.view());
  return nn::hvp_views(p.params, tape, loss, views);
}

/// J and ∇J at the current parameters.
std::pair<double, Vec> loss_and_gradient(Problem& p) {
  ad::Tape tape;
  const ad::Tensor loss = p.loss(tape);
  const ad::Gradients g = tape.gradient(loss);
  Vec grad;
  for (const auto& q : p.params) {
    ad::Array<double> s(q->shape());
    for (const std::uint32_t e : ad::dispatch(q->dtype(), [&]<class T>() { return tape.readers(q->array<T>()); })) {
      const ad::View a = g.adjoint(e);
      for (std::int64_t i = 0; i < s.size(); ++i) s[i] += a.flat(i);
    }
    grad.push_back(std::move(s));
  }
  return {loss.item(), std::move(grad)};
}

/// λ_max by power iteration: v ← H v / ‖H v‖, λ = vᵀ H v.  (It finds the eigenvalue of largest
/// magnitude; at the start of training that is the largest positive one.)
double lambda_max(Problem& p, int iterations) {
  nn::Rng rng(5);
  Vec v = zeros_like(p.params);
  for (auto& a : v) nn::fill_uniform(a, -1.0, 1.0, rng);
  double lambda = 0.0;
  for (int it = 0; it < iterations; ++it) {
    const double norm = std::sqrt(dot(v, v));
    for (auto& a : v)
      for (double& x : a.values()) x /= norm;
    const Vec hv = hessian_times(p, v);
    lambda = dot(v, hv);
    v = hv;
  }
  return lambda;
}

/// Loss after each of `steps` gradient-descent steps with rate α, from the current parameters
/// (which are restored afterwards).
std::vector<double> descend(Problem& p, double alpha, int steps) {
  const Vec start = values(p.params);
  std::vector<double> curve;
  for (int s = 0; s <= steps; ++s) {
    auto [J, g] = loss_and_gradient(p);
    curve.push_back(J);
    if (!std::isfinite(J) || J > 1e6) break;
    Vec w = values(p.params);
    axpy(w, -alpha, g);
    set_values(p.params, w);
  }
  set_values(p.params, start);
  return curve;
}

/// Damped Newton step: solve (H + μI) d = −∇J by conjugate gradients on Hessian-vector products.
Vec newton_direction(Problem& p, const Vec& grad, double mu, int iterations) {
  Vec d = zeros_like(p.params), r = grad;
  for (auto& a : r)
    for (double& x : a.values()) x = -x;
  Vec q = r;
  double rr = dot(r, r);
  for (int it = 0; it < iterations && rr > 1e-24; ++it) {
    Vec hq = hessian_times(p, q);
    axpy(hq, mu, q);
    const double curvature = dot(q, hq);
    if (curvature <= 0) break;  // negative curvature: stop with what we have
    const double a = rr / curvature;
    axpy(d, a, q);
    axpy(r, -a, hq);
    const double rr_new = dot(r, r);
    for (std::size_t k = 0; k < q.size(); ++k)
      for (std::int64_t i = 0; i < q[k].size(); ++i) q[k][i] = std::as_const(r[k])[i] + rr_new / rr * std::as_const(q[k])[i];
    rr = rr_new;
  }
  return d;
}

struct Run {
  std::string name;
  double lambda = 0.0;
  std::vector<double> below, above, far;
};

Run stability(Problem& p, int steps, int power_iterations, int warmup) {
  Run r;
  r.name = p.name;
  // The quadratic picture holds near a minimum: first descend with a safe rate for a while.
  const double lambda0 = lambda_max(p, power_iterations);
  for (int s = 0; s < warmup; ++s) {
    auto [J, g] = loss_and_gradient(p);
    Vec w = values(p.params);
    axpy(w, -1.0 / lambda0, g);
    set_values(p.params, w);
  }
  r.lambda = lambda_max(p, power_iterations);
  const double edge = 2.0 / r.lambda;
  fmt::print("{}: after {} warm-up steps, lambda_max = {:.4g} ({} power iterations on Hessian-vector products),\n"
             "  so gradient descent is stable for alpha < 2/lambda_max = {:.4g}\n",
             p.name, warmup, r.lambda, power_iterations, edge);
  r.below = descend(p, 0.9 * edge, steps);
  r.above = descend(p, 1.1 * edge, steps);
  r.far = descend(p, 2.0 * edge, steps);
  const auto show = [&](const char* label, double alpha, const std::vector<double>& c) {
    fmt::print("  alpha = {:.4g} ({}): J", alpha, label);
    const std::size_t stride = std::max<std::size_t>(1, c.size() / 8);
    for (std::size_t s = 0; s < c.size(); s += stride) fmt::print(" {:.4g}", c[s]);
    std::size_t rise = 0;  // the first step at which J went up
    for (std::size_t k = 1; k < c.size() && rise == 0; ++k)
      if (c[k] > c[k - 1]) rise = k;
    if (!std::isfinite(c.back()) || c.back() > 1e6)
      fmt::print(" | diverged: J = {:.4g} after {} steps\n", c.back(), c.size() - 1);
    else if (rise > 0)
      fmt::print(" | unstable: J first rose at step {}, peaked at {:.4g}; {:.4g} after {} steps\n", rise,
                 *std::max_element(c.begin() + static_cast<std::ptrdiff_t>(rise), c.end()), c.back(), c.size() - 1);
    else
      fmt::print(" | J fell at every step, to {:.4g} after {} steps\n", c.back(), c.size() - 1);
  };
  show("0.9 x 2/lambda_max", 0.9 * edge, r.below);
  show("1.1 x 2/lambda_max", 1.1 * edge, r.above);
  show("2 x 2/lambda_max", 2.0 * edge, r.far);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path out = ".", data = nn::fashion_mnist_dir;
  std::int64_t samples = 512;
  int steps = 150;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
    else if (std::strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
    else if (std::strcmp(argv[i], "--samples") == 0 && i + 1 < argc) samples = std::max<std::int64_t>(8, std::atoll(argv[++i]));
    else if (std::strcmp(argv[i], "--steps") == 0 && i + 1 < argc) steps = std::max(2, std::atoi(argv[++i]));
    else {
      fmt::print(stderr, "usage: curvature [--out DIR] [--data DIR] [--samples N] [--steps N]\n");
      return 2;
    }
  }
  std::vector<Run> runs;

  // 1. The seed's 3-4-4-3 network (sigmoid hidden, softmax output) on its one sample.
  nn::MLP seed_net = walkthrough_detail::to_mlp(walkthrough_network());
  Problem seed{"seed network 3-4-4-3", seed_net.parameters(),
               [&](ad::Tape& t) { return record_walkthrough(t, seed_net); }};
  runs.push_back(stability(seed, steps, 50, 200));

  // 2. An MLP 784-64-10 (relu) on a Fashion-MNIST subset, float32, full-batch.
  try {
    nn::Dataset train = nn::load_fashion_mnist("train", data);
    const std::int64_t n = std::min(samples, train.size());
    ad::Array<float> x(ad::Shape{n, train.features()});
    std::copy_n(std::as_const(train.x).data(), n * train.features(), x.data());
    const std::vector<std::int32_t> labels(train.labels.begin(), train.labels.begin() + n);
    nn::Rng rng(3);
    nn::MLP mlp({train.features(), 64, 10}, nn::relu, rng);
    Problem fashion{fmt::format("Fashion-MNIST MLP 784-64-10 on {} images", n), mlp.parameters(),
                    [&](ad::Tape& t) { return nn::softmax_cross_entropy(mlp(t, x), labels); }};
    runs.push_back(stability(fashion, steps, 20, 100));
  } catch (const ad::Error& e) {
    fmt::print("Fashion-MNIST skipped: {}\n", e.what());
  }

  // 3. One Newton step on a small regression net (1-8-1 tanh, squared error, fitting sin on 32 points).
  {
    nn::Rng rng(11);
    nn::MLP net({1, 8, 1}, nn::tanh, rng, {.dtype = ad::DType::f64});
    ad::Array<double> x(ad::Shape{32, 1}), y(ad::Shape{32, 1});
    for (std::int64_t i = 0; i < 32; ++i) {
      x[i] = -2.0 + 4.0 * static_cast<double>(i) / 31.0;
      y[i] = std::sin(1.5 * x[i]);
    }
    Problem reg{"regression 1-8-1", net.parameters(), [&](ad::Tape& t) { return nn::squared_error(net(t, x), y); }};
    const double lambda = lambda_max(reg, 40);
    const double alpha = 1.0 / lambda;
    const Vec start = values(reg.params);
    const std::vector<double> gd = descend(reg, alpha, 200);
    auto [J0, g] = loss_and_gradient(reg);
    const Vec d = newton_direction(reg, g, 1e-6 * lambda, 60);
    Vec w = start;
    axpy(w, 1.0, d);
    set_values(reg.params, w);
    const double J1 = loss_and_gradient(reg).first;
    set_values(reg.params, start);
    fmt::print("\n{}: J = {:.4g} at the start; lambda_max = {:.4g}\n", reg.name, J0, lambda);
    fmt::print("  one damped Newton step (conjugate gradients on Hessian-vector products): J = {:.4g}\n", J1);
    fmt::print("  gradient descent, alpha = 1/lambda_max: J = {:.4g} after 1 step, {:.4g} after 10, {:.4g} after 200\n",
               gd[1], gd[std::min<std::size_t>(10, gd.size() - 1)], gd.back());
    fmt::print("\n");
    runs.push_back(stability(reg, steps, 40, 300));
  }

  std::vector<svg::Panel> panels;
  for (const Run& r : runs)
    panels.push_back({fmt::format("{} (lambda_max = {:.3g})", r.name, r.lambda), "loss J (log scale)", true,
                      {{"alpha = 0.9 x 2/lambda_max", "#1f77b4", r.below}, {"alpha = 1.1 x 2/lambda_max", "#d95f02", r.above},
                       {"alpha = 2 x 2/lambda_max", "#7570b3", r.far}}});
  const std::filesystem::path svg_path = out / "curvature.svg";
  if (!svg::write(svg_path.string(), svg::render("Gradient descent below and above 2/lambda_max", "step", panels, 0.0))) {
    fmt::print(stderr, "curvature: cannot write {}\n", svg_path.string());
    return 1;
  }
  fmt::print("\nloss curves written to {}\n", svg_path.string());
}
