// Squared error or cross-entropy?  The same sigmoid-output network, started saturated, trained once
// with each loss.  Prints the loss, the accuracy and the mean size of the output residual δ^(L) per
// epoch, and writes the learning curves to an SVG file.
//
// With a sigmoid output, squared error gives δ^(L) = (a − y) a (1 − a) (9.23): the factor
// f′(z) = a (1 − a) is tiny when the unit saturates, however wrong it is.  Binary cross-entropy
// gives δ^(L) = a − y: no such factor.  Here δ^(L) is measured, as m times the tape's adjoint of
// layer2.z, not assumed.
//
//   mse_vs_ce [--out DIR] [--epochs N] [--svg PATH]   (default PATH: DIR/mse_vs_ce.svg)
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "examples/output_dir.hpp"
#include "examples/svg_plot.hpp"
#include "nn/nn.hpp"

namespace {

using Mat = ad::Array<double>;

constexpr std::int64_t N = 200;       // samples
constexpr std::int64_t hidden = 16;   // width of the hidden layer
constexpr std::int64_t batch = 20;
constexpr double alpha = 0.5;         // learning rate of 9.14/9.15
constexpr double saturating_bias = 5; // b^(2) at the start: a^(2) ≈ σ(5) ≈ 0.993 for every sample

enum class Loss { squared_error, cross_entropy };

struct Data {
  Mat x{N, 2}, y{N, 1};
};

/// Points uniform in [−1, 1]²; label 1 on one side of the line x_1 + x_2/2 = 0 (about half).
Data make_data(nn::Rng& rng) {
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Data d;
  for (std::int64_t n = 0; n < N; ++n) {
    d.x(n, 0) = u(rng);
    d.x(n, 1) = u(rng);
    d.y(n, 0) = d.x(n, 0) + 0.5 * d.x(n, 1) > 0.0 ? 1.0 : 0.0;
  }
  return d;
}

/// The 2-16-1 network, tanh hidden, sigmoid output, Xavier weights from `seed`, then saturated.
nn::MLP make_network(std::uint64_t seed) {
  nn::Rng rng(seed);
  nn::MLP net({2, hidden, 1}, nn::tanh, nn::sigmoid, rng, {.dtype = ad::DType::f64});
  net.linear(2).bias().array<double>()[0] = saturating_bias;
  return net;
}

ad::Tensor loss_of(Loss loss, const ad::Tensor& a, const ad::Tensor& y) {
  return loss == Loss::squared_error ? nn::squared_error(a, y) : nn::binary_cross_entropy(a, y);
}

struct Measure {
  double J = 0, accuracy = 0, delta = 0;  // delta: mean over samples of |δ^(L)|
};

/// J, accuracy and mean |δ^(L)| of the network on the whole data set, without training.
Measure measure(nn::MLP& net, const Data& d, Loss loss) {
  ad::Tape tape;
  const ad::Tensor a = net(tape, d.x);
  const ad::Tensor J = loss_of(loss, a, tape.constant(d.y));
  const ad::Gradients g = tape.gradient(J);
  // The loss is a batch mean, so the adjoint of layer2.z is δ^(L)/N: multiply back by N.
  const ad::View dz = g["layer2.z"];
  Measure m;
  m.J = J.item();
  const ad::View out = a.value();
  for (std::int64_t n = 0; n < N; ++n) {
    m.delta += std::fabs(static_cast<double>(N) * dz.at({n, 0})) / N;
    m.accuracy += ((out.at({n, 0}) > 0.5) == (d.y(n, 0) == 1.0)) ? 1.0 / N : 0.0;
  }
  return m;
}

/// One epoch of mini-batch gradient descent over the samples in `order`.
void train_epoch(nn::MLP& net, nn::SGD& opt, ad::Tape& tape, const Data& d, const std::vector<std::int64_t>& order,
                 Loss loss) {
  Mat xb({batch, 2}), yb({batch, 1});
  for (std::int64_t start = 0; start + batch <= N; start += batch) {
    for (std::int64_t k = 0; k < batch; ++k) {
      const std::int64_t n = order[static_cast<std::size_t>(start + k)];
      xb(k, 0) = d.x(n, 0), xb(k, 1) = d.x(n, 1), yb(k, 0) = d.y(n, 0);
    }
    tape.clear();
    const ad::Tensor J = loss_of(loss, net(tape, xb), tape.constant(yb));
    opt.step(tape.gradient(J));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const auto usage = [] {
    fmt::print(stderr, "usage: mse_vs_ce [--out DIR] [--epochs N] [--svg PATH]\n");
    return 2;
  };
  int epochs = 40;
  std::string svg_path;
  try {
    svg_path = (examples::take_output_dir(argc, argv) / "mse_vs_ce.svg").string();
  } catch (const std::invalid_argument& e) {
    fmt::print(stderr, "mse_vs_ce: {}\n", e.what());
    return usage();
  }
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--epochs") == 0 && i + 1 < argc) epochs = std::max(1, std::atoi(argv[++i]));
    else if (std::strcmp(argv[i], "--svg") == 0 && i + 1 < argc) svg_path = argv[++i];
    else return usage();
  }
  nn::Rng data_rng(2024);
  const Data d = make_data(data_rng);
  const double positives = std::accumulate(d.y.values().begin(), d.y.values().end(), 0.0);

  nn::MLP se_net = make_network(7), ce_net = make_network(7);  // the same initial weights
  nn::SGD se_opt(se_net.parameters(), {.lr = alpha}), ce_opt(ce_net.parameters(), {.lr = alpha});
  ad::Tape se_tape, ce_tape;

  fmt::print("mse_vs_ce: a 2-{}-1 network (tanh hidden, sigmoid output) on {} points, label 1 on one side of\n"
             "a line ({} of them). Saturated start: b^(2) = {}, so a^(2) ≈ {:.3f} for every sample,\n"
             "confidently wrong for the {} with label 0. Both runs start from the same weights; gradient\n"
             "descent (9.14/9.15), α = {}, batches of {}. δ^(L) is the per-sample residual ∂J_n/∂z^(2), read\n"
             "from the tape as N times the adjoint of layer2.z over the whole set after each epoch.\n\n",
             hidden, N, positives, saturating_bias, 1 / (1 + std::exp(-saturating_bias)), N - positives, alpha, batch);
  fmt::print("{:>5}   {:^33}   {:^33}\n", "", "squared error  ½(y − a)²", "binary cross-entropy");
  fmt::print("{:>5}   {:>10} {:>10} {:>11}   {:>10} {:>10} {:>11}\n", "epoch", "J", "accuracy", "mean|δ^(L)|", "J",
             "accuracy", "mean|δ^(L)|");

  std::vector<Measure> se_curve, ce_curve;
  nn::Rng order_rng(99);
  std::vector<std::int64_t> order(static_cast<std::size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  for (int epoch = 0; epoch <= epochs; ++epoch) {
    if (epoch > 0) {
      std::shuffle(order.begin(), order.end(), order_rng);  // the same batches for both runs
      train_epoch(se_net, se_opt, se_tape, d, order, Loss::squared_error);
      train_epoch(ce_net, ce_opt, ce_tape, d, order, Loss::cross_entropy);
    }
    se_curve.push_back(measure(se_net, d, Loss::squared_error));
    ce_curve.push_back(measure(ce_net, d, Loss::cross_entropy));
    const Measure &s = se_curve.back(), &c = ce_curve.back();
    fmt::print("{:>5}   {:>10.5f} {:>10.3f} {:>11.2e}   {:>10.5f} {:>10.3f} {:>11.2e}\n", epoch, s.J, s.accuracy, s.delta,
               c.J, c.accuracy, c.delta);
  }

  auto first_epoch_reaching = [](const std::vector<Measure>& curve, double acc) -> std::string {
    for (std::size_t e = 0; e < curve.size(); ++e)
      if (curve[e].accuracy >= acc) return fmt::format("epoch {}", e);
    return fmt::format("not within {} epochs", curve.size() - 1);
  };
  fmt::print("\nmean |δ^(L)| at the start: squared error {:.2e}, cross-entropy {:.2e} ({:.0f}× larger)\n",
             se_curve[0].delta, ce_curve[0].delta, ce_curve[0].delta / se_curve[0].delta);
  fmt::print("accuracy ≥ 0.9 first reached: squared error {}, cross-entropy {}\n",
             first_epoch_reaching(se_curve, 0.9), first_epoch_reaching(ce_curve, 0.9));
  fmt::print("after {} epochs: accuracy {:.3f} (squared error) vs {:.3f} (cross-entropy)\n", epochs,
             se_curve.back().accuracy, ce_curve.back().accuracy);

  auto column = [](const std::vector<Measure>& c, double Measure::*field) {
    std::vector<double> v;
    for (const Measure& m : c) v.push_back(m.*field);
    return v;
  };
  const std::string se_label = "squared error", ce_label = "binary cross-entropy";
  const std::string blue = "#1f77b4", orange = "#d95f02";
  const std::string chart = svg::render(
      fmt::format("Sigmoid output started saturated (b = {}): squared error vs cross-entropy", saturating_bias), "epoch",
      {{"loss J, each run its own (log scale)", "J", true,
        {{se_label, blue, column(se_curve, &Measure::J)}, {ce_label, orange, column(ce_curve, &Measure::J)}}},
       {"training accuracy", "accuracy", false,
        {{se_label, blue, column(se_curve, &Measure::accuracy)}, {ce_label, orange, column(ce_curve, &Measure::accuracy)}}},
       {"mean |δ^(L)| per sample (log scale)", "mean |δ^(L)|", true,
        {{se_label, blue, column(se_curve, &Measure::delta)}, {ce_label, orange, column(ce_curve, &Measure::delta)}}}},
      0.0);
  if (!svg::write(svg_path, chart)) {
    fmt::print(stderr, "mse_vs_ce: cannot write {}\n", svg_path);
    return 1;
  }
  fmt::print("learning curves written to {}\n", svg_path);
}
