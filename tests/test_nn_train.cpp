// nn/train: accuracy, evaluation, the training loop and its output; XOR learns; δ^(L) read by
// name is (a − y)/B; a training step allocates nothing once warmed up.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>

#include "nn/nn.hpp"
#include "nn_temp.hpp"

namespace {

/// Three well-separated blobs in 2-D, `per` points each, labels 0..2.
nn::Dataset blobs(std::int64_t per, std::uint64_t seed) {
  nn::Rng rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  const float cx[] = {-2.0f, 2.0f, 0.0f}, cy[] = {0.0f, 0.0f, 2.5f};
  nn::Dataset d;
  d.classes = 3;
  d.x = ad::Array<float>(ad::Shape{3 * per, 2});
  for (std::int64_t i = 0; i < 3 * per; ++i) {
    const auto k = static_cast<std::int32_t>(i % 3);
    d.x(i, 0) = cx[k] + noise(rng);
    d.x(i, 1) = cy[k] + noise(rng);
    d.labels.push_back(k);
  }
  return d;
}

}  // namespace

TEST_CASE("nn: accuracy counts rows whose first largest score is at the label") {
  ad::Array<float> s(ad::Shape{4, 3}, {0.1f, 0.7f, 0.2f,   // argmax 1
                                       0.5f, 0.5f, 0.0f,   // tie: the first, 0
                                       -1.f, -2.f, -0.5f,  // 2
                                       3.f, 1.f, 2.f});    // 0
  const std::vector<std::int32_t> y{1, 1, 2, 2};
  CHECK(nn::correct(s.view(), y) == 2);
  CHECK(nn::accuracy(s.view(), y) == 0.5);
  CHECK_THROWS_AS(nn::accuracy(s.view(), std::vector<std::int32_t>{1}), ad::ShapeError);
}

TEST_CASE("nn: XOR is learnt by a 2-4-1 network with SGD and momentum") {
  // tanh hidden layer, sigmoid output, squared error, full-batch gradient descent with momentum.
  // (Two hidden units can represent XOR, but from about 4 in 10 random starts they stall in a
  // local minimum; with four, every one of 50 seeds tried learns it in 500 steps.)
  nn::Rng rng(2);
  nn::MLP net({2, 4, 1}, nn::tanh, nn::sigmoid, rng, {.dtype = ad::DType::f64});
  const ad::Array<double> x(ad::Shape{4, 2}, {0, 0, 0, 1, 1, 0, 1, 1});
  const ad::Array<double> y(ad::Shape{4, 1}, {0, 1, 1, 0});
  nn::SGD opt(net.parameters(), {.lr = 1.0, .momentum = 0.9});
  ad::Tape tape;
  double first = 0, last = 0;
  for (int step = 0; step < 500; ++step) {
    tape.clear();
    ad::Tensor J = nn::squared_error(net(tape, x), y);
    if (step == 0) first = J.item();
    last = J.item();
    opt.step(tape.gradient(J));
  }
  CHECK(last < first / 50);
  tape.clear();
  const ad::Tensor out = net(tape, x);
  for (std::int64_t i = 0; i < 4; ++i) CHECK(std::abs(out.value().flat(i) - y[i]) < 0.1);
}

