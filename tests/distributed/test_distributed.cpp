// nn/distributed, run on two ranks: fit on both ranks is one model (bit-identical weights on every
// rank) and the same model as one process training with the same global batch; uneven and empty
// shards count by their rows; validation is summed over the ranks; only rank 0 prints and writes.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include <mpi.h>
#include <unistd.h>

#include "nn/nn.hpp"
#include "nn_temp.hpp"
#include "world.hpp"

namespace {

/// `classes` Gaussian clusters in `features` dimensions, n samples.
nn::Dataset clusters(std::int64_t n, std::int64_t features, std::int32_t classes, std::uint64_t seed) {
  nn::Rng rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centres(static_cast<std::size_t>(classes * features));
  for (float& c : centres) c = 2.0f * normal(rng);
  nn::Dataset d;
  d.classes = classes;
  d.x = ad::Array<float>(ad::Shape{n, features});
  for (std::int64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::int32_t>(i % classes);
    for (std::int64_t f = 0; f < features; ++f)
      d.x(i, f) = centres[static_cast<std::size_t>(k * features + f)] + normal(rng);
    d.labels.push_back(k);
  }
  return d;
}

/// Whether every rank holds exactly rank 0's bytes in these parameters (compared element by
/// element, not by hash).
bool same_bits_on_every_rank(const nn::ParameterList& params) {
  int same = 1;
  for (const auto& p : params) {
    const ad::View v = p->view();
    const std::size_t bytes = static_cast<std::size_t>(v.size()) * ad::size_of(v.dtype());
    std::vector<char> root(static_cast<const char*>(v.data()), static_cast<const char*>(v.data()) + bytes);
    MPI_Bcast(root.data(), static_cast<int>(bytes), MPI_CHAR, 0, MPI_COMM_WORLD);
    same &= std::memcmp(root.data(), v.data(), bytes) == 0;
  }
  MPI_Allreduce(MPI_IN_PLACE, &same, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  return same == 1;
}

bool same_bits(const nn::ParameterList& a, const nn::ParameterList& b) {
  for (std::size_t k = 0; k < a.size(); ++k) {
    const ad::View u = a[k]->view(), v = b[k]->view();
    if (std::memcmp(u.data(), v.data(), static_cast<std::size_t>(u.size()) * ad::size_of(u.dtype())) != 0)
      return false;
  }
  return true;
}

/// The largest |a − b| / max(1, |b|) over every parameter element.
double max_difference(const nn::ParameterList& a, const nn::ParameterList& b) {
  double worst = 0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    const ad::View u = a[k]->view(), v = b[k]->view();
    REQUIRE(u.shape() == v.shape());
    for (std::int64_t i = 0; i < u.size(); ++i)
      worst = std::max(worst, std::abs(u.flat(i) - v.flat(i)) / std::max(1.0, std::abs(v.flat(i))));
  }
  return worst;
}

/// An MLP trained by fit: alone (group null) or with the group.  The ranks start from different
/// seeds on purpose: fit must start every rank from rank 0's weights and shuffling engine.
struct Trained {
  nn::MLP net;
  std::vector<nn::EpochReport> reports;
};
Trained train_mlp(const nn::Dataset& data, std::int64_t batch, int epochs, nn::ProcessGroup* group,
                  const nn::Dataset* validation = nullptr) {
  nn::Rng rng(11 + (group ? 1000 * static_cast<std::uint64_t>(group->rank()) : 0));
  nn::MLP net({data.features(), 16, data.classes}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3});
  auto reports = nn::fit(net, opt, data, rng,
                         {.epochs = epochs, .batch_size = batch, .validation = validation, .out = nullptr,
                          .distributed = group});
  return {std::move(net), std::move(reports)};
}

// float32 training: the two runs differ only in the order in which each gradient's sum over the
// batch is rounded (two half-batch products and one addition, against one product).  That moves a
// gradient element by a few float ulps (~1e-7 relative); sixteen momentum steps carry it into the
// weights.  Measured: up to 3.4e-7 (relative to max(1, |w|)); 1e-5 leaves room for other BLAS
// kernels while still failing for a wrong weighting (uneven shards weighted by 1/2 each instead of
// by their share of the rows move the weights by 1.4e-2 here).
constexpr double f32_tolerance = 1e-5;

}  // namespace

