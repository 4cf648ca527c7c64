// What nn::fit's finiteness check costs: one epoch of a 784-256-10 MLP (Fashion-MNIST's sizes, on
// synthetic data) with FitOptions::check_finite on and off, interleaved, medians of the runs.
//   build/bench/fit_check [runs, default 7]
#include <cstdio>
#include <cstdlib>

#include "bench_util.hpp"
#include "nn/nn.hpp"

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 7;
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
  return 0;
}
