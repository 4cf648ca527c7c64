// ad::blas: the one place that talks to CBLAS.
//
// deltagrad does not link a BLAS at build time.  The first matrix product (or the first call of
// load() or info()) opens OpenBLAS at run time (libopenblas.so.0, else libblas.so.3, which on Debian
// is OpenBLAS or the reference BLAS; both provide cblas_*), after choosing defaults that OpenBLAS
// only reads while it initialises:
//  * OPENBLAS_CORETYPE=SkylakeX when the CPU has AVX-512 (F, CD, BW, DQ, VL).  OpenBLAS 0.3.21 files
//    some AVX-512 CPUs (AMD Zen 4) under Haswell and then runs its AVX2 kernels, about half as fast.
//  * OPENBLAS_NUM_THREADS=1.  Matrices of MLP size are too small for a second thread to pay off.
// A variable the user has set (OPENBLAS_CORETYPE; OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or
// OMP_NUM_THREADS for threads) is kept as it is.  The defaults are set only for the moment the
// library is opened and removed again, so child processes see the environment as the user left it.
// If OpenBLAS is already in the process (another library loaded it), it has already initialised:
// deltagrad then uses it as it is and info() says so.
//
// Setting variables with setenv while another thread reads the environment is a race in POSIX
// terms; a program that starts threads before its first matrix product can call ad::blas::load()
// at the top of main to do this work up front.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace ad::blas {

/// What was loaded and how it is configured.
struct Info {
  std::string library;   ///< file the cblas_* functions come from
  std::string core;      ///< OpenBLAS kernel set in use ("SkylakeX", "Haswell", ...); empty if not OpenBLAS
  std::string config;    ///< openblas_get_config(): version and build options; empty if not OpenBLAS
  int threads = 0;       ///< threads OpenBLAS uses; 0 if unknown
  /// Who chose the core and the thread count: "deltagrad" (the defaults above), "user" (the
  /// environment variable was set), "library" (the library's own choice: no AVX-512, or not
  /// OpenBLAS), or "preloaded" (OpenBLAS was already in the process, initialised: left alone).
  std::string core_from;
  std::string threads_from;
};

/// An environment variable and the value deltagrad gives it while it opens OpenBLAS.
struct Setting {
  const char* name;
  const char* value;
};

/// The defaults above that apply here and now: OPENBLAS_CORETYPE=SkylakeX if the CPU has AVX-512 and
/// the variable is unset, OPENBLAS_NUM_THREADS=1 if no thread variable is set; empty when the user
/// has set both.  load() applies them.  A program in which some other library loads OpenBLAS first
/// (info().core_from == "preloaded") gets the same configuration by putting these in its
/// environment before it starts, for instance by re-executing itself once with them set.
std::vector<Setting> default_settings();

/// Loads and configures the BLAS if that has not happened yet, and returns what was loaded.
/// Thread-safe; the work is done once per process.  Throws ad::LibraryError (naming the Debian
/// package to install) if no CBLAS library can be opened.
const Info& load();

/// Same as load(): the library in use and its configuration.
inline const Info& info() { return load(); }

/// Row-major C = alpha·op(A)·op(B) + beta·C, where op(X) is X or its transpose Xᵀ (as the flags
/// say; nothing is copied).  op(A) is m×k, op(B) is k×n, C is m×n; lda, ldb, ldc are the row
/// lengths of A, B, C as stored.  With beta = 0, C need not be initialised.  Empty products are
/// handled here (m or n = 0: nothing to do; k = 0: C = beta·C).  Throws ad::InvalidArgument if a
/// size exceeds the 32-bit range of CBLAS, ad::LibraryError if no BLAS could be loaded.
/// Defined for T = float (sgemm) and T = double (dgemm).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc);

}  // namespace ad::blas

/// One line of key=value pairs: "library=/usr/lib/.../libopenblasp-r0.3.21.so core=SkylakeX
/// core_from=deltagrad threads=1 threads_from=deltagrad".
template <>
struct fmt::formatter<ad::blas::Info> : fmt::formatter<std::string_view> {
  auto format(const ad::blas::Info& i, fmt::format_context& ctx) const -> fmt::format_context::iterator;
};
