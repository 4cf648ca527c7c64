// Forward mode and Hessian-vector products on the MLP 784-256-128-10 (ReLU, softmax-cross-entropy,
// float32, batch 128), against the first-order passes they build on.  Prints
//   second_order batch=128 grad_us=<> hvp_us=<> hvp_over_grad=<> jvp_us=<> jvp_over_forward=<>
// with medians of interleaved runs, each timing a whole pass from an empty tape.  The passes run on
// one thread (ad::backend::set_threads(1); one thread is also the faster choice at this size) and
// are timed in that thread's CPU time, so that a run preempted by other processes on a busy machine
// is not charged for the time it waited:
//   forward: record the network and the loss;
//   grad:    forward + one reverse sweep (the gradient of every parameter);
//   jvp:     forward + one tangent pass along a direction for every parameter (J·v for the loss);
//   jvp_input: the same along a direction of the input batch only (the parameters held fixed), the
//            directional derivative of the loss with respect to the data;
//   hvp:     forward + ad::hvp over every parameter (H·v: a tangent pass and two reverse sweeps).
// The bars (JAX's forward-over-reverse as reference): hvp ≤ 3× grad, jvp ≤ 2× forward.  The jvp
// includes recording the forward pass; the second line gives the tangent pass on its own.  The
// `repeated:` line times forward, jvp and jvp_input again, each run twice in a row and the second
// run timed, so that each starts with its own operands in cache (in the interleaved runs each
// starts where a different pass left the caches).  The last line counts the multiply-adds of the tangent pass's matrix products against the forward
// pass's: along the input the same products (ẋ Wᵀ per layer), along every parameter two per layer
// after the first (ẋ Wᵀ + x Ẇᵀ; the first layer's x is the fixed input), so more than the forward
// pass's, and since the products are most of either pass, that jvp is more than two forward passes.
#include <time.h>

#include <algorithm>
#include <vector>

#include <fmt/core.h>

#include "autodiff/backend/pool.hpp"
#include "bench_util.hpp"
#include "nn/nn.hpp"

