// Trains an MLP 784-256-128-10 (ReLU, softmax-cross-entropy) on Fashion-MNIST and reports the
// test accuracy and the time per epoch.
//
//   fashion_mnist [epochs] [data directory]
//
// The data comes from the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
#include <cmath>
#include <cstdlib>

#include <fmt/core.h>

#include "nn/nn.hpp"

int main(int argc, char** argv) {
  const int epochs = argc > 1 ? std::atoi(argv[1]) : 20;
  const std::filesystem::path dir = argc > 2 ? argv[2] : nn::fashion_mnist_dir;
  nn::Dataset train, test;
  try {
    train = nn::load_fashion_mnist("train", dir);
    test = nn::load_fashion_mnist("t10k", dir);
  } catch (const nn::DataError& e) {
    fmt::print(stderr, "fashion_mnist: {}\n", e.what());
    fmt::print(stderr, "Get the data with:  sudo apt-get install dataset-fashion-mnist\n");
    return 2;
  }
  fmt::print("Fashion-MNIST: {} training and {} test images of {} pixels\n", train.size(), test.size(),
             train.features());

  nn::Rng rng(2024);
  nn::MLP net({784, 256, 128, 10}, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  // The learning rate falls along a half cosine from 0.05 to 0.005 over the run.
  auto schedule = [&](int epoch) {
    const double t = epochs > 1 ? (epoch - 1.0) / (epochs - 1.0) : 0.0;
    return 0.005 + 0.5 * (0.05 - 0.005) * (1 + std::cos(3.141592653589793 * t));
  };
  fmt::print("{}", net.describe());
  const auto reports = nn::fit(net, opt, train, rng,
                               {.epochs = epochs, .batch_size = 128, .validation = &test, .learning_rate = schedule});

  double seconds = 0;
  for (const auto& r : reports) seconds += r.seconds;
  const nn::Evaluation result = nn::evaluate(net, test);
  fmt::print("test accuracy {:.4f} after {} epochs, {:.1f} s of training ({:.2f} s per epoch)\n", result.accuracy,
             epochs, seconds, epochs ? seconds / epochs : 0.0);
  nn::save(net, "fashion_mnist_mlp.npz");
  fmt::print("weights saved to fashion_mnist_mlp.npz (numpy.load reads them)\n");
}
