// What nn::fit's finiteness check costs, and how long a Fashion-MNIST epoch takes.
//
// 1. One epoch of a 784-256-10 MLP (Fashion-MNIST's sizes, on synthetic data) with
//    FitOptions::check_finite on and off, interleaved, medians of the runs:
//      fit_check: 784-256-10, batch 128, <n> samples: check on <ms>, off <ms>, ratio <on/off> (<runs> runs each)
// 2. When the Fashion-MNIST files are installed (dataset-fashion-mnist), the training epoch of
//    examples/fashion_mnist (784-256-128-10, SGD with momentum 0.9 and weight decay 1e-4, learning
//    rate 0.05, batch 128, seed 2024), with the check on and off, runs interleaved, each of
//    <epochs> epochs of which the first is left out; and one pass of nn::Batches alone (the
//    gathering of the shuffled rows into batches):
//      fit_epoch fashion_mnist: median <s> s check on, <s> s off (<n> epochs each), gather <ms> ms, threads=<t>
//        late_events=<n> jobs_run_alone=<jobs the pool ran on the calling thread alone, backing off>/<jobs>
// 3. Where a step of that epoch goes: the loop of nn::fit written out (gather the next batch,
//    forward, loss and its value, backward sweep, optimiser: collect and apply_checked), each phase
//    timed, medians over the steps of the epochs after the first:
//      fit_phases fashion_mnist: step <us> = gather <us> + forward <us> + loss <us> + backward <us>
//        + update <us> (+ rest), threads=<t> late_events=<n> jobs_run_alone=<n>/<jobs>
//
//   build/bench/fit_check [runs, default 7] [Fashion-MNIST runs, default 3] [epochs per run, default 3]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autodiff/backend/pool.hpp"
#include "bench_util.hpp"
#include "nn/nn.hpp"

