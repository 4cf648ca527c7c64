// Typed errors of the nn library.  Each derives from ad::Error, so one catch handles everything
// deltagrad throws on purpose.
#pragma once

#include <string>

#include "autodiff/error.hpp"

namespace nn {

/// A data file that is missing, unreadable or malformed (IDX, CSV).  The message names the file,
/// the byte offset (or line) where the problem was found, and what to install or fix.
class DataError : public ad::Error {
 public:
  using ad::Error::Error;
};

/// A weights file (.npy, .npz) that is missing, malformed, truncated, or does not match the model
/// it is loaded into (names, shapes, dtypes).  A failed load leaves the model unchanged.
class WeightsError : public ad::Error {
 public:
  using ad::Error::Error;
};

/// Training that produced a NaN or infinite loss, or a step that left a parameter NaN or infinite.
/// fit() throws it with the weights restored to their values before that step; the message names
/// the step (counted from 1 over the whole run), the epoch, the batch and the first non-finite
/// parameter (or the loss).  The optimiser's own state (momentum, Adam's moments) is not restored.
class TrainingError : public ad::NonFiniteError {
 public:
  TrainingError(const std::string& message, long step, int epoch, long batch, std::string parameter)
      : ad::NonFiniteError(message), step_(step), epoch_(epoch), batch_(batch), parameter_(std::move(parameter)) {}
  long step() const { return step_; }
  int epoch() const { return epoch_; }
  long batch() const { return batch_; }
  /// The first parameter (in the optimiser's order) holding a non-finite value after the step, or
  /// empty when the loss itself was not finite (and no step was taken).
  const std::string& parameter() const { return parameter_; }

 private:
  long step_ = 0;
  int epoch_ = 0;
  long batch_ = 0;
  std::string parameter_;
};

/// Processes training one model together disagree (data sets, settings or parameters differ
/// between ranks), or the message-passing library reported an error.  Thrown on every rank alike.
class DistributedError : public ad::Error {
 public:
  using ad::Error::Error;
};

}  // namespace nn