namespace {

using bench::median;

/// CPU time of the calling thread, in seconds.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(3, std::atoi(argv[1])) : 31;
  ad::backend::set_threads(1);
  const std::int64_t B = 128;
  nn::Rng rng(1);
  ad::Array<float> x(ad::Shape{B, 784});
  nn::fill_uniform(x, 0.0, 1.0, rng);
  std::vector<std::int32_t> labels(static_cast<std::size_t>(B));
  for (std::int64_t i = 0; i < B; ++i) labels[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(rng() % 10);
  const std::vector<std::int64_t> sizes = {784, 256, 128, 10};
  nn::MLP net(sizes, nn::relu, rng);
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
  ad::Array<float> u(x.shape());
  nn::fill_uniform(u, -1.0, 1.0, rng);
  // The passes compared with the forward pass; each returns a number for the checksum.
  const auto forward_pass = [&] { return static_cast<double>(forward().item()); };
  const auto jvp_pass = [&] {
    const ad::Tensor loss = forward();
    return ad::jvp(tape, loss, directions())[0];
  };
  const auto jvp_input_pass = [&] {
    tape.clear();
    const ad::Tensor input = tape.leaf(x);
    const ad::Tensor loss = nn::softmax_cross_entropy(net.forward(input), labels);
    return ad::jvp(tape, loss, {ad::Direction(input, u)})[0];
  };
  const auto timed = [&](const auto& pass, std::vector<double>& into) {
    const double t0 = cpu_now();
    check += pass();
    into.push_back(cpu_now() - t0);
  };
  std::vector<double> t_fwd, t_grad, t_jvp, t_jvp_input, t_hvp, t_hvp_tape;
  for (int r = 0; r < rounds; ++r) {
    timed(forward_pass, t_fwd);

    auto t0 = cpu_now();
    {
      const ad::Tensor loss = forward();
      const ad::Gradients g = tape.gradient(loss);
      check += g[params[0]->recorded()].flat(0);
    }
    t_grad.push_back(cpu_now() - t0);

    timed(jvp_pass, t_jvp);
    timed(jvp_input_pass, t_jvp_input);

    t0 = cpu_now();
    {
      const ad::Tensor loss = forward();
      const auto hv = nn::hvp(params, tape, loss, v);
      check += hv[0][0];
    }
    t_hvp.push_back(cpu_now() - t0);

    // The same on the tape alone (ad::hvp with the leaves' handles), without nn's per-parameter sums.
    t0 = cpu_now();
    {
      const ad::Tensor loss = forward();
      const ad::Gradients r = ad::hvp(tape, loss, directions());
      check += r[params[0]->recorded()].flat(0);
    }
    t_hvp_tape.push_back(cpu_now() - t0);
  }
  // The same three passes each run twice in a row, the second timed: every operand is then where
  // the pass itself left it (in cache), not where the previous, different pass did.
  std::vector<double> h_fwd, h_jvp, h_jvp_input, unused;
  for (int r = 0; r < rounds; ++r) {
    timed(forward_pass, unused);
    timed(forward_pass, h_fwd);
    timed(jvp_pass, unused);
    timed(jvp_pass, h_jvp);
    timed(jvp_input_pass, unused);
    timed(jvp_input_pass, h_jvp_input);
  }
  const double fwd = median(t_fwd) * 1e6, grad = median(t_grad) * 1e6, jv = median(t_jvp) * 1e6,
               hv = median(t_hvp) * 1e6;
  fmt::print("second_order batch={} grad_us={:.0f} hvp_us={:.0f} hvp_over_grad={:.2f} jvp_us={:.0f} "
             "jvp_over_forward={:.2f}\n",
             B, grad, hv, hv / grad, jv, jv / fwd);
  const auto least = [](const std::vector<double>& t) { return *std::min_element(t.begin(), t.end()) * 1e6; };
  // The tangent pass alone (jvp minus the recording it includes), against the forward pass.
  fmt::print("forward_us={:.0f} tangent_pass_over_forward={:.2f} hvp_tape_us={:.0f} rounds={} threads={} "
             "peak_gflops={:.1f} clock=thread_cpu (checksum {:.3g})\n",
             fwd, (jv - fwd) / fwd, median(t_hvp_tape) * 1e6, rounds, ad::backend::threads(), bench::peak_gflops(), check);
  fmt::print("jvp_input_us={:.0f} jvp_input_over_forward={:.2f}\n", median(t_jvp_input) * 1e6,
             median(t_jvp_input) * 1e6 / fwd);
  fmt::print("fastest: forward_us={:.0f} grad_us={:.0f} hvp_us={:.0f} hvp_tape_us={:.0f} jvp_us={:.0f} "
             "hvp_over_grad={:.2f} jvp_over_forward={:.2f}\n",
             least(t_fwd), least(t_grad), least(t_hvp), least(t_hvp_tape), least(t_jvp), least(t_hvp) / least(t_grad),
             least(t_jvp) / least(t_fwd));
  const double hot_fwd = median(h_fwd) * 1e6;
  fmt::print("repeated: forward_us={:.0f} jvp_us={:.0f} jvp_over_forward={:.2f} jvp_input_us={:.0f} "
             "jvp_input_over_forward={:.2f}\n",
             hot_fwd, median(h_jvp) * 1e6, median(h_jvp) * 1e6 / hot_fwd, median(h_jvp_input) * 1e6,
             median(h_jvp_input) * 1e6 / hot_fwd);
  // Multiply-adds of the products, from the layer sizes.
  double fwd_madds = 0.0, params_madds = 0.0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const double m = static_cast<double>(B * sizes[l] * sizes[l + 1]);
    fwd_madds += m;
    params_madds += l == 0 ? m : 2.0 * m;
  }
  fmt::print("tangent_product_madds_over_forward params={:.3f} input={:.3f}\n", params_madds / fwd_madds,
             fwd_madds / fwd_madds);
  return 0;
}
