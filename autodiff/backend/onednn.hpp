// ad::backend::onednn: float32 matrix products through oneDNN's matmul primitive, on the calling
// thread.  Internal to ad::blas, which splits a product into per-thread blocks and calls this for
// each block.
//
// A primitive is built once per (shape, strides, transpose flags, accumulate, bias) and kept for
// the life of the process (building one takes milliseconds; running a small one, microseconds).
// Each thread keeps its own memory objects for a primitive and only swaps their data pointers.
// oneDNN's own threading (OpenMP in Debian's build) is held at one thread around every call, so
// OpenMP never starts a team and nothing spins outside deltagrad's pool.
#pragma once

#include <cstdint>
#include <string>

namespace ad::backend::onednn {

/// Whether deltagrad was built with oneDNN and oneDNN can run on this CPU.
bool available();

/// oneDNN's version ("2.6.3") and the instruction set its kernels use here ("avx512_core"); empty
/// strings when not available.
std::string version();
std::string isa();

/// Row-major C = op(A)·op(B) (+ C when accumulate) (+ bias[j] on every row when bias is not null),
/// op(A) m×k, op(B) k×n; lda/ldb/ldc are the stored row lengths.  Returns false (and does nothing)
/// when oneDNN has no implementation for this case; the caller then uses another path.
bool sgemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, bool accumulate, const float* bias, float* c,
           std::int64_t ldc);

/// The implementation oneDNN chose for the last primitive it built (for instance "brg:avx512_core").
std::string last_implementation();

}  // namespace ad::backend::onednn