TEST_CASE("nn: after a sweep, δ^(L) = g[\"layer2.z\"] is (a − y)/B for softmax-cross-entropy") {
  nn::Rng rng(4);
  nn::MLP net({3, 4, 3}, nn::relu, rng, {.dtype = ad::DType::f64});
  const ad::Array<double> x(ad::Shape{2, 3}, {0.5, -1.0, 2.0, 1.5, 0.25, -0.75});
  const std::vector<std::int32_t> y{2, 0};
  ad::Tape tape;
  ad::Tensor z = net(tape, x);
  auto g = tape.gradient(nn::softmax_cross_entropy(z, y));
  const ad::View delta = g["layer2.z"];
  for (std::int64_t r = 0; r < 2; ++r) {
    double m = -INFINITY, s = 0;
    for (std::int64_t k = 0; k < 3; ++k) m = std::max(m, z.value().at({r, k}));
    for (std::int64_t k = 0; k < 3; ++k) s += std::exp(z.value().at({r, k}) - m);
    for (std::int64_t k = 0; k < 3; ++k) {
      const double a = std::exp(z.value().at({r, k}) - m) / s;
      CHECK(delta.at({r, k}) == doctest::Approx((a - (k == y[static_cast<std::size_t>(r)])) / 2).epsilon(1e-14));
    }
  }
  // And δ^(1) exists with the shape of z^(1).
  CHECK(g["layer1.z"].shape() == ad::Shape{2, 4});
}

TEST_CASE("nn: fit trains on separable blobs, prints the BLAS line and one plain line per epoch, evaluate agrees") {
  const nn::Dataset train = blobs(60, 1), test = blobs(30, 2);
  nn::Rng rng(7);
  nn::MLP net({2, 8, 3}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.1, .momentum = 0.9});
  nn_test::TempDir dir;
  std::FILE* out = std::fopen((dir / "log.txt").c_str(), "w");
  REQUIRE(out != nullptr);
  const auto reports =
      nn::fit(net, opt, train, rng, {.epochs = 4, .batch_size = 16, .validation = &test, .out = out});
  std::fclose(out);
  REQUIRE(reports.size() == 4);
  CHECK(reports.back().loss < reports.front().loss);
  CHECK(reports.back().validation.accuracy > 0.95);
  const nn::Evaluation e = nn::evaluate(net, test);
  CHECK(e.accuracy == reports.back().validation.accuracy);
  CHECK(e.loss == doctest::Approx(reports.back().validation.loss).epsilon(1e-12));
  const auto log = nn_test::read_bytes(dir / "log.txt");
  const std::string text(log.begin(), log.end());
  // The first line names the training set, batch size, backend and BLAS core (with a warning line
  // under it if the BLAS kernels are slower than the CPU allows), then one line per epoch.
  CHECK(text.rfind("fit: ", 0) == 0);
  CHECK(text.find("batch 16, backend ") < text.find('\n'));
  CHECK(text.find("BLAS: ") < text.find('\n'));
  CHECK(std::count(text.begin(), text.end(), '\n') == (text.find("\nwarning: ") == std::string::npos ? 5 : 6));
  CHECK(text.find('\r') == std::string::npos);
  CHECK(text.find("epoch 4/4") != std::string::npos);
  CHECK(text.find("validation") != std::string::npos);
}

TEST_CASE("nn: the README's training step runs, and repeated steps reuse the tape's memory") {
  const nn::Dataset train = blobs(40, 5);
  nn::Rng rng(3);
  nn::MLP net({2, 16, 3}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  std::size_t reserved = 0;
  for (int epoch = 0; epoch < 5; ++epoch) {
    // The README's snippet, verbatim:
    ad::Tape tape;
    for (auto [x, y] : nn::batches(train, 128, rng)) {    // shuffled; the last batch may be smaller
      tape.clear();                                        // keeps its memory: no allocation per step
      ad::Tensor loss = nn::softmax_cross_entropy(net(tape, x), y);
      opt.step(tape.gradient(loss));                       // one sweep, then W ← W − α(∂J/∂W + λW)
    }
    if (epoch == 0) {
      // Once warmed up, the same tape holds further steps in the memory it has.
      for (int step = 0; step < 20; ++step) {
        tape.clear();
        opt.step(tape.gradient(nn::softmax_cross_entropy(net(tape, train.x), train.labels)));
        if (step == 1) reserved = tape.bytes_reserved();
      }
      CHECK(tape.bytes_reserved() == reserved);
    }
  }
  CHECK(nn::evaluate(net, train).accuracy > 0.95);
}