namespace {

void synthetic(int runs) {
  const std::int64_t n = 6016, features = 784;
  nn::Dataset data;
  data.classes = 10;
  data.x = ad::Array<float>(ad::Shape{n, features});
  nn::Rng gen(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (std::int64_t i = 0; i < data.x.size(); ++i) data.x[i] = u(gen);
  for (std::int64_t i = 0; i < n; ++i) data.labels.push_back(static_cast<std::int32_t>(i % 10));

  std::vector<double> on, off;
  for (int r = 0; r < 2 * runs + 2; ++r) {
    const bool check = r % 2 == 0;
    nn::Rng init(2), rng(3);
    nn::MLP net({features, 256, 10}, nn::relu, nn::identity, init);
    nn::SGD opt(net.parameters(), {.lr = 0.01, .momentum = 0.9});
    const auto t0 = bench::Clock::now();
    nn::fit(net, opt, data, rng, {.epochs = 1, .batch_size = 128, .out = nullptr, .check_finite = check});
    const double s = bench::seconds_between(t0, bench::Clock::now());
    if (r >= 2) (check ? on : off).push_back(s);  // the first pair warms up
  }
  const double a = bench::median(on), b = bench::median(off);
  std::printf("fit_check: 784-256-10, batch 128, %lld samples: check on %.1f ms, off %.1f ms, ratio %.3f (%d runs each)\n",
              static_cast<long long>(n), 1e3 * a, 1e3 * b, a / b, runs);
}

void fashion_mnist(const nn::Dataset& train, int runs, int epochs) {
  std::vector<double> on, off, gather;
  const ad::backend::PoolStats before = ad::backend::pool_stats();
  for (int r = 0; r < 2 * runs; ++r) {
    const bool check = r % 2 == 0;
    nn::Rng rng(2024);
    nn::MLP net({784, 256, 128, 10}, nn::relu, rng);
    nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
    const auto reports =
        nn::fit(net, opt, train, rng, {.epochs = epochs, .batch_size = 128, .out = nullptr, .check_finite = check});
    for (std::size_t e = 1; e < reports.size(); ++e) (check ? on : off).push_back(reports[e].seconds);
    // The batches alone: shuffling and gathering rows, nothing else.
    const auto t0 = bench::Clock::now();
    float sink = 0;
    for (auto [x, y] : nn::batches(train, 128, rng)) sink += x[0] + static_cast<float>(y[0]);
    gather.push_back(bench::seconds_between(t0, bench::Clock::now()));
    if (sink < 0) std::printf("%g\n", static_cast<double>(sink));
  }
  if (on.empty()) return;
  const ad::backend::PoolStats after = ad::backend::pool_stats();
  std::printf("fit_epoch fashion_mnist: median %.3f s check on, %.3f s off (%zu epochs each), gather %.1f ms, threads=%d "
              "late_events=%llu jobs_run_alone=%llu/%llu\n",
              bench::median(on), bench::median(off), on.size(), 1e3 * bench::median(gather), ad::backend::threads(),
              static_cast<unsigned long long>(after.late - before.late),
              static_cast<unsigned long long>(after.serial_backoff - before.serial_backoff),
              static_cast<unsigned long long>(after.jobs - before.jobs));
}

/// Phase medians of the Fashion-MNIST training step (part 3 above).
void fashion_mnist_phases(const nn::Dataset& train, int epochs) {
  nn::Rng rng(2024);
  nn::MLP net({784, 256, 128, 10}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  ad::Tape tape;
  enum { gather, forward, loss, backward, update, step, phases };
  std::vector<double> t[phases];
  const ad::backend::PoolStats before = ad::backend::pool_stats();
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    auto batches = nn::batches(train, 128, rng);
    for (auto it = batches.begin(); it != batches.end();) {
      const auto t1 = bench::Clock::now();
      const auto [x, y] = *it;
      tape.clear();
      const ad::Tensor scores = net(tape, x);
      const auto t2 = bench::Clock::now();
      const ad::Tensor J = nn::softmax_cross_entropy(scores, y);
      const double value = J.item();
      const auto t3 = bench::Clock::now();
      ad::Gradients g = tape.gradient(J);
      const auto t4 = bench::Clock::now();
      opt.collect(g);
      const bool bad = opt.apply_checked().has_value() || !std::isfinite(value);
      const auto t5 = bench::Clock::now();
      ++it;  // gathers the next batch
      const auto t6 = bench::Clock::now();
      if (bad) std::printf("fit_phases: a non-finite step\n");
      if (epoch == 1) continue;
      const bench::Clock::time_point at[] = {t5, t6, t1, t2, t3, t4, t5};  // gather, then the others in order
      t[gather].push_back(1e6 * bench::seconds_between(at[0], at[1]));
      for (int p = forward; p < step; ++p) t[p].push_back(1e6 * bench::seconds_between(at[p + 1], at[p + 2]));
      t[step].push_back(1e6 * bench::seconds_between(t1, t6));
    }
  }
  if (t[step].empty()) return;
  const ad::backend::PoolStats after = ad::backend::pool_stats();
  std::printf("fit_phases fashion_mnist: step %.1f us = gather %.1f + forward %.1f + loss %.1f + backward %.1f + "
              "update %.1f (medians of %zu steps), threads=%d late_events=%llu jobs_run_alone=%llu/%llu\n",
              bench::median(t[step]), bench::median(t[gather]), bench::median(t[forward]), bench::median(t[loss]),
              bench::median(t[backward]), bench::median(t[update]), t[step].size(), ad::backend::threads(),
              static_cast<unsigned long long>(after.late - before.late),
              static_cast<unsigned long long>(after.serial_backoff - before.serial_backoff),
              static_cast<unsigned long long>(after.jobs - before.jobs));
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 7;
  const int fashion_runs = argc > 2 ? std::atoi(argv[2]) : 3;
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 3;
  if (runs > 0) synthetic(runs);
  if (fashion_runs > 0 && epochs > 1) {
    nn::Dataset train;
    try {
      train = nn::load_fashion_mnist("train");
    } catch (const nn::DataError& e) {
      std::printf("fit_epoch fashion_mnist: skipped (%s)\n", e.what());
      return 0;
    }
    fashion_mnist(train, fashion_runs, epochs);
    fashion_mnist_phases(train, epochs);
  }
  return 0;
}
