#include "autodiff/blas.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <type_traits>
#include <vector>

#include "autodiff/backend/kernels.hpp"
#include "autodiff/backend/onednn.hpp"
#include "autodiff/backend/pool.hpp"
#include "autodiff/blas_summary.hpp"
#include "autodiff/error.hpp"

namespace ad::blas {

namespace {

// CBLAS constants (their values are fixed by the CBLAS standard) and the prototypes used here, so
// that no cblas.h is needed to build.  Debian's OpenBLAS uses 32-bit integers (blasint = int).
constexpr int row_major = 101, no_trans = 111, trans = 112;
using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                         int);
using DgemmFn = void (*)(int, int, int, int, int, int, double, const double*, int, const double*, int, double,
                         double*, int);
using CorenameFn = char* (*)();
using ConfigFn = char* (*)();
using GetThreadsFn = int (*)();

// Candidates in order of preference.  libopenblas.so.0 is OpenBLAS itself; libblas.so.3 is the
// Debian "alternatives" BLAS, which is OpenBLAS when it is installed and the reference BLAS
// otherwise (both export cblas_*).
constexpr const char* candidates[] = {"libopenblas.so.0", "libblas.so.3"};

/// The instruction sets OpenBLAS's SkylakeX kernels are built for (-march=skylake-avx512).
bool has_avx512() { return cpu_simd() == Simd::avx512; }

bool env_set(const char* name) { return std::getenv(name) != nullptr; }

/// Whether the user chose OpenBLAS's thread count (any of the variables it reads for it).
bool threads_set() {
  return env_set("OPENBLAS_NUM_THREADS") || env_set("GOTO_NUM_THREADS") || env_set("OMP_NUM_THREADS");
}

/// Sets environment defaults for as long as it lives, then removes them again: the variables are
/// needed only while the library initialises, and should not leak into child processes.
class EnvDefaults {
 public:
  EnvDefaults() = default;
  EnvDefaults(const EnvDefaults&) = delete;
  EnvDefaults& operator=(const EnvDefaults&) = delete;
  ~EnvDefaults() {
    for (const char* n : set_) ::unsetenv(n);
  }
  /// Sets name=value if name is not set.  Returns whether it did.
  bool set(const char* name, const char* value) {
    if (env_set(name) || ::setenv(name, value, 0) != 0) return false;
    set_.push_back(name);
    return true;
  }

 private:
  std::vector<const char*> set_;
};

struct Library {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  Info info;
  std::string error;  // set when nothing could be loaded
};

template <class F>
F symbol(void* handle, const char* name) {
  return reinterpret_cast<F>(::dlsym(handle, name));
}

/// Whether an OpenBLAS is already in the process, so that it has read its settings already.
bool openblas_already_loaded() {
  for (const char* name : candidates) {
    if (void* h = ::dlopen(name, RTLD_NOW | RTLD_NOLOAD)) {
      ::dlclose(h);  // drops only the reference taken by this check
      return true;
    }
  }
  return ::dlsym(RTLD_DEFAULT, "openblas_get_corename") != nullptr;
}

}  // namespace

std::vector<Setting> default_settings() {
  std::vector<Setting> out;
  if (!env_set("OPENBLAS_CORETYPE") && has_avx512()) out.push_back({"OPENBLAS_CORETYPE", "SkylakeX"});
  if (!threads_set()) out.push_back({"OPENBLAS_NUM_THREADS", "1"});
  return out;
}

