// Training helpers: accuracy, evaluation over a data set, and a training loop that reports its
// progress.
//
// On a terminal, fit() redraws one progress line per epoch (loss, accuracy, samples/s, ETA) with
// '\r'; when the output is a file or a pipe it prints one plain line per epoch instead.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "nn/data.hpp"
#include "nn/loss.hpp"
#include "nn/module.hpp"
#include "nn/optim.hpp"

namespace nn {

/// Number of rows of `scores` [B, K] whose largest entry (the first, on ties) is at the label.
std::int64_t correct(const ad::View& scores, std::span<const std::int32_t> labels);
/// The fraction of such rows.
double accuracy(const ad::View& scores, std::span<const std::int32_t> labels);
inline double accuracy(const ad::Tensor& scores, std::span<const std::int32_t> labels) {
  return accuracy(scores.value(), labels);
}

/// A loss from the network's output and the integer labels of the batch.
using LossFn = std::function<ad::Tensor(const ad::Tensor&, std::span<const std::int32_t>)>;

struct Evaluation {
  double loss = 0;      ///< mean over the samples
  double accuracy = 0;
};

/// The loss and accuracy of `net` over a whole data set, in batches, without training.
Evaluation evaluate(Module& net, const Dataset& data, const LossFn& loss = softmax_cross_entropy,
                    std::int64_t batch_size = 1000);

/// A group of processes training one model together, each on its own part of every batch: what
/// fit() needs from it.  nn::DistributedContext (nn/distributed.hpp, built with MPI) implements it.
/// Every member except rank() and size() is collective: all ranks call it, in the same order.
class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Throws DistributedError on every rank unless all ranks passed equal values; `what` names them.
  virtual void check_same(std::span<const std::int64_t> values, const char* what) = 0;
  /// Copies rank 0's parameter values and engine state to every rank.
  virtual void broadcast(const ParameterList& params, Rng& rng) = 0;
  /// Element-wise sums over the ranks, in place.
  virtual void sum(std::span<double> values) = 0;
  /// One optimiser step for the whole group.  `loss` is the mean loss over this rank's rows of the
  /// batch (null when it has none: then the tape is cleared and the rank contributes zeros), and
  /// `weight` its share of the batch's rows.  The gradients, times the weights, are summed over the
  /// ranks, so every rank applies the same step: the one for the mean loss over the whole batch.
  /// With `check_finite` the step is applied by Optimizer::apply_checked(): a step that makes a
  /// parameter element non-finite is undone and that element returned (the same on every rank,
  /// since every rank applies the same step to the same weights).
  virtual std::optional<Optimizer::NonFinite> step(Optimizer& opt, ad::Tape& tape, const ad::Tensor* loss,
                                                   double weight, bool check_finite = false) = 0;
  /// Throws DistributedError on every rank unless all ranks hold bit-identical parameters.
  virtual void check_identical(const ParameterList& params, const char* what) = 0;
  /// Ends every process of the group after an error on this one (the others would otherwise wait
  /// for it forever in the next collective call).
  [[noreturn]] virtual void abort(std::string_view why) = 0;
};

struct FitOptions {
  int epochs = 10;
  std::int64_t batch_size = 128;
  LossFn loss = softmax_cross_entropy;
  const Dataset* validation = nullptr;  ///< evaluated after every epoch when given
  /// Learning rate for each epoch (1-based), set on the optimiser before the epoch; empty: unchanged.
  std::function<double(int epoch)> learning_rate = nullptr;
  std::FILE* out = stdout;              ///< where progress goes; nullptr: silent
  enum class Progress { automatic, terminal, plain } progress = Progress::automatic;
  /// Check every step for a non-finite loss (before the update) and non-finite parameters (after
  /// it).  On the first one, TrainingError is thrown with the parameters restored to their values
  /// before that step (Optimizer::apply_checked: SGD and Adam undo the step from the old values
  /// they keep in the gradients they have consumed, at no measurable cost; other optimisers, and
  /// training with `distributed`, copy the parameters before every step).
  bool check_finite = true;
  /// Train with a group of processes: each rank takes its part of every batch (see Batches), the
  /// gradients are averaged over the ranks before each step, and only rank 0 prints.  All ranks
  /// must call fit with the same data and options; rank 0's weights and `rng` state are used.
  /// Losses and accuracies in the reports are over all ranks' samples, on every rank.
  ProcessGroup* distributed = nullptr;
};

struct EpochReport {
  int epoch = 0;
  double learning_rate = 0;      ///< the optimiser's learning rate during the epoch
  double loss = 0;               ///< mean training loss over the epoch (as the weights moved)
  double accuracy = 0;           ///< training accuracy over the epoch
  double seconds = 0;            ///< time of the training pass
  double samples_per_second = 0;
  Evaluation validation;         ///< zeros unless FitOptions::validation was given
};

/// "backend onednn (avx512_core, loops avx2), 2 threads": where matrix products run and which
/// version of deltagrad's own element-wise loops this CPU runs (ad::blas::info()); fit prints it on
/// its first line.
std::string compute_summary();

/// Trains `net` with `opt` on shuffled mini-batches of `train` for the given number of epochs.
/// One tape is reused for every step (tape.clear() keeps its memory).  Returns one report per epoch.
/// With FitOptions::check_finite (the default), a NaN or infinite loss or parameter stops training
/// with TrainingError and the last good weights in the model.
/// With an output stream, the first line names the training set, batch size and compute_summary().
/// With options.distributed, an exception during training on any rank ends the whole group
/// (ProcessGroup::abort), since the other ranks would wait for it forever.
std::vector<EpochReport> fit(Module& net, Optimizer& opt, const Dataset& train, Rng& rng, const FitOptions& options = {});

}  // namespace nn
