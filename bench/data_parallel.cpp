// Data-parallel training: the Fashion-MNIST MLP (784-256-128-10, SGD with momentum, global batch
// 256) trained by one process and by two, each process with one thread.  Run as a plain
// program: it starts the runs itself through mpiexec, interleaved, and prints per rank count
//
//   data_parallel ranks=<n> epoch_s=<t> speedup=<r> allreduce_share=<f>
//
// epoch_s: median seconds of a training pass (validation excluded) over every epoch of every
// repetition; speedup: the one-process epoch_s over this one; allreduce_share: the part of the
// training pass rank 0 spent summing the gradients over the ranks (the time the sweep did not hide,
// including any wait for a slower rank).  The first two-rank line has the defaults (the sums go
// through a shared-memory window, each parameter's started as soon as its gradient is final); a
// second has the overlap turned off (each starts after the whole sweep); a third sums with
// MPI_Allreduce instead of the window.  Then, per configuration, the fastest single step of one
// more pass (the ranks start each step together):
//
//   data_parallel_step ranks=<n> step_ms_min=<t> speedup=<r> allreduce_ms_min=<a>
//
// which is as close as a shared machine gets to an idle one.  A last line compares the test
// accuracies of the one- and two-process models (means over the repetitions, each repetition with
// its own seed: one seed alone says little, since two runs that differ only in float rounding drift
// apart over an epoch).
//
//   data_parallel [--epochs E (2)] [--repeats R (3)] [--data DIR]
//
// Without the Fashion-MNIST files (Debian: dataset-fashion-mnist) it trains on random data of the
// same shape and says so on every line (timings hold, accuracies mean nothing then).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include <fmt/core.h>
#include <unistd.h>

#include "bench_util.hpp"
#include "nn/nn.hpp"

