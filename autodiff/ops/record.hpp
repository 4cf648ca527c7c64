// Helpers for writing tensor ops: validate handles, allocate the output, record the node.
//
// The pattern every op follows (see ops/elementwise.cpp):
//   1. validate the operands (same tape, current generation, dtypes, shapes): throw before recording;
//   2. allocate the output on the tape (tape.allocate_elements<T>) and compute the value;
//   3. record the node with its backward rule (record_tensor), which is written right beside it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "autodiff/gradients.hpp"
#include "autodiff/backend/pool.hpp"
#include "autodiff/tape.hpp"
#include "autodiff/tensor.hpp"

namespace ad::ops {

// Handle checks and operand descriptions (autodiff/tensor.hpp), as every op uses them.
using ad::describe_operand;
using ad::operand;
using ad::tape_of;

/// Element-wise loops shorter than two of these run on one thread (about 10-20 µs of the cheapest
/// ops, what handing half of it to a second thread costs and saves); longer ones are spread over
/// the backend's threads in ranges.  Each element is computed the same way at any thread count.
inline constexpr std::int64_t elementwise_grain = 32768;

/// Throws DTypeError naming the op and both operands unless a and b have the same dtype.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);


/// Records a tensor-valued node of op `op`: `data` (allocated on `tape`) holds the value of the
/// given dtype and shape; `args` are the argument entries; `saved` is the op's state (arena memory
/// from tape.save, or null).  The node needs a gradient iff any argument does.
Tensor record_tensor(Tape& tape, const OpDescriptor& op, DType dtype, const Shape& shape, void* data,
                     std::initializer_list<std::uint32_t> args, const void* saved = nullptr);

/// The same with a typed state, copied into the arena; the rules read it as c.saved<S>().
template <class S>
  requires(!std::is_pointer_v<S>)
Tensor record_tensor(Tape& tape, const OpDescriptor& op, DType dtype, const Shape& shape, void* data,
                     std::initializer_list<std::uint32_t> args, const S& state) {
  return record_tensor(tape, op, dtype, shape, data, args, static_cast<const void*>(tape.save(state)));
}

/// dst[i] += f(i) for i < n; or dst[i] = f(i) when dst is a fresh adjoint (see
/// BackwardContext::arg_grad_or_fresh), which saves zeroing it first and reading it back.
template <class T, class F>
void accumulate(T* dst, bool fresh, std::int64_t n, F&& f) {
  backend::parallel_for(n, elementwise_grain, [&](std::int64_t b, std::int64_t e) {
    if (fresh) {
      for (std::int64_t i = b; i < e; ++i) dst[i] = f(i);
    } else {
      for (std::int64_t i = b; i < e; ++i) dst[i] += f(i);
    }
  });
}

}  // namespace ad::ops
