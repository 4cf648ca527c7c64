// Training helpers: accuracy, evaluation over a data set, and a training loop that reports its
// progress.
//
// On a terminal, fit() redraws one progress line per epoch (loss, accuracy, samples/s, ETA) with
// '\r'; when the output is a file or a pipe it prints one plain line per epoch instead.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
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
  /// it).  On the first one, the parameters are restored to their values before that step and
  /// TrainingError is thrown.  Costs one copy and one scan of the parameters per step.
  bool check_finite = true;
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

/// "backend onednn (avx512_core), 2 threads": where matrix products run (ad::blas::info()); fit
/// prints it on its first line.
std::string compute_summary();

/// Trains `net` with `opt` on shuffled mini-batches of `train` for the given number of epochs.
/// One tape is reused for every step (tape.clear() keeps its memory).  Returns one report per epoch.
/// With FitOptions::check_finite (the default), a NaN or infinite loss or parameter stops training
/// with TrainingError and the last good weights in the model.
/// With an output stream, the first line names the training set, batch size and compute_summary().
std::vector<EpochReport> fit(Module& net, Optimizer& opt, const Dataset& train, Rng& rng, const FitOptions& options = {});

}  // namespace nn
