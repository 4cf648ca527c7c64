// Forward mode and Hessian-vector products on the MLP 784-256-128-10 (ReLU, softmax-cross-entropy,
// float32, batch 128), against the first-order passes they build on.  Prints
//   second_order batch=128 grad_us=<> hvp_us=<> hvp_over_grad=<> jvp_us=<> jvp_over_forward=<>
// with medians of interleaved runs, each timing a whole pass from an empty tape:
//   forward: record the network and the loss;
//   grad:    forward + one reverse sweep (the gradient of every parameter);
//   jvp:     forward + one tangent pass along a direction for every parameter (J·v for the loss);
//   hvp:     forward + ad::hvp over every parameter (H·v: a tangent pass and two reverse sweeps).
// The bars (JAX's forward-over-reverse as reference): hvp ≤ 3× grad, jvp ≤ 2× forward.
#include <algorithm>
#include <vector>

#include <fmt/core.h>

#include "bench_util.hpp"
#include "nn/nn.hpp"

namespace {

using bench::Clock;
using bench::median;

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(3, std::atoi(argv[1])) : 31;
  const std::int64_t B = 128;
  nn::Rng rng(1);
  ad::Array<float> x(ad::Shape{B, 784});
  nn::fill_uniform(x, 0.0, 1.0, rng);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(B));
  for (std::int64_t i = 0; i < B; ++i) labels[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(rng() % 10);
  nn::MLP net({784, 256, 128, 10}, nn::relu, rng);
  const nn::ParameterList params = net.parameters();
  std::vector<ad::Array<float>> v;
  for (const auto& p : params) {
    ad::Array<float> d(p->shape());
    nn::fill_uniform(d, -1.0, 1.0, rng);
    v.push_back(std::move(d));
  }

  ad::Tape tape;
  double check = 0.0;
  const auto forward = [&] {
    tape.clear();
    return nn::softmax_cross_entropy(net(tape, x), labels);
  };
  const auto directions = [&] {
    std::vector<ad::Direction> d;
    for (std::size_t k = 0; k < params.size(); ++k) d.emplace_back(params[k]->recorded(), v[k]);
    return d;
  };
  std::vector<double> t_fwd, t_grad, t_jvp, t_hvp, t_hvp_tape;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    check += forward().item();
    t_fwd.push_back(bench::seconds_between(t0, Clock::now()));

    t0 = Clock::now();
    {
      const ad::Tensor loss = forward();
      const ad::Gradients g = tape.gradient(loss);
      check += g[params[0]->recorded()].flat(0);
    }
    t_grad.push_back(bench::seconds_between(t0, Clock::now()));

    t0 = Clock::now();
    {
      const ad::Tensor loss = forward();
      check += ad::jvp(tape, loss, directions())[0];
    }
    t_jvp.push_back(bench::seconds_between(t0, Clock::now()));

    t0 = Clock::now();
    {
      const ad::Tensor loss = forward();
      const auto hv = nn::hvp(params, tape, loss, v);
      check += hv[0][0];
    }
    t_hvp.push_back(bench::seconds_between(t0, Clock::now()));

    // The same on the tape alone (ad::hvp with the leaves' handles), without nn's per-parameter sums.
    t0 = Clock::now();
    {
      const ad::Tensor loss = forward();
      const ad::Gradients r = ad::hvp(tape, loss, directions());
      check += r[params[0]->recorded()].flat(0);
    }
    t_hvp_tape.push_back(bench::seconds_between(t0, Clock::now()));
  }
  const double fwd = median(t_fwd) * 1e6, grad = median(t_grad) * 1e6, jv = median(t_jvp) * 1e6,
               hv = median(t_hvp) * 1e6;
  fmt::print("second_order batch={} grad_us={:.0f} hvp_us={:.0f} hvp_over_grad={:.2f} jvp_us={:.0f} "
             "jvp_over_forward={:.2f}\n",
             B, grad, hv, hv / grad, jv, jv / fwd);
  const auto least = [](const std::vector<double>& t) { return *std::min_element(t.begin(), t.end()) * 1e6; };
  fmt::print("forward_us={:.0f} hvp_tape_us={:.0f} rounds={} (checksum {:.3g})\n", fwd, median(t_hvp_tape) * 1e6, rounds,
             check);
  // On a busy machine a pass is often preempted for a whole time slice; the fastest run of each
  // shows what the passes cost when they are not.
  fmt::print("fastest: forward_us={:.0f} grad_us={:.0f} hvp_us={:.0f} hvp_tape_us={:.0f} jvp_us={:.0f} "
             "hvp_over_grad={:.2f} jvp_over_forward={:.2f}\n",
             least(t_fwd), least(t_grad), least(t_hvp), least(t_hvp_tape), least(t_jvp), least(t_hvp) / least(t_grad),
             least(t_jvp) / least(t_fwd));
  return 0;
}