namespace {

Library open_library() {
  Library lib;
  const bool preloaded = openblas_already_loaded();
  std::string failures;
  for (const char* name : candidates) {
    void* handle = nullptr;
    {
      EnvDefaults env;
      if (preloaded) {
        lib.info.core_from = lib.info.threads_from = "preloaded";
      } else {
        lib.info.core_from = env_set("OPENBLAS_CORETYPE") ? "user" : "library";
        lib.info.threads_from = threads_set() ? "user" : "library";
        for (const Setting& s : default_settings())
          if (env.set(s.name, s.value))
            (std::string_view(s.name) == "OPENBLAS_CORETYPE" ? lib.info.core_from : lib.info.threads_from) =
                "deltagrad";
      }
      handle = ::dlopen(name, RTLD_NOW | RTLD_LOCAL);
    }
    if (!handle) {
      const char* e = ::dlerror();
      failures += fmt::format("{}{} ({})", failures.empty() ? "" : "; ", name, e ? e : "not found");
      continue;
    }
    lib.sgemm = symbol<SgemmFn>(handle, "cblas_sgemm");
    lib.dgemm = symbol<DgemmFn>(handle, "cblas_dgemm");
    if (!lib.sgemm || !lib.dgemm) {
      failures += fmt::format("{}{} (has no cblas_sgemm/cblas_dgemm)", failures.empty() ? "" : "; ", name);
      continue;  // the handle stays open: closing a library that may have started threads is not safe
    }
    Dl_info where{};
    if (::dladdr(reinterpret_cast<void*>(lib.sgemm), &where) && where.dli_fname) {
      std::error_code ec;
      auto real = std::filesystem::canonical(where.dli_fname, ec);
      lib.info.library = ec ? std::string(where.dli_fname) : real.string();
    } else {
      lib.info.library = name;
    }
    if (auto corename = symbol<CorenameFn>(handle, "openblas_get_corename")) lib.info.core = corename();
    if (auto config = symbol<ConfigFn>(handle, "openblas_get_config")) lib.info.config = config();
    if (auto threads = symbol<GetThreadsFn>(handle, "openblas_get_num_threads")) lib.info.threads = threads();
    if (lib.info.core.empty()) lib.info.core_from = lib.info.threads_from = "library";
    return lib;
  }
  lib.sgemm = nullptr;
  lib.dgemm = nullptr;
  lib.error = fmt::format(
      "blas: no CBLAS library could be loaded for matrix products: {}. Install OpenBLAS: "
      "apt-get install libopenblas0",
      failures);
  return lib;
}

const Library& library() {
  static const Library lib = open_library();  // thread-safe, once per process
  if (!lib.error.empty()) throw LibraryError(lib.error);
  return lib;
}

void check_sizes(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, std::int64_t lda,
                 std::int64_t ldb, std::int64_t ldc) {
  const auto bad = [](std::int64_t v) { return v < 0 || v > INT_MAX; };
  if (bad(m) || bad(n) || bad(k) || bad(lda) || bad(ldb) || bad(ldc))
    throw InvalidArgument(fmt::format(
        "blas::gemm: sizes must lie in [0, {}] (m={}, n={}, k={}, lda={}, ldb={}, ldc={})", INT_MAX, m, n, k, lda,
        ldb, ldc));
  const std::int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
  if (lda < std::max<std::int64_t>(1, a_cols) || ldb < std::max<std::int64_t>(1, b_cols) ||
      ldc < std::max<std::int64_t>(1, n))
    throw InvalidArgument(fmt::format(
        "blas::gemm: a leading dimension is shorter than its row (lda={} for {} columns, ldb={} for {}, ldc={} "
        "for {})",
        lda, a_cols, ldb, b_cols, ldc, n));
}

}  // namespace

const Info& load() { return library().info; }

namespace {

Backend default_backend() {
  const char* v = std::getenv("DELTAGRAD_BACKEND");
  const std::string_view want = v ? v : "";
  if (!want.empty() && want != "onednn" && want != "openblas")
    throw InvalidArgument(fmt::format("DELTAGRAD_BACKEND='{}': expected onednn or openblas", want));
  return ad::backend::onednn::available() && want != "openblas" ? Backend::onednn : Backend::openblas;
}

std::atomic<int>& backend_choice() {  // -1 until the default is read
  static std::atomic<int> b{-1};
  return b;
}

}  // namespace

Backend backend() {
  int b = backend_choice().load(std::memory_order_relaxed);
  if (b < 0) {
    b = static_cast<int>(default_backend());
    backend_choice().store(b);
  }
  return static_cast<Backend>(b);
}

void set_backend(Backend b) {
  if (b == Backend::onednn && !ad::backend::onednn::available())
    throw LibraryError(
        "blas::set_backend: oneDNN is not available (deltagrad was built without it, or it does not support this "
        "CPU). Install libdnnl-dev and configure with -DDELTAGRAD_WITH_ONEDNN=ON");
  backend_choice().store(static_cast<int>(b));
}

Info info() {
  Info i = load();
  i.backend = backend() == Backend::onednn ? "onednn" : "openblas";
  i.isa = backend() == Backend::onednn ? ad::backend::onednn::isa() : i.core;
  i.loops_isa = ad::backend::kernels::isa();
  i.onednn_version = ad::backend::onednn::version();
  i.num_threads = ad::backend::threads();
  i.num_threads_from = ad::backend::threads_from();
  return i;
}

