// Typed errors thrown by the autodiff engine.
//
// Every user mistake (a handle from another tape, a handle that outlived tape.clear(), a shape or
// dtype mismatch, an index out of range) throws one of these before anything is recorded, so a
// failed call leaves the tape exactly as it was.  Internal invariants use assert instead.
#pragma once

#include <stdexcept>
#include <string>

namespace ad {

/// Base class of every error deltagrad throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A Var or Tensor used with a tape it was not recorded on.
class ForeignHandleError : public Error {
 public:
  using Error::Error;
};

/// A Var, Tensor or Gradients object used after the tape it refers to was cleared.
class StaleHandleError : public Error {
 public:
  using Error::Error;
};

/// Operand shapes that an op cannot combine (names the op, the operands and their shapes).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// Operands of different element types (f32 and f64) in one op.
class DTypeError : public Error {
 public:
  using Error::Error;
};

/// An index or label outside its valid range.
class IndexError : public Error {
 public:
  using Error::Error;
};

/// Any other argument an op cannot accept (an empty handle, a bad axis, a negative size...).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A sweep over a tape whose leaf buffer (a parameter) was changed in place after it was recorded
/// (an optimiser step, nn::load, a write through Array's mutators): the recorded values no longer
/// belong together.  The message names the leaf.  Record the computation again.
class StaleTapeError : public Error {
 public:
  using Error::Error;
};

/// A value or adjoint that is NaN or infinite, reported by the opt-in finiteness check.
class NonFiniteError : public Error {
 public:
  using Error::Error;
};

/// The tape ran out of index space (more than Tape::max_entries entries).
class CapacityError : public Error {
 public:
  using Error::Error;
};

/// Memory for a value could not be allocated (names the op and the size); the tape is unchanged.
class AllocationError : public Error {
 public:
  using Error::Error;
};

/// A tape used from a thread other than the one recording on it (checked in builds without NDEBUG
/// and in sanitizer builds; see Tape).
class ThreadError : public Error {
 public:
  using Error::Error;
};

/// Forward mode or a Hessian-vector product met an op without the rule it needs (a user-defined op
/// without a tangent or curvature rule, a fused scalar expression whose second derivatives were not
/// recorded).  The message names the op and the entry.
class MissingRuleError : public Error {
 public:
  using Error::Error;
};

/// A required runtime library (a BLAS) could not be found or loaded.
class LibraryError : public Error {
 public:
  using Error::Error;
};

}  // namespace ad