TEST_CASE("distributed: the test runs on two ranks") {
  REQUIRE(world().size() == 2);
  CHECK(world().rank() == (world().root() ? 0 : 1));
}

TEST_CASE("distributed: after 16 steps of fit the weights are bit-identical on both ranks and match one process") {
  const nn::Dataset data = clusters(256, 12, 4, 1);  // 8 batches of 32: 16 rows per rank
  const Trained alone = train_mlp(data, 32, 2, nullptr);
  world().options.overlap = true;
  const Trained overlapped = train_mlp(data, 32, 2, &world());
  world().options.overlap = false;
  const Trained after_sweep = train_mlp(data, 32, 2, &world());
  world().options.overlap = true;

  CHECK(same_bits_on_every_rank(overlapped.net.parameters()));
  CHECK(same_bits_on_every_rank(after_sweep.net.parameters()));
  // Starting the allreduces during the sweep changes when they run, not what they sum.
  CHECK(same_bits(overlapped.net.parameters(), after_sweep.net.parameters()));
  const double d = max_difference(overlapped.net.parameters(), alone.net.parameters());
  INFO("largest difference from one process: " << d);
  CHECK(d <= f32_tolerance);
  CHECK(d > 0);  // the runs did differ in rounding: the comparison is not vacuous
  // The reported losses are over both ranks' rows, and agree with the single process's.
  REQUIRE(overlapped.reports.size() == 2);
  CHECK(overlapped.reports[0].loss == doctest::Approx(alone.reports[0].loss).epsilon(1e-5));
  CHECK(overlapped.reports[1].accuracy == alone.reports[1].accuracy);
}

namespace {

/// The options of world() for the length of a scope.
struct WithOptions {
  nn::DistributedOptions saved = world().options;
  explicit WithOptions(nn::DistributedOptions o) { world().options = o; }
  ~WithOptions() { world().options = saved; }
};

}  // namespace

// Two ranks sum each gradient element once, a + b, and IEEE addition is commutative: the shared
// window (every rank computes part0 + part1) and MPI_Allreduce (whatever order Open MPI adds in)
// give the same bits, with the sums started during the sweep or after it.
TEST_CASE("distributed: summing through the shared window gives MPI_Allreduce's bits") {
  const nn::Dataset data = clusters(256, 12, 4, 9);
  std::vector<Trained> runs;
  for (bool shared : {true, false})
    for (bool overlap : {true, false}) {
      WithOptions with({.overlap = overlap, .shared_memory = shared});
      world().reset_stats();
      runs.push_back(train_mlp(data, 32, 2, &world()));
      INFO("shared_memory " << shared << ", overlap " << overlap);
      // The test's ranks run on one machine: the window is used exactly when asked for.
      CHECK(world().shared_window() == shared);
      CHECK(same_bits_on_every_rank(runs.back().net.parameters()));
      // Every step passes every gradient byte once: 16 steps of the 12-16-4 MLP's 276 floats.
      CHECK(world().stats().steps == 16);
      CHECK(world().stats().bytes == 16 * 276 * 4);
    }
  for (std::size_t k = 1; k < runs.size(); ++k) {
    INFO("run " << k);
    CHECK(same_bits(runs[k].net.parameters(), runs[0].net.parameters()));
  }
}

TEST_CASE("distributed: the shared window is made anew for larger parameters, and kept for smaller ones") {
  const nn::Dataset data = clusters(128, 12, 4, 10);
  auto run = [&](std::int64_t width, bool shared) {
    WithOptions with({.shared_memory = shared});
    nn::Rng rng(21);
    nn::MLP net({data.features(), width, data.classes}, nn::relu, rng);
    nn::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
    nn::fit(net, opt, data, rng, {.epochs = 1, .batch_size = 32, .out = nullptr, .distributed = &world()});
    CHECK(world().shared_window() == shared);
    return net;
  };
  for (std::int64_t width : {8, 64, 4, 96}) {  // 8 → 64 and 4 → 96 grow the window, 64 → 4 reuses it
    INFO("width " << width);
    const nn::MLP a = run(width, true), b = run(width, false);
    CHECK(same_bits_on_every_rank(a.parameters()));
    CHECK(same_bits(a.parameters(), b.parameters()));
  }
}