namespace {

// Products below this many flops (2·m·n·k) run on one thread: waking a second one and splitting
// the work costs more than it saves.
constexpr double min_parallel_flops = 1 << 20;

/// C = alpha·op(A)·op(B) + beta·C (+ bias on every row) for the block of rows [m0, m1) and columns
/// [n0, n1) of C, on the calling thread.  bias is only passed with beta = 0.
template <class T>
void block(bool ta, bool tb, std::int64_t m0, std::int64_t m1, std::int64_t n0, std::int64_t n1, std::int64_t k,
           T alpha, const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, const T* bias, T* c,
           std::int64_t ldc) {
  const std::int64_t m = m1 - m0, n = n1 - n0;
  const T* ab = ta ? a + m0 : a + m0 * lda;
  const T* bb = tb ? b + n0 * ldb : b + n0;
  T* cb = c + m0 * ldc + n0;
  const T* biasb = bias ? bias + n0 : nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && backend() == Backend::onednn &&
        ad::backend::onednn::sgemm(ta, tb, m, n, k, ab, lda, bb, ldb, beta == 1.0f, biasb, cb, ldc))
      return;
  }
  if (biasb) {  // bias rows first, the product added onto them
    for (std::int64_t r = 0; r < m; ++r) std::copy_n(biasb, n, cb + r * ldc);
    beta = T(1);
  }
  const Library& lib = library();
  const int cta = ta ? trans : no_trans, ctb = tb ? trans : no_trans;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>)
    lib.sgemm(row_major, cta, ctb, i(m), i(n), i(k), alpha, ab, i(lda), bb, i(ldb), beta, cb, i(ldc));
  else
    lib.dgemm(row_major, cta, ctb, i(m), i(n), i(k), alpha, ab, i(lda), bb, i(ldb), beta, cb, i(ldc));
}

/// The whole product, cut into one block per thread along the rows of C when there are enough of
/// them, else along its columns (at multiples of 16 columns, so that two threads never write the
/// same cache line of a row).
template <class T>
void product(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a, std::int64_t lda,
             const T* b, std::int64_t ldb, T beta, const T* bias, T* c, std::int64_t ldc) {
  const std::int64_t t = ad::backend::threads();
  std::int64_t parts = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < min_parallel_flops
                           ? 1
                           : t;
  constexpr std::int64_t min_rows = 32, col_align = 16;
  const bool by_rows = m >= parts * min_rows || m >= n;
  if (by_rows) parts = std::min(parts, m);
  else parts = std::min(parts, (n + col_align - 1) / col_align);
  if (parts <= 1) return block<T>(ta, tb, 0, m, 0, n, k, alpha, a, lda, b, ldb, beta, bias, c, ldc);
  ad::backend::run_chunks(static_cast<int>(parts), [&](int p) {
    if (by_rows) {
      block<T>(ta, tb, m * p / parts, m * (p + 1) / parts, 0, n, k, alpha, a, lda, b, ldb, beta, bias, c, ldc);
    } else {
      const std::int64_t groups = (n + col_align - 1) / col_align;
      const std::int64_t n0 = std::min(n, groups * p / parts * col_align);
      const std::int64_t n1 = std::min(n, groups * (p + 1) / parts * col_align);
      block<T>(ta, tb, 0, m, n0, n1, k, alpha, a, lda, b, ldb, beta, bias, c, ldc);
    }
  });
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, T alpha, const T* a,
          std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c, std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta·C (BLAS would reject lda = 0 here)
    check_sizes(trans_a, trans_b, m, n, 0, std::max<std::int64_t>(lda, 1), std::max<std::int64_t>(ldb, 1), ldc);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  check_sizes(trans_a, trans_b, m, n, k, lda, ldb, ldc);
  product<T>(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, nullptr, c, ldc);
}

template <class T>
void linear_forward(std::int64_t m, std::int64_t n, std::int64_t k, const T* x, const T* w, const T* bias, T* z) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    check_sizes(false, true, m, n, 0, 1, 1, n);
    for (std::int64_t r = 0; r < m; ++r) std::copy_n(bias, n, z + r * n);
    return;
  }
  check_sizes(false, true, m, n, k, k, k, n);
  product<T>(false, true, m, n, k, T(1), x, k, w, k, T(0), bias, z, n);
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t,
                          const float*, std::int64_t, float, float*, std::int64_t);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double, const double*,
                           std::int64_t, const double*, std::int64_t, double, double*, std::int64_t);
template void linear_forward<float>(std::int64_t, std::int64_t, std::int64_t, const float*, const float*,
                                    const float*, float*);
template void linear_forward<double>(std::int64_t, std::int64_t, std::int64_t, const double*, const double*,
                                     const double*, double*);

}  // namespace ad::blas

auto fmt::formatter<ad::blas::Info>::format(const ad::blas::Info& i, fmt::format_context& ctx) const
    -> fmt::format_context::iterator {
  return fmt::format_to(ctx.out(),
                        "backend={} isa={} loops_isa={} threads={} threads_from={} onednn={} openblas={} core={} "
                        "core_from={} blas_threads={} blas_threads_from={}",
                        i.backend.empty() ? "unknown" : i.backend, i.isa.empty() ? "unknown" : i.isa,
                        i.loops_isa.empty() ? "unknown" : i.loops_isa, i.num_threads,
                        i.num_threads_from.empty() ? "unknown" : i.num_threads_from,
                        i.onednn_version.empty() ? "none" : i.onednn_version, i.library,
                        i.core.empty() ? "unknown" : i.core, i.core_from, i.threads, i.threads_from);
}
