#include "autodiff/blas.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <string_view>
#include <type_traits>
#include <vector>

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
  const Library& lib = library();
  const int ta = trans_a ? trans : no_trans, tb = trans_b ? trans : no_trans;
  const auto i = [](std::int64_t v) { return static_cast<int>(v); };
  if constexpr (std::is_same_v<T, float>)
    lib.sgemm(row_major, ta, tb, i(m), i(n), i(k), alpha, a, i(lda), b, i(ldb), beta, c, i(ldc));
  else
    lib.dgemm(row_major, ta, tb, i(m), i(n), i(k), alpha, a, i(lda), b, i(ldb), beta, c, i(ldc));
}

template void gemm<float>(bool, bool, std::int64_t, std::int64_t, std::int64_t, float, const float*, std::int64_t,
                          const float*, std::int64_t, float, float*, std::int64_t);
template void gemm<double>(bool, bool, std::int64_t, std::int64_t, std::int64_t, double, const double*,
                           std::int64_t, const double*, std::int64_t, double, double*, std::int64_t);

}  // namespace ad::blas

auto fmt::formatter<ad::blas::Info>::format(const ad::blas::Info& i, fmt::format_context& ctx) const
    -> fmt::format_context::iterator {
  return fmt::format_to(ctx.out(), "library={} core={} core_from={} threads={} threads_from={}", i.library,
                        i.core.empty() ? "unknown" : i.core, i.core_from, i.threads, i.threads_from);
}
