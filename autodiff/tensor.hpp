// ad::Tensor: a tensor value recorded on a tape.
//
// Like ad::Var, a Tensor is a small handle (tape, entry, generation); the elements live on the tape
// (in its arena) or, for leaves, in the Array they were recorded from.  The tensor operations are
// declared in autodiff/ops/*.hpp and collected by autodiff/autodiff.hpp.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

#include "autodiff/array.hpp"
#include "autodiff/gradients.hpp"
#include "autodiff/handles.hpp"
#include "autodiff/tape.hpp"

namespace ad {



/// The element of t at `index` as a Var on t's tape.  Its adjoint flows back into that element of
/// t's adjoint.  Throws IndexError if the index is out of range or of the wrong rank.
Var element(const Tensor& t, std::initializer_list<std::int64_t> index);

/// The value of a one-element tensor (a loss, a sum) as a Var on the same tape.
Var to_var(const Tensor& t);

// ---- for functions that take tensors (ops, losses, modules) ------------------------------------------

/// The tape of a tensor operand, after checking that the handle is non-empty (InvalidArgument) and
/// current (StaleHandleError), and (for two operands) that both are on one tape
/// (ForeignHandleError); every message names `op`.
Tape& tape_of(const Tensor& t, const char* op);
Tape& tape_of(const Tensor& a, const Tensor& b, const char* op);
Tape& tape_of(const Tensor& a, const Var& b, const char* op);
/// The operand's name on the tape, or `fallback` ("lhs", "x", ...) if unnamed: for error messages.
std::string operand(const Tensor& t, const char* fallback);
/// "x is f32[64,784]": operand name and its dtype/shape.
std::string describe_operand(const Tensor& t, const char* fallback);

}  // namespace ad


namespace ad {

template <class... I>
Var Tensor::operator()(I... i) const {
  return element(*this, {static_cast<std::int64_t>(i)...});
}

}  // namespace ad
