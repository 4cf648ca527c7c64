// Tensor benchmarks.  Prints key=value lines:
//   tensor blas ...                        the BLAS library in use and who chose its configuration
//   tensor op_chain_ns_per_op=..           cost of recording and sweeping one element-wise op on a
//                                          one-element tensor (a chain of 2,000 of them)
//   tensor matmul_tape_us=.. matmul_raw_us=.. ratio=..
//                                          one MLP layer's product x·Wᵀ (x [128,784], W [256,784]) and
//                                          its two backward products, recorded and swept on the tape,
//                                          against the same three gemm calls made directly
//   tensor sgemm_deltagrad ... gflops=..   sgemm speed as deltagrad configures OpenBLAS
//   tensor sgemm_plain ... gflops=..       the same in a child process that loads OpenBLAS itself,
//                                          without deltagrad's defaults
// Every time is a median of repetitions (the taped and the raw matmul interleaved).
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/blas.hpp"
#include "bench_util.hpp"

namespace {

using bench::Clock;
using bench::median;

double seconds_of(const std::function<void()>& f) {
  const auto t0 = Clock::now();
  f();
  return bench::seconds_between(t0, Clock::now());
}

std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

// ---- per-op overhead -----------------------------------------------------------------------------

/// The op chain of bench::deltagrad_op_chain, 2,000 ops, repeated.
void bench_op_chain() {
  constexpr int ops = 2000, reps = 51;
  const ad::Array<float> x0({1}, {0.3f});
  ad::Tape tape;
  double check = 0;
  const auto run = [&] { return bench::deltagrad_op_chain(tape, x0, ops, check); };
  for (int i = 0; i < 3; ++i) run();
  std::vector<double> total, record, sweep;
  for (int r = 0; r < reps; ++r) {
    const bench::ChainTime t = run();
    total.push_back(t.total());
    record.push_back(t.record);
    sweep.push_back(t.sweep);
  }
  if (!std::isfinite(check)) std::abort();
  fmt::print("tensor op_chain_ops={} reps={} op_chain_ns_per_op={:.1f} record_ns_per_op={:.1f} backward_ns_per_op={:.1f}\n",
             ops, reps, median(total) / ops * 1e9, median(record) / ops * 1e9, median(sweep) / ops * 1e9);
}

// ---- matmul through the tape vs raw gemm --------------------------------------------------------

void bench_matmul() {
  constexpr std::int64_t batch = 128, in = 784, out = 256;
  constexpr int reps = 101;
  std::mt19937 rng(1);
  ad::Array<float> x({batch, in}), w({out, in});
  for (auto& v : x.values()) v = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
  for (auto& v : w.values()) v = std::uniform_real_distribution<float>(-1.f, 1.f)(rng);
  const std::vector<float> upstream = random_floats(batch * out, rng);  // dJ/dz from the layers above

  // Raw: z = x·Wᵀ, dx = G·W, dW = Gᵀ·x.
  std::vector<float> z(batch * out), dx(batch * in), dw(out * in);
  const auto raw = [&] {
    ad::blas::gemm<float>(false, true, batch, out, in, 1.f, x.data(), in, w.data(), in, 0.f, z.data(), out);
    ad::blas::gemm<float>(false, false, batch, in, out, 1.f, upstream.data(), out, w.data(), in, 0.f, dx.data(), in);
    ad::blas::gemm<float>(true, false, out, in, batch, 1.f, upstream.data(), out, x.data(), in, 0.f, dw.data(), in);
  };

  // Tape: record the leaves and the product, seed z's adjoint with G, sweep.
  ad::Tape tape;
  float max_diff = 0.f;
  const auto taped = [&](bool compare) {
    tape.clear();
    const ad::Tensor xt = tape.leaf(x), wt = tape.leaf(w);
    const ad::Tensor zt = matmul(xt, wt, false, true);
    ad::Gradients g = tape.vjp(zt, ad::View(ad::DType::f32, zt.shape(), upstream.data()));
    if (compare) {
      const auto gx = g[xt].as<float>(), gw = g[wt].as<float>(), zv = zt.value().as<float>();
      for (std::size_t i = 0; i < dx.size(); ++i) max_diff = std::max(max_diff, std::abs(gx[i] - dx[i]));
      for (std::size_t i = 0; i < dw.size(); ++i) max_diff = std::max(max_diff, std::abs(gw[i] - dw[i]));
      for (std::size_t i = 0; i < z.size(); ++i) max_diff = std::max(max_diff, std::abs(zv[i] - z[i]));
    }
  };

  for (int i = 0; i < 5; ++i) raw(), taped(false);  // warm up caches, arena and gradient storage
  taped(true);
  std::vector<double> t_tape, t_raw;
  for (int r = 0; r < reps; ++r) {  // interleaved, alternating which goes first
    if (r % 2) {
      t_tape.push_back(seconds_of([&] { taped(false); }));
      t_raw.push_back(seconds_of(raw));
    } else {
      t_raw.push_back(seconds_of(raw));
      t_tape.push_back(seconds_of([&] { taped(false); }));
    }
  }
  const double tt = median(t_tape) * 1e6, tr = median(t_raw) * 1e6;
  fmt::print("tensor matmul_shape=[{},{}]x[{},{}]^T reps={} matmul_tape_us={:.1f} matmul_raw_us={:.1f} ratio={:.3f} "
             "max_abs_diff={:g}\n",
             batch, in, out, in, reps, tt, tr, tt / tr, max_diff);
}

// ---- sgemm speed with and without deltagrad's configuration --------------------------------------

using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);