TEST_CASE("distributed: rank 0's choice of the shared window governs every rank") {
  const nn::Dataset data = clusters(128, 12, 4, 11);
  const Trained alone = train_mlp(data, 32, 1, nullptr);
  for (int sharing : {0, 1}) {  // the rank that asks for the window
    WithOptions with({.shared_memory = world().rank() == sharing});
    const Trained together = train_mlp(data, 32, 1, &world());
    CHECK(world().shared_window() == (sharing == 0));
    CHECK(same_bits_on_every_rank(together.net.parameters()));
    CHECK(max_difference(together.net.parameters(), alone.net.parameters()) <= f32_tolerance);
  }
}

TEST_CASE("distributed: rank 0's plan governs, so ranks whose overlap settings differ still agree") {
  const nn::Dataset data = clusters(128, 12, 4, 8);
  const Trained alone = train_mlp(data, 32, 1, nullptr);
  for (int overlapping : {0, 1}) {  // the rank that overlaps
    world().options.overlap = world().rank() == overlapping;
    const Trained together = train_mlp(data, 32, 1, &world());
    CHECK(same_bits_on_every_rank(together.net.parameters()));
    CHECK(max_difference(together.net.parameters(), alone.net.parameters()) <= f32_tolerance);
  }
  world().options.overlap = true;
}

TEST_CASE("distributed: uneven shards, down to an empty one, count by their rows") {
  // 201 rows in batches of 25: each step splits 12 + 13, and the last batch has one row, which
  // rank 1 takes while rank 0 has none (and contributes zeros to the sum).
  const nn::Dataset data = clusters(201, 12, 4, 2);
  const Trained alone = train_mlp(data, 25, 2, nullptr);
  const Trained together = train_mlp(data, 25, 2, &world());
  CHECK(same_bits_on_every_rank(together.net.parameters()));
  const double d = max_difference(together.net.parameters(), alone.net.parameters());
  INFO("largest difference from one process: " << d);
  CHECK(d <= f32_tolerance);
}

namespace {

/// relu(L(relu(L(x)))) then R: the parameters of L are read by two leaves each, so their gradient
/// is a sum the optimiser forms after the sweep; R's come from one leaf each.
struct SharedLayer : nn::Module {
  nn::Linear L, R;
  SharedLayer(std::int64_t width, std::int64_t classes, nn::Rng& rng)
      : L(width, width, rng, {.layer = 1}), R(width, classes, rng, {.layer = 2}) {}
  ad::Tensor forward(const ad::Tensor& x) override { return R(ad::relu(L(ad::relu(L(x))))); }
  nn::ParameterList parameters() const override { return {L.parameters()[0], L.parameters()[1], R.parameters()[0],
                                                          R.parameters()[1]}; }
  std::string describe() const override { return "SharedLayer"; }
};

}  // namespace

TEST_CASE("distributed: a parameter read by two leaves counts both, on every rank") {
  const nn::Dataset data = clusters(96, 8, 4, 7);
  auto run = [&](nn::ProcessGroup* group) {
    nn::Rng rng(5 + (group ? 100 * static_cast<std::uint64_t>(group->rank()) : 0));
    auto net = std::make_unique<SharedLayer>(8, 4, rng);
    nn::SGD opt(net->parameters(), {.lr = 0.05, .momentum = 0.9});
    nn::fit(*net, opt, data, rng, {.epochs = 2, .batch_size = 24, .out = nullptr, .distributed = group});
    return net;
  };
  const auto alone = run(nullptr);
  for (bool overlap : {true, false}) {
    world().options.overlap = overlap;
    const auto together = run(&world());
    CHECK(same_bits_on_every_rank(together->parameters()));
    const double d = max_difference(together->parameters(), alone->parameters());
    INFO("overlap " << overlap << ": largest difference from one process: " << d);
    CHECK(d <= f32_tolerance);
  }
  world().options.overlap = true;
}

