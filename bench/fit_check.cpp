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
//
//   build/bench/fit_check [runs, default 7] [Fashion-MNIST runs, default 3] [epochs per run, default 3]
#include <cstdio>
#include <cstdlib>

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

void fashion_mnist(int runs, int epochs) {
  nn::Dataset train;
  try {
    train = nn::load_fashion_mnist("train");
  } catch (const nn::DataError& e) {
    std::printf("fit_epoch fashion_mnist: skipped (%s)\n", e.what());
    return;
  }
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

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 7;
  const int fashion_runs = argc > 2 ? std::atoi(argv[2]) : 3;
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 3;
  if (runs > 0) synthetic(runs);
  if (fashion_runs > 0 && epochs > 1) fashion_mnist(fashion_runs, epochs);
  return 0;
}