/// GFLOP/s of C = A·Bᵀ (m×k times n×k) through `f`, median of `reps`.
double gflops(std::int64_t m, std::int64_t n, std::int64_t k, int reps,
              const std::function<void(const float*, const float*, float*)>& f) {
  std::mt19937 rng(2);
  const auto a = random_floats(m * k, rng), b = random_floats(n * k, rng);
  std::vector<float> c(m * n);
  for (int i = 0; i < 3; ++i) f(a.data(), b.data(), c.data());
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) t.push_back(seconds_of([&] { f(a.data(), b.data(), c.data()); }));
  return 2.0 * m * n * k / median(t) / 1e9;
}

struct Shape3 {
  std::int64_t m, n, k;
  int reps;
};
constexpr Shape3 gemm_shapes[] = {{128, 256, 784, 101}, {1024, 1024, 1024, 11}};

void print_gflops(const char* label, const std::string& config, const std::function<void(const Shape3&, const float*, const float*, float*)>& f) {
  std::string line = fmt::format("tensor {} {}", label, config);
  for (const Shape3& s : gemm_shapes) {
    const double g = gflops(s.m, s.n, s.k, s.reps, [&](const float* a, const float* b, float* c) { f(s, a, b, c); });
    line += fmt::format(" gflops_{}x{}x{}={:.1f}", s.m, s.n, s.k, g);
  }
  fmt::print("{}\n", line);
}

/// The child process: OpenBLAS loaded directly, with whatever it chooses by itself.
int plain_openblas() {
  void* h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    fmt::print("tensor sgemm_plain error=\"{}\"\n", dlerror());
    return 1;
  }
  auto sgemm = reinterpret_cast<Sgemm>(dlsym(h, "cblas_sgemm"));
  auto core = reinterpret_cast<char* (*)()>(dlsym(h, "openblas_get_corename"));
  auto threads = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_num_threads"));
  if (!sgemm || !core || !threads) return 1;
  print_gflops("sgemm_plain", fmt::format("core={} threads={}", core(), threads()),
               [&](const Shape3& s, const float* a, const float* b, float* c) {
                 sgemm(101, 111, 112, int(s.m), int(s.n), int(s.k), 1.f, a, int(s.k), b, int(s.k), 0.f, c, int(s.n));
               });
  return 0;
}

void bench_gemm_configurations(const char* self) {
  const ad::blas::Info info = ad::blas::info();
  print_gflops("sgemm_deltagrad", fmt::format("backend={} isa={} threads={}", info.backend, info.isa, info.num_threads),
               [](const Shape3& s, const float* a, const float* b, float* c) {
                 ad::blas::gemm<float>(false, true, s.m, s.n, s.k, 1.f, a, s.k, b, s.k, 0.f, c, s.n);
               });
  // The environment is as the user left it (deltagrad's defaults were removed after loading), so
  // the child sees OpenBLAS's own choice unless the user configured it.
  std::fflush(stdout);
  const std::string cmd = fmt::format("'{}' --plain-openblas", self);
  if (std::system(cmd.c_str()) != 0) fmt::print("tensor sgemm_plain error=\"child process failed\"\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--plain-openblas") == 0) return plain_openblas();
  fmt::print("tensor blas {}\n", ad::blas::info());
  bench_op_chain();
  bench_matmul();
  bench_gemm_configurations(argv[0]);
  return 0;
}