TEST_CASE("distributed: float64 steps averaged over the ranks equal one process's to 1e-14") {
  // The group's step directly, without fit, on a float64 MLP: each rank sweeps its part of the
  // batch (13 and 14 of 27 rows), seeded with its share of the rows; the sum of the two weighted
  // gradients differs from the one-process gradient by double rounding only (~1e-16 relative per
  // element).  Measured after five Adam steps: 6e-17; 1e-14 allows ~100 ulps.
  const std::int64_t features = 6, rows = 27;
  nn::Rng data_rng(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  ad::Array<double> x(ad::Shape{rows, features});
  std::vector<std::int32_t> y;
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t f = 0; f < features; ++f) x(i, f) = normal(data_rng) + (i % 3 == f % 3 ? 1.5 : 0.0);
    y.push_back(static_cast<std::int32_t>(i % 3));
  }
  const auto [lo, hi] = nn::shard_range(rows, {world().rank(), world().size()});
  ad::Array<double> x_part(ad::Shape{hi - lo, features});
  for (std::int64_t i = lo; i < hi; ++i)
    for (std::int64_t f = 0; f < features; ++f) x_part(i - lo, f) = x(i, f);
  const std::vector<std::int32_t> y_part(y.begin() + lo, y.begin() + hi);

  auto make = [&] {
    nn::Rng rng(3);
    return nn::MLP({features, 10, 3}, nn::tanh, rng, {.dtype = ad::DType::f64});
  };
  nn::MLP alone = make();
  nn::Adam opt_alone(alone.parameters(), {.lr = 0.01, .weight_decay = 1e-3});
  ad::Tape tape;
  for (int step = 0; step < 5; ++step) {
    tape.clear();
    opt_alone.step(tape.gradient(nn::softmax_cross_entropy(alone(tape, x), y)));
  }
  std::vector<nn::MLP> runs;
  for (bool shared : {true, false}) {
    WithOptions with({.shared_memory = shared});
    nn::MLP together = make();
    nn::Adam opt_together(together.parameters(), {.lr = 0.01, .weight_decay = 1e-3});
    world().broadcast(together.parameters());  // plans the next step anew, with these options
    world().reset_stats();
    for (int step = 0; step < 5; ++step) {
      tape.clear();
      const ad::Tensor J = nn::softmax_cross_entropy(together(tape, x_part), y_part);
      world().step(opt_together, tape, &J, static_cast<double>(hi - lo) / static_cast<double>(rows));
    }
    INFO("shared_memory " << shared);
    CHECK(world().shared_window() == shared);
    CHECK(world().stats().steps == 5);
    CHECK(same_bits_on_every_rank(together.parameters()));
    const double d = max_difference(together.parameters(), alone.parameters());
    INFO("largest difference from one process: " << d);
    CHECK(d <= 1e-14);
    runs.push_back(std::move(together));
  }
  CHECK(same_bits(runs[0].parameters(), runs[1].parameters()));  // a + b either way
}

