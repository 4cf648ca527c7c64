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

namespace {

/// Summed loss and number of correct rows over a data set (what evaluate() divides by its size).
std::pair<double, std::int64_t> evaluate_sums(Module& net, const Dataset& data, const LossFn& loss,
                                              std::int64_t batch_size) {
  ad::Tape tape;
  double total = 0;
  std::int64_t hits = 0;
  for (auto [x, y] : batches(data, batch_size)) {
    tape.clear();
    const ad::Tensor out = net(tape, x);
    total += loss(out, y).item() * static_cast<double>(y.size());
    hits += correct(out.value(), y);
  }
  return {total, hits};
}

}  // namespace

Evaluation evaluate(Module& net, const Dataset& data, const LossFn& loss, std::int64_t batch_size) {
  Evaluation e;
  if (data.size() == 0) return e;
  const auto [total, hits] = evaluate_sums(net, data, loss, batch_size);
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

std::string compute_summary() {
  const ad::blas::Info i = ad::blas::info();
  return fmt::format("backend {} ({}, loops {}), {} thread{}", i.backend, i.isa.empty() ? "unknown isa" : i.isa,
                     i.loops_isa, i.num_threads, i.num_threads == 1 ? "" : "s");
}

std::vector<EpochReport> fit(Module& net, Optimizer& opt, const Dataset& train, Rng& rng, const FitOptions& o) {
  if (o.epochs < 0 || o.batch_size <= 0)
    throw ad::InvalidArgument(fmt::format("fit: epochs {} must be >= 0 and batch_size {} > 0", o.epochs, o.batch_size));
  ProcessGroup* group = o.distributed;
  const Shard shard = group ? Shard{group->rank(), group->size()} : Shard{};
  std::FILE* const out = shard.rank == 0 ? o.out : nullptr;
  const Dataset* validation = o.validation;
  Dataset validation_part;  // this rank's rows of the validation set
  if (group) {
    std::int64_t elements = 0;
    for (const auto& p : opt.parameters()) elements += p->size();
    auto hash = [](const Dataset& d) { return static_cast<std::int64_t>(fingerprint(d)); };
    const std::int64_t settings[] = {train.size(),
                                     train.features(),
                                     hash(train),
                                     o.batch_size,
                                     o.epochs,
                                     o.validation ? hash(*o.validation) : -1,
                                     static_cast<std::int64_t>(opt.parameters().size()),
                                     elements};
    group->check_same(settings, "fit: the training set, validation set, batch size, epochs and parameter sizes");
    group->broadcast(opt.parameters(), rng);
    if (o.validation) {
      const auto [lo, hi] = shard_range(o.validation->size(), shard);
      validation_part = slice(*o.validation, lo, hi);
      validation = &validation_part;
    }
  }
  const bool terminal = out && (o.progress == FitOptions::Progress::terminal ||
                                (o.progress == FitOptions::Progress::automatic && ::isatty(::fileno(out))));
  std::vector<EpochReport> reports;
  ad::Tape tape;
  const ParameterList& params = opt.parameters();
  long step = 0;
  // One line on what runs the products (and, under it, a warning when the BLAS kernels are slower
  // than this CPU allows).
  if (out) fmt::print(out, "fit: {} samples, batch {}, {}; {}\n", train.size(), o.batch_size, compute_summary(),
                      ad::blas::summary_line());
  const std::int64_t n = train.size();
  // A step that made a parameter non-finite (already undone by the optimiser).
  auto fail = [&](const Optimizer::NonFinite& bad, int epoch, long batch_number, double loss) {
    const Parameter& p = *params[bad.parameter];
    throw TrainingError(
        fmt::format("fit: step {} (epoch {}, batch {}) made parameter \"{}\" {} non-finite ({} at flat index {}; "
                    "the loss before the step was {}); the weights from before this step were restored (lower "
                    "the learning rate, or look for extreme inputs)",
                    step, epoch, batch_number, p.name(), ad::describe(p.dtype(), p.shape()), bad.value, bad.index,
                    std::isnan(loss) ? "not computed on this rank (no rows)" : fmt::format("{}", loss)),
        step, epoch, batch_number, p.name());
  };
  auto train_epoch = [&](EpochReport& r) {
    // This rank's summed loss, correct rows and rows; `done` counts the rows of all ranks.
    double total = 0;
    std::int64_t hits = 0, seen = 0, done = 0;
    const auto start = Clock::now();
    auto last_draw = start;
    auto line = [&](double elapsed) {
      const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
      const double left = rate > 0 ? static_cast<double>(n - done) / rate : 0.0;
      return fmt::format("epoch {}/{}  {:>6}/{}  loss {:.4f}  acc {:.4f}  {:.0f} samples/s  ETA {}", r.epoch, o.epochs,
                         done, n, seen ? total / static_cast<double>(seen) : 0.0,
                         seen ? static_cast<double>(hits) / static_cast<double>(seen) : 0.0, rate, duration(left));
    };
    long batch_number = 0;
    std::optional<Optimizer::NonFinite> bad;
    for (auto [x, y] : batches(train, o.batch_size, rng, shard)) {
      const std::int64_t batch = std::min(o.batch_size, n - done);  // rows of all ranks in this step
      done += batch;
      ++step;
      ++batch_number;
      if (y.empty()) {  // only with a group: this rank has no rows of a short last batch
        if (group && (bad = group->step(opt, tape, nullptr, 0.0, o.check_finite))) fail(*bad, r.epoch, batch_number, NAN);
        continue;
      }
      tape.clear();
      const ad::Tensor scores = net(tape, x);
      const ad::Tensor J = o.loss(scores, y);
      const double loss = J.item();
      if (o.check_finite && !std::isfinite(loss))
        throw TrainingError(fmt::format("fit: the loss is {} at step {} (epoch {}, batch {}); no update was made, the "
                                        "model holds the weights from before this step (look for NaN or infinite "
                                        "inputs or labels in this batch)",
                                        std::isnan(loss) ? std::fabs(loss) : loss, step, r.epoch, batch_number),  // "nan", never "-nan"
                            step, r.epoch, batch_number, "");
      total += loss * static_cast<double>(y.size());
      hits += correct(scores.value(), y);
      seen += static_cast<std::int64_t>(y.size());
      // The finiteness check after the update: the optimiser undoes a step that went wrong
      // (apply_checked), alone or in the group's step.
      if (group) {
        bad = group->step(opt, tape, &J, static_cast<double>(y.size()) / static_cast<double>(batch), o.check_finite);
      } else {
        opt.collect(tape.gradient(J));
        if (o.check_finite) bad = opt.apply_checked();
        else opt.apply();
      }
      if (bad) fail(*bad, r.epoch, batch_number, loss);
      if (terminal) {
        const auto now = Clock::now();
        if (now - last_draw > std::chrono::milliseconds(100)) {
          last_draw = now;
          fmt::print(out, "\r{}\x1b[K", line(std::chrono::duration<double>(now - start).count()));
          std::fflush(out);
        }
      }
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    double sums[] = {total, static_cast<double>(hits), static_cast<double>(seen), 0, 0};
    if (validation) {
      const auto [vloss, vhits] = evaluate_sums(net, *validation, o.loss, 1000);
      sums[3] = vloss;
      sums[4] = static_cast<double>(vhits);
    }
    if (group) {
      group->sum(sums);
      group->check_identical(opt.parameters(), "fit: after an epoch");
    }
    r.loss = sums[2] > 0 ? sums[0] / sums[2] : 0.0;
    r.accuracy = sums[2] > 0 ? sums[1] / sums[2] : 0.0;
    r.samples_per_second = r.seconds > 0 ? static_cast<double>(done) / r.seconds : 0.0;
    if (o.validation && o.validation->size() > 0) {
      r.validation.loss = sums[3] / static_cast<double>(o.validation->size());
      r.validation.accuracy = sums[4] / static_cast<double>(o.validation->size());
    }
  };
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    EpochReport r;
    r.epoch = epoch;
    if (o.learning_rate) opt.set_learning_rate(o.learning_rate(epoch));
    r.learning_rate = opt.learning_rate();
    if (!group) {
      train_epoch(r);
    } else {
      try {
        train_epoch(r);
      } catch (const std::exception& e) {
        group->abort(fmt::format("fit, epoch {}: {}", epoch, e.what()));
      }
    }
    if (out) {
      std::string msg = fmt::format("epoch {}/{}  lr {:.3g}  loss {:.4f}  acc {:.4f}  {:.1f}s  {:.0f} samples/s", epoch,
                                    o.epochs, r.learning_rate, r.loss, r.accuracy, r.seconds, r.samples_per_second);
      if (o.validation)
        msg += fmt::format("  |  validation loss {:.4f}  acc {:.4f}", r.validation.loss, r.validation.accuracy);
      if (terminal) fmt::print(out, "\r{}\x1b[K\n", msg);
      else fmt::print(out, "{}\n", msg);
      std::fflush(out);
    }
    reports.push_back(r);
  }
  return reports;
}

}  // namespace nn
