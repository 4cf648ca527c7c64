#include "nn/train.hpp"

#include <chrono>

#include <unistd.h>

namespace nn {

std::int64_t correct(const ad::View& scores, std::span<const std::int32_t> labels) {
  if (scores.rank() != 2 || static_cast<std::int64_t>(labels.size()) != scores.shape()[0])
    throw ad::ShapeError(fmt::format("accuracy: scores {} need one label per row; {} labels given",
                                     ad::describe(scores.dtype(), scores.shape()), labels.size()));
  const std::int64_t B = scores.shape()[0], K = scores.shape()[1];
  return ad::dispatch(scores.dtype(), [&]<class T>() {
    const T* s = static_cast<const T*>(scores.data());
    std::int64_t hits = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      const T* row = s + b * K;
      std::int64_t best = 0;
      for (std::int64_t k = 1; k < K; ++k)
        if (row[k] > row[best]) best = k;
      hits += best == labels[static_cast<std::size_t>(b)];
    }
    return hits;
  });
}

double accuracy(const ad::View& scores, std::span<const std::int32_t> labels) {
  if (labels.empty()) return 0.0;
  return static_cast<double>(correct(scores, labels)) / static_cast<double>(labels.size());
}

Evaluation evaluate(Module& net, const Dataset& data, const LossFn& loss, std::int64_t batch_size) {
  Evaluation e;
  if (data.size() == 0) return e;
  ad::Tape tape;
  double total = 0;
  std::int64_t hits = 0;
  for (auto [x, y] : batches(data, batch_size)) {
    tape.clear();
    const ad::Tensor out = net(tape, x);
    total += loss(out, y).item() * static_cast<double>(y.size());
    hits += correct(out.value(), y);
  }
  e.loss = total / static_cast<double>(data.size());
  e.accuracy = static_cast<double>(hits) / static_cast<double>(data.size());
  return e;
}

namespace {

using Clock = std::chrono::steady_clock;

std::string duration(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  return fmt::format("{}m{:02d}s", static_cast<long>(s) / 60, static_cast<int>(s) % 60);
}

}  // namespace

std::vector<EpochReport> fit(Module& net, Optimizer& opt, const Dataset& train, Rng& rng, const FitOptions& o) {
  if (o.epochs < 0 || o.batch_size <= 0)
    throw ad::InvalidArgument(fmt::format("fit: epochs {} must be >= 0 and batch_size {} > 0", o.epochs, o.batch_size));
  const bool terminal = o.out && (o.progress == FitOptions::Progress::terminal ||
                                  (o.progress == FitOptions::Progress::automatic && ::isatty(::fileno(o.out))));
  std::vector<EpochReport> reports;
  if (o.out && o.epochs > 0) fmt::print(o.out, "{}\n", ad::blas::summary_line());  // and a warning if it is slow
  ad::Tape tape;
  const auto n = static_cast<double>(train.size());
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    EpochReport r;
    r.epoch = epoch;
    if (o.learning_rate) opt.set_learning_rate(o.learning_rate(epoch));
    r.learning_rate = opt.learning_rate();
    double total = 0;
    std::int64_t hits = 0, seen = 0;
    const auto start = Clock::now();
    auto last_draw = start;
    auto line = [&](double elapsed) {
      const double rate = elapsed > 0 ? static_cast<double>(seen) / elapsed : 0.0;
      const double left = rate > 0 ? (n - static_cast<double>(seen)) / rate : 0.0;
      return fmt::format("epoch {}/{}  {:>6}/{}  loss {:.4f}  acc {:.4f}  {:.0f} samples/s  ETA {}", epoch, o.epochs,
                         seen, train.size(), seen ? total / static_cast<double>(seen) : 0.0,
                         seen ? static_cast<double>(hits) / static_cast<double>(seen) : 0.0, rate, duration(left));
    };
    for (auto [x, y] : batches(train, o.batch_size, rng)) {
      tape.clear();
      const ad::Tensor out = net(tape, x);
      const ad::Tensor J = o.loss(out, y);
      total += J.item() * static_cast<double>(y.size());
      hits += correct(out.value(), y);
      seen += static_cast<std::int64_t>(y.size());
      opt.step(tape.gradient(J));
      if (terminal) {
        const auto now = Clock::now();
        if (now - last_draw > std::chrono::milliseconds(100)) {
          last_draw = now;
          fmt::print(o.out, "\r{}\x1b[K", line(std::chrono::duration<double>(now - start).count()));
          std::fflush(o.out);
        }
      }
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.loss = seen ? total / static_cast<double>(seen) : 0.0;
    r.accuracy = seen ? static_cast<double>(hits) / static_cast<double>(seen) : 0.0;
    r.samples_per_second = r.seconds > 0 ? static_cast<double>(seen) / r.seconds : 0.0;
    if (o.validation) r.validation = evaluate(net, *o.validation, o.loss);
    if (o.out) {
      std::string msg = fmt::format("epoch {}/{}  lr {:.3g}  loss {:.4f}  acc {:.4f}  {:.1f}s  {:.0f} samples/s", epoch,
                                    o.epochs, r.learning_rate, r.loss, r.accuracy, r.seconds, r.samples_per_second);
      if (o.validation)
        msg += fmt::format("  |  validation loss {:.4f}  acc {:.4f}", r.validation.loss, r.validation.accuracy);
      if (terminal) fmt::print(o.out, "\r{}\x1b[K\n", msg);
      else fmt::print(o.out, "{}\n", msg);
      std::fflush(o.out);
    }
    reports.push_back(r);
  }
  return reports;
}

}  // namespace nn