TEST_CASE("distributed: a step that makes a weight non-finite is undone on every rank and named the same") {
  // SGD with α = 1e300 overflows f32 weights.  With check_finite the group's step applies it through
  // Optimizer::apply_checked: every rank gets the same element back and keeps the weights it had,
  // which a twin network made and broadcast the same way still holds.
  auto make = [] {
    nn::Rng rng(7);
    return nn::MLP({4, 8, 3}, nn::tanh, rng);
  };
  nn::MLP net = make(), twin = make();
  world().broadcast(net.parameters());
  world().broadcast(twin.parameters());
  ad::Array<float> x(ad::Shape{6, 4});
  for (std::int64_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>((i * 7) % 5) - 2.0f;
  const std::vector<std::int32_t> y = {0, 1, 2, 0, 1, 2};
  for (bool shared : {true, false}) {
    INFO("shared_memory " << shared);
    WithOptions with({.shared_memory = shared});
    nn::SGD opt(net.parameters(), {.lr = 1e300});
    world().broadcast(net.parameters());  // plans the next step anew, with these options
    ad::Tape tape;
    const ad::Tensor J = nn::softmax_cross_entropy(net(tape, x), y);
    const auto bad = world().step(opt, tape, &J, 0.5, true);
    REQUIRE(bad.has_value());
    CHECK(!std::isfinite(bad->value));
    CHECK(same_bits(net.parameters(), twin.parameters()));
    CHECK(same_bits_on_every_rank(net.parameters()));
    double where[] = {static_cast<double>(bad->parameter), static_cast<double>(bad->index)};
    const double mine[] = {where[0], where[1]};
    world().sum(where);
    CHECK(where[0] == mine[0] * world().size());
    CHECK(where[1] == mine[1] * world().size());
  }
}

TEST_CASE("distributed: validation loss and accuracy are summed over the ranks' parts") {
  const nn::Dataset data = clusters(128, 12, 4, 3), validation = clusters(101, 12, 4, 4);
  Trained t = train_mlp(data, 32, 1, &world(), &validation);
  // Every rank evaluated 50 or 51 rows; the report is over all 101, and every rank has it.
  const nn::Evaluation whole = nn::evaluate(t.net, validation);
  CHECK(t.reports[0].validation.accuracy == whole.accuracy);
  // The loss is a float32 mean per evaluation batch, summed in other groups of rows: float rounding.
  CHECK(t.reports[0].validation.loss == doctest::Approx(whole.loss).epsilon(1e-6));
  double accuracy = t.reports[0].validation.accuracy;
  MPI_Bcast(&accuracy, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  CHECK(accuracy == t.reports[0].validation.accuracy);
}

TEST_CASE("distributed: only rank 0 prints progress and writes weights") {
  const nn::Dataset data = clusters(64, 12, 4, 5);
  // A directory of the run's (rank 0 names it), seen by both ranks.
  const auto tmp = std::filesystem::temp_directory_path();
  std::string dir_name = (tmp / fmt::format("deltagrad-distributed-{}", ::getpid())).string();
  dir_name.resize(256);
  MPI_Bcast(dir_name.data(), 256, MPI_CHAR, 0, MPI_COMM_WORLD);
  const std::filesystem::path dir(dir_name.c_str());
  if (world().root()) std::filesystem::create_directories(dir);
  world().barrier();

  const std::filesystem::path log = dir / fmt::format("log{}.txt", world().rank());
  std::FILE* out = std::fopen(log.c_str(), "w");
  REQUIRE(out != nullptr);
  nn::Rng rng(1);
  nn::MLP net({12, 8, 4}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.1});
  nn::fit(net, opt, data, rng, {.epochs = 2, .batch_size = 16, .out = out, .distributed = &world()});
  std::fclose(out);
  const auto text = nn_test::read_bytes(log);
  if (world().root()) {
    const std::string lines(text.begin(), text.end());
    CHECK(lines.rfind("fit: ", 0) == 0);  // the backend line, then one line per epoch
    CHECK(std::count(lines.begin(), lines.end(), '\n') == (lines.find("\nwarning: ") == std::string::npos ? 3 : 4));
  } else {
    CHECK(text.empty());
  }

  // Each rank asks for its own file: only rank 0's is written.
  world().save(net, dir / fmt::format("weights{}.npz", world().rank()));
  CHECK(std::filesystem::exists(dir / "weights0.npz"));
  CHECK_FALSE(std::filesystem::exists(dir / "weights1.npz"));
  // The same file for both: when save returns it is complete, and every rank can read it back.
  world().save(net, dir / "weights.npz");
  nn::Rng other(99);
  nn::MLP copy({12, 8, 4}, nn::relu, other);
  nn::load(copy, dir / "weights.npz");
  CHECK(same_bits(copy.parameters(), net.parameters()));
  world().barrier();
  if (world().root()) std::filesystem::remove_all(dir);
}

TEST_CASE("distributed: ranks given different data throw DistributedError on every rank, before training") {
  nn::Dataset data = clusters(64, 12, 4, 6);
  if (world().rank() == 1) data.labels[7] = (data.labels[7] + 1) % 4;
  nn::Rng rng(1);
  nn::MLP net({12, 8, 4}, nn::relu, rng);
  const nn::MLP untouched = [&] {
    nn::Rng r(1);
    return nn::MLP({12, 8, 4}, nn::relu, r);
  }();
  nn::SGD opt(net.parameters(), {.lr = 0.1});
  try {
    nn::fit(net, opt, data, rng, {.epochs = 1, .batch_size = 16, .out = nullptr, .distributed = &world()});
    FAIL("fit accepted different data on the two ranks");
  } catch (const nn::DistributedError& e) {
    CHECK(std::string(e.what()).find("training set") != std::string::npos);
  }
  CHECK(same_bits(net.parameters(), untouched.parameters()));
}
