// Trains an MLP 784-256-128-10 (ReLU, softmax-cross-entropy) on Fashion-MNIST and reports the
// test accuracy and the time per epoch.  The core of this file is the README's nn snippet.
//
//   fashion_mnist [--out DIR] [epochs (20)] [data directory (/usr/share/datasets/fashion-mnist)]
//
// The data comes from the Debian package dataset-fashion-mnist.  The trained weights are written
// to DIR/fashion_mnist_mlp.npz (DIR: the current directory unless --out says otherwise).
//
// Built with MPI, the same program trains on several processes: `mpirun -np 2 fashion_mnist` splits
// every batch of 128 between the two, averages their gradients, and gives the same model as one
// process (to float rounding).  Only rank 0 prints and writes the weights.
#include <cmath>
#include <cstdlib>
#include <numbers>
#include <stdexcept>

#include <fmt/core.h>

#include "examples/output_dir.hpp"
#include "nn/nn.hpp"

int main(int argc, char** argv) {
  std::filesystem::path out;
  try {
    out = examples::take_output_dir(argc, argv);
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "fashion_mnist: {}\nusage: fashion_mnist [--out DIR] [epochs] [data directory]\n", e.what());
    return 2;
  }
#if defined(DELTAGRAD_HAVE_MPI)
  nn::DistributedContext group;                         // one process alone, or one rank of mpirun's
  nn::ProcessGroup* distributed = group.size() > 1 ? &group : nullptr;
  const bool root = group.root();
#else
  nn::ProcessGroup* distributed = nullptr;
  const bool root = true;
#endif
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
  if (root)
    fmt::print("Fashion-MNIST: {} training and {} test images of {} pixels{}\n", train.size(), test.size(),
               train.features(), distributed ? fmt::format(", {} processes", distributed->size()) : "");

  nn::Rng rng(2024);
  nn::MLP net({784, 256, 128, 10}, nn::relu, rng);     // logits out: no activation after the last layer
  nn::SGD opt(net.parameters(), {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-4});
  auto cosine = [&](int epoch) {                        // 0.05 falling to 0.005 along a half cosine
    return 0.005 + 0.0225 * (1 + std::cos(std::numbers::pi * (epoch - 1) / std::max(epochs - 1, 1)));
  };
  auto reports = nn::fit(net, opt, train, rng,
                         {.epochs = epochs, .batch_size = 128, .validation = &test, .learning_rate = cosine,
                          .distributed = distributed});
  if (!root) return 0;
  fmt::print("test accuracy {:.4f}\n", nn::evaluate(net, test).accuracy);
  nn::save(net, out / "fashion_mnist_mlp.npz");          // numpy.load(...)["layer1.W"]; out: --out DIR or "."

  double seconds = 0;
  for (const auto& r : reports) seconds += r.seconds;
  fmt::print("{} epochs, {:.1f} s of training, {:.2f} s per epoch; weights in {}\n", epochs, seconds,
             epochs ? seconds / epochs : 0.0, (out / "fashion_mnist_mlp.npz").string());
  fmt::print("{}", net.describe());
}
