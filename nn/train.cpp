#include "nn/train.hpp"

#include <chrono>
#include <cmath>
#include <cstring>

#include "autodiff/blas.hpp"

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

/// Index of the first NaN or infinite element of p, or -1.
std::int64_t first_non_finite(const Parameter& p) {
  return ad::dispatch(p.dtype(), [&]<class T>() -> std::int64_t {
    const T* x = p.array<T>().data();
    const std::int64_t n = p.size();
    // x * 0 is 0 for finite x and NaN otherwise; eight independent sums keep the scan fast.
    T acc[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int k = 0; k < 8; ++k) acc[k] += x[i + k] * T(0);
    for (; i < n; ++i) acc[0] += x[i] * T(0);
    T all = 0;
    for (T a : acc) all += a;
    if (all == T(0)) return -1;
    for (std::int64_t j = 0; j < n; ++j)
      if (!std::isfinite(x[j])) return j;
    return -1;
  });
}

/// The parameters' values before the current step, to restore them if the step goes wrong.
class Snapshot {
 public:
  explicit Snapshot(const ParameterList& params) : params_(params), saved_(params.size()) {}
  void take() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const ad::View v = params_[i]->view();
      const auto bytes = static_cast<std::size_t>(v.size()) * ad::size_of(v.dtype());
      if (saved_[i].size() != bytes) saved_[i].resize(bytes);
      if (bytes) std::memcpy(saved_[i].data(), v.data(), bytes);
    }
  }
  void restore() const {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      Parameter& p = *params_[i];
      void* dst = p.dtype() == ad::DType::f32 ? static_cast<void*>(p.array<float>().data())
                                              : static_cast<void*>(p.array<double>().data());
      if (!saved_[i].empty()) std::memcpy(dst, saved_[i].data(), saved_[i].size());
    }
  }

 private:
  const ParameterList& params_;
  std::vector<std::vector<std::byte>> saved_;
};

}  // namespace

std::string compute_summary() {
  const ad::blas::Info i = ad::blas::info();
  return fmt::format("backend {} ({}), {} thread{}", i.backend, i.isa.empty() ? "unknown isa" : i.isa, i.num_threads,
                     i.num_threads == 1 ? "" : "s");
}

std::vector<EpochReport> fit(Module& net, Optimizer& opt, const Dataset& train, Rng& rng, const FitOptions& o) {
  if (o.epochs < 0 || o.batch_size <= 0)
    throw ad::InvalidArgument(fmt::format("fit: epochs {} must be >= 0 and batch_size {} > 0", o.epochs, o.batch_size));
  const bool terminal = o.out && (o.progress == FitOptions::Progress::terminal ||
                                  (o.progress == FitOptions::Progress::automatic && ::isatty(::fileno(o.out))));
  std::vector<EpochReport> reports;
  ad::Tape tape;
  const ParameterList& params = opt.parameters();
  Snapshot before(params);
  long step = 0;
  const auto n = static_cast<double>(train.size());
  if (o.out) fmt::print(o.out, "fit: {} samples, batch {}, {}\n", train.size(), o.batch_size, compute_summary());
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
    long batch = 0;
    for (auto [x, y] : batches(train, o.batch_size, rng)) {
      ++step;
      ++batch;
      tape.clear();
      const ad::Tensor out = net(tape, x);
      const ad::Tensor J = o.loss(out, y);
      const double loss = J.item();
      if (o.check_finite && !std::isfinite(loss))
        throw TrainingError(fmt::format("fit: the loss is {} at step {} (epoch {}, batch {}); no update was made, the "
                                        "model holds the weights from before this step (look for NaN or infinite "
                                        "inputs or labels in this batch)",
                                        loss, step, epoch, batch),
                            step, epoch, batch, "");
      total += loss * static_cast<double>(y.size());
      hits += correct(out.value(), y);
      seen += static_cast<std::int64_t>(y.size());
      if (o.check_finite) before.take();
      opt.step(tape.gradient(J));
      if (o.check_finite)
        for (const auto& p : params)
          if (const std::int64_t at = first_non_finite(*p); at >= 0) {
            const double bad = p->view().flat(at);
            before.restore();
            throw TrainingError(
                fmt::format("fit: step {} (epoch {}, batch {}) made parameter \"{}\" {} non-finite ({} at flat index "
                            "{}; the loss before the step was {}); the weights from before this step were restored "
                            "(lower the learning rate, or look for extreme inputs)",
                            step, epoch, batch, p->name(), ad::describe(p->dtype(), p->shape()), bad, at, loss),
                step, epoch, batch, p->name());
          }
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
