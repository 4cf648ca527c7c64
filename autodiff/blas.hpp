// ad::blas: matrix products, on oneDNN or OpenBLAS, spread over deltagrad's threads.
//
// Backends.  float32 products run on oneDNN's matmul primitive when deltagrad was built with
// oneDNN (CMake option DELTAGRAD_WITH_ONEDNN, on by default, used when libdnnl-dev is found):
// oneDNN chooses its kernels from the CPU's instruction sets, not from a CPU model name.  float64
// products (oneDNN 2.6 has no f64 matmul on CPUs), products with alpha other than 1 or beta other
// than 0 and 1, and everything when oneDNN is absent or set_backend(Backend::openblas) was called
// (or DELTAGRAD_BACKEND=openblas is set) run on OpenBLAS.
//
// Threads.  Each product large enough to pay for it is cut into one block of rows or columns per
// thread of ad::backend's pool (see autodiff/backend/pool.hpp: the thread count defaults to the
// CPUs this process may use, DELTAGRAD_NUM_THREADS or backend::set_threads() change it), and each
// block runs single-threaded on its thread.  Neither library starts threads of its own.
//
// OpenBLAS is not linked at build time.  The first product it computes (or the first call of
// load() or info()) opens it at run time (libopenblas.so.0, else libblas.so.3, which on Debian
// is OpenBLAS or the reference BLAS; both provide cblas_*), after choosing defaults that OpenBLAS
// only reads while it initialises:
//  * OPENBLAS_CORETYPE=SkylakeX when the CPU has AVX-512 (F, CD, BW, DQ, VL).  OpenBLAS 0.3.21 files
//    some AVX-512 CPUs (AMD Zen 4) under Haswell and then runs its AVX2 kernels, about half as fast.
//  * OPENBLAS_NUM_THREADS=1: deltagrad's pool does the threading.
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
  std::string backend;         ///< where float32 products run: "onednn" or "openblas"
  std::string isa;             ///< instruction set of the float32 kernels ("avx512_core"; OpenBLAS: its core)
  std::string loops_isa;       ///< instruction set of deltagrad's own hot loops ("avx2" or "sse2")
  std::string onednn_version;  ///< "2.6.3"; empty when deltagrad was built without oneDNN
  int num_threads = 1;         ///< threads products are spread over (ad::backend::threads())
  std::string num_threads_from;  ///< "affinity", "environment" or "code" (ad::backend::threads_from())
  // OpenBLAS, used for float64 and as the fallback:
  std::string library;   ///< file the cblas_* functions come from
  std::string core;      ///< OpenBLAS kernel set in use ("SkylakeX", "Haswell", ...); empty if not OpenBLAS
  std::string config;    ///< openblas_get_config(): version and build options; empty if not OpenBLAS
  int threads = 0;       ///< threads OpenBLAS itself uses (1 by default: the pool threads); 0 if unknown
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

/// Loads and configures OpenBLAS if that has not happened yet, and returns what was loaded (the
/// OpenBLAS fields of Info).  Thread-safe; the work is done once per process.  Throws
/// ad::LibraryError (naming the Debian package to install) if no CBLAS library can be opened.
const Info& load();

/// Everything in use now: load()'s OpenBLAS fields plus the backend, instruction set and threads.
Info info();

/// Where float32 products run.
enum class Backend { onednn, openblas };

/// Chooses the float32 backend for this process.  Backend::onednn needs a build with oneDNN and a
/// CPU it supports: otherwise throws ad::LibraryError.  The default is oneDNN when available,
/// unless the environment variable DELTAGRAD_BACKEND=openblas is set.
void set_backend(Backend b);
Backend backend();

/// Row-major C = alpha·op(A)·op(B) + beta·C, where op(X) is X or its transpose Xᵀ (as the flags
/// say; nothing is copied).  op(A) is m×k, op(B) is k×n, C is m×n; lda, ldb, ldc are the row
/// lengths of A, B, C as stored.  With beta = 0, C need not be initialised.  Empty products are
/// handled here (m or n = 0: nothing to do; k = 0: C = beta·C).  Throws ad::InvalidArgument if a
/// size exceeds the 32-bit range of CBLAS, ad::LibraryError if no BLAS could be loaded.
/// Defined for T = float (sgemm) and T = double (dgemm).
template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc);

/// A dense linear layer's forward product: Z = X·Wᵀ + b on every row, with X m×k, W n×k, b n and
/// Z m×n, all row-major and dense.  oneDNN adds the bias inside the product; OpenBLAS gets the
/// bias rows written first and adds the product onto them.  Same errors as gemm.
template <class T>
void linear_forward(std::int64_t m, std::int64_t n, std::int64_t k, const T* x, const T* w, const T* b, T* z);

}  // namespace ad::blas

/// One line of key=value pairs: "backend=onednn isa=avx512_core threads=2 threads_from=affinity
/// onednn=2.6.3 openblas=/usr/lib/.../libopenblasp-r0.3.21.so core=SkylakeX core_from=deltagrad
/// blas_threads=1 blas_threads_from=deltagrad".
template <>
struct fmt::formatter<ad::blas::Info> : fmt::formatter<std::string_view> {
  auto format(const ad::blas::Info& i, fmt::format_context& ctx) const -> fmt::format_context::iterator;
};
