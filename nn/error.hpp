// Typed errors of the nn library.  Each derives from ad::Error, so one catch handles everything
// deltagrad throws on purpose.
#pragma once

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

/// Processes training one model together disagree (data sets, settings or parameters differ
/// between ranks), or the message-passing library reported an error.  Thrown on every rank alike.
class DistributedError : public ad::Error {
 public:
  using ad::Error::Error;
};

}  // namespace nn