namespace {

constexpr std::int64_t global_batch = 256;

struct Run {
  double epoch_s = 0;      // median over the run's epochs
  double allreduce_share = 0;
  double accuracy = 0;
  double step_min_ms = 0, allreduce_min_ms = 0;
  std::vector<double> epochs;
};

/// Fashion-MNIST from `dir`, or random images and labels of the same shape when it is missing.
bool load(const std::filesystem::path& dir, nn::Dataset& train, nn::Dataset& test) {
  try {
    train = nn::load_fashion_mnist("train", dir);
    test = nn::load_fashion_mnist("t10k", dir);
    return true;
  } catch (const nn::DataError&) {
    for (auto [d, n, seed] : {std::tuple{&train, 60000, 1}, std::tuple{&test, 10000, 2}}) {
      nn::Rng rng(static_cast<std::uint64_t>(seed));
      std::uniform_real_distribution<float> pixel(0.0f, 1.0f);
      std::uniform_int_distribution<std::int32_t> label(0, 9);
      d->classes = 10;
      d->x = ad::Array<float>(ad::Shape{n, 784});
      for (std::int64_t i = 0; i < d->x.size(); ++i) d->x.data()[i] = pixel(rng);
      d->labels.resize(static_cast<std::size_t>(n));
      for (auto& y : d->labels) y = label(rng);
    }
    return false;
  }
}

/// One run, on every rank of the job: prints one "run ..." line from rank 0.
int child(int epochs, bool overlap, bool shared, std::uint64_t seed, const std::filesystem::path& dir) {
  nn::DistributedContext group({.overlap = overlap, .shared_memory = shared});
  nn::Dataset train, test;
  const bool real = load(dir, train, test);
  nn::Rng rng(seed);
  nn::MLP net({784, 256, 128, 10}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  group.reset_stats();
  const auto reports = nn::fit(net, opt, train, rng,
                               {.epochs = epochs, .batch_size = global_batch, .validation = &test, .out = nullptr,
                                .distributed = group.size() > 1 ? &group : nullptr});
  const double allreduce = group.stats().seconds;  // in fit's epochs
  double training = 0;
  std::string times;
  for (const auto& r : reports) {
    training += r.seconds;
    times += fmt::format("{}{:.4f}", times.empty() ? "" : ",", r.seconds);
  }
  // One more pass step by step, each step timed alone (the ranks start it together): the fastest
  // step is the nearest this machine gets to an idle one, whatever else runs on it.
  const bool distributed = group.size() > 1;
  const nn::Shard shard{group.rank(), group.size()};
  ad::Tape tape;
  double step_min = 1e9, allreduce_min = 1e9;
  std::int64_t done = 0;
  for (auto [x, y] : nn::batches(train, global_batch, rng, shard)) {
    const std::int64_t batch = std::min(global_batch, train.size() - done);
    done += batch;
    if (distributed) group.barrier();
    const double allreduce_before = group.stats().seconds;
    const auto t0 = bench::Clock::now();
    tape.clear();
    const ad::Tensor J = nn::softmax_cross_entropy(net(tape, x), y);
    if (distributed) group.step(opt, tape, &J, static_cast<double>(y.size()) / static_cast<double>(batch));
    else opt.step(tape.gradient(J));
    if (batch < global_batch) continue;  // the short last batch is not a step of this size
    step_min = std::min(step_min, bench::seconds_between(t0, bench::Clock::now()));
    allreduce_min = std::min(allreduce_min, group.stats().seconds - allreduce_before);
  }
  if (group.root())
    fmt::print("run ranks={} allreduce_s={:.4f} training_s={:.4f} accuracy={:.4f} data={} step_min_ms={:.4f} "
               "allreduce_min_ms={:.4f} epochs_s={}\n",
               group.size(), allreduce, training, reports.back().validation.accuracy,
               real ? "fashion-mnist" : "synthetic", 1e3 * step_min, 1e3 * allreduce_min, times);
  return 0;
}

/// Starts `mpiexec -n ranks` on this program in child mode and reads its result line.
Run launch(int ranks, bool overlap, bool shared, int epochs, std::uint64_t seed, const std::string& data, bool& real) {
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  const std::string cmd =
      fmt::format("mpiexec -n {} --bind-to core {} --child --epochs {} --overlap {} --shared-memory {} --seed {} "
                  "--data '{}'",
                  ranks, self, epochs, overlap ? 1 : 0, shared ? 1 : 0, seed, data);
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot start " + cmd);
  std::string out;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  const int status = ::pclose(p);
  const auto at = out.find("run ranks=");
  if (status != 0 || at == std::string::npos)
    throw std::runtime_error(fmt::format("{} failed (status {}):\n{}", cmd, status, out));
  std::map<std::string, std::string> kv;
  std::string line = out.substr(at, out.find('\n', at) - at);
  for (std::size_t pos = 0; pos < line.size();) {
    const std::size_t end = std::min(line.find(' ', pos), line.size());
    const std::string field = line.substr(pos, end - pos);
    const std::size_t eq = field.find('=');
    if (eq != std::string::npos) kv[field.substr(0, eq)] = field.substr(eq + 1);
    pos = end + 1;
  }
  Run r;
  for (std::size_t pos = 0; pos < kv["epochs_s"].size();) {
    const std::size_t end = std::min(kv["epochs_s"].find(',', pos), kv["epochs_s"].size());
    r.epochs.push_back(std::stod(kv["epochs_s"].substr(pos, end - pos)));
    pos = end + 1;
  }
  r.epoch_s = bench::median(r.epochs);
  r.allreduce_share = std::stod(kv["allreduce_s"]) / std::stod(kv["training_s"]);
  r.accuracy = std::stod(kv["accuracy"]);
  r.step_min_ms = std::stod(kv["step_min_ms"]);
  r.allreduce_min_ms = std::stod(kv["allreduce_min_ms"]);
  real = kv["data"] == "fashion-mnist";
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int epochs = 2, repeats = 3;
  bool is_child = false, overlap = true, shared = true;
  std::uint64_t seed = 2024;
  std::string data = nn::fashion_mnist_dir.string();
  for (int k = 1; k < argc; ++k) {
    const std::string a = argv[k];
    const bool has_value = k + 1 < argc;
    if (a == "--child") is_child = true;
    else if (a == "--epochs" && has_value) epochs = std::atoi(argv[++k]);
    else if (a == "--repeats" && has_value) repeats = std::atoi(argv[++k]);
    else if (a == "--overlap" && has_value) overlap = std::atoi(argv[++k]) != 0;
    else if (a == "--shared-memory" && has_value) shared = std::atoi(argv[++k]) != 0;
    else if (a == "--seed" && has_value) seed = std::strtoull(argv[++k], nullptr, 10);
    else if (a == "--data" && has_value) data = argv[++k];
    else {
      fmt::print(stderr, "usage: data_parallel [--epochs E] [--repeats R] [--data DIR]\n");
      return 2;
    }
  }
  if (epochs < 1 || repeats < 1) {
    fmt::print(stderr, "data_parallel: --epochs and --repeats must be at least 1\n");
    return 2;
  }
  if (is_child) return child(epochs, overlap, shared, seed, data);

  // The children: one thread per process (deltagrad's pool and BLAS).  Open MPI refuses to start as root unless told
  // (containers and CI run as root); other MPI implementations ignore these variables.
  ::setenv("DELTAGRAD_NUM_THREADS", "1", 1);
  ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
  ::setenv("OMP_NUM_THREADS", "1", 1);
  if (::geteuid() == 0) {
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  struct Config {
    int ranks;
    bool overlap, shared;
    std::vector<double> epochs, shares, accuracies;
    double step_min_ms = 1e9, allreduce_min_ms = 1e9;
  };
  std::vector<Config> configs = {{1, true, true, {}, {}, {}}, {2, true, true, {}, {}, {}}, {2, false, true, {}, {}, {}},
                                 {2, true, false, {}, {}, {}}};
  auto label = [](const Config& c) {
    return std::string(c.overlap ? "" : "  overlap=off") + (c.shared ? "" : "  shared_memory=off");
  };
  bool real = true;
  try {
    for (int rep = 0; rep < repeats; ++rep)
      for (Config& c : configs) {  // interleaved, so that a noisy stretch hits every configuration
        const Run r = launch(c.ranks, c.overlap, c.shared, epochs, seed + static_cast<std::uint64_t>(rep), data, real);
        c.epochs.insert(c.epochs.end(), r.epochs.begin(), r.epochs.end());
        c.shares.push_back(r.allreduce_share);
        c.accuracies.push_back(r.accuracy);
        c.step_min_ms = std::min(c.step_min_ms, r.step_min_ms);
        c.allreduce_min_ms = std::min(c.allreduce_min_ms, r.allreduce_min_ms);
      }
  } catch (const std::exception& e) {
    fmt::print(stderr, "data_parallel: {}\n", e.what());
    return 1;
  }
  const std::string note = real ? "" : "  data=synthetic";
  const double one = bench::median(configs[0].epochs);
  for (const Config& c : configs) {
    const double t = bench::median(c.epochs);
    fmt::print("data_parallel ranks={} epoch_s={:.3f} speedup={:.2f} allreduce_share={:.3f}{}{}\n", c.ranks, t,
               one / t, bench::median(c.shares), label(c), note);
  }
  for (const Config& c : configs)
    fmt::print("data_parallel_step ranks={} step_ms_min={:.3f} speedup={:.2f} allreduce_ms_min={:.3f}{}{}\n", c.ranks,
               c.step_min_ms, configs[0].step_min_ms / c.step_min_ms, c.allreduce_min_ms,
               label(c), note);
  auto mean = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / v.size(); };
  const double a1 = mean(configs[0].accuracies), a2 = mean(configs[1].accuracies);
  fmt::print("data_parallel test_accuracy ranks=1 {:.4f} ranks=2 {:.4f} difference_points={:.2f}  (means of {} seeds, "
             "{} epochs, batch {}){}\n",
             a1, a2, 100 * std::abs(a1 - a2), repeats, epochs, global_batch, note);
}
