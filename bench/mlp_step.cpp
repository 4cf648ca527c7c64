// One SGD training step of an MLP 784-256-128-10 (ReLU, softmax-cross-entropy, float32) through
// the tape and nn, against the same step written by hand: BLAS gemm calls and plain loops, no
// tape.  Both run in this program from the same weights, in alternating blocks of consecutive
// steps (see `settle` below); medians of the steps are printed as
//   mlp_step batch=<B> tape_us=<> ref_us=<> ratio=<tape/ref>
// followed by the configuration and the arithmetic rate:
//   threads=<n> backend=<onednn|openblas> peak_gflops=<one core's float32 FMA peak> tape_gflops=<>
// (tape_gflops: the step's matrix-product flops over tape_us).  Both steps use ad::blas, so they
// run on the same backend and threads.  Before timing, one step of each from identical weights is
// compared (max_weight_diff), so the two do the same arithmetic.
//
// Then, at batch 128, with a CPU-bound process pinned to the second CPU of this process:
//   mlp_step_contended batch=128 default_us=<tape step, default threads> one_thread_us=<> ratio=<>
// measured in alternating blocks, plus the pool's late-worker events and jobs it ran alone.  When CMake found libtorch (DELTAGRAD_HAVE_TORCH), the same step
// in libtorch runs as a third contestant in the same loop, and the line goes on with
//   torch_us=<> tape_vs_torch=<tape/torch> max_weight_diff_torch=<>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <immintrin.h>

#include "autodiff/backend/pool.hpp"
#include "autodiff/blas.hpp"
#include "bench_util.hpp"
#include "nn/nn.hpp"
#ifdef DELTAGRAD_HAVE_TORCH
#include "libtorch/torch_bench.hpp"
#endif

namespace {

using bench::Clock;
using bench::median;

/// The hand-written step.  Row-major buffers, one sample per row; W^(l) is [out, in] as in nn.
struct Reference {
  std::vector<std::int64_t> sizes;
  std::vector<std::vector<float>> W, b, dW, db;
  std::vector<std::vector<float>> a;   // a[0] = x (not owned: copied per step), a[l] = relu(z^(l)) or logits
  std::vector<std::vector<float>> dz;  // δ^(l)
  float lr;

  Reference(const nn::MLP& net, float lr_) : sizes(net.sizes()), lr(lr_) {
    const std::size_t L = sizes.size() - 1;
    W.resize(L + 1), b.resize(L + 1), dW.resize(L + 1), db.resize(L + 1);
    for (std::size_t l = 1; l <= L; ++l) {
      const auto& lin = const_cast<nn::MLP&>(net).linear(static_cast<int>(l));
      W[l].assign(lin.weight().array<float>().values().begin(), lin.weight().array<float>().values().end());
      b[l].assign(lin.bias().array<float>().values().begin(), lin.bias().array<float>().values().end());
      dW[l].resize(W[l].size());
      db[l].resize(b[l].size());
    }
  }

  /// Forward, softmax-cross-entropy, backward, update.  Returns the loss.
  float step(const float* x, const std::int32_t* y, std::int64_t B) {
    const std::size_t L = sizes.size() - 1;
    a.resize(L + 1);
    dz.resize(L + 1);
    for (std::size_t l = 1; l <= L; ++l) {
      a[l].resize(static_cast<std::size_t>(B * sizes[l]));
      dz[l].resize(a[l].size());
    }
    // Forward: z = x·Wᵀ, then bias and ReLU in one pass (no ReLU on the output layer).
    const float* in = x;
    for (std::size_t l = 1; l <= L; ++l) {
      const std::int64_t n = sizes[l], k = sizes[l - 1];
      float* z = a[l].data();
      ad::blas::gemm<float>(false, true, B, n, k, 1.0f, in, k, W[l].data(), k, 0.0f, z, n);
      const float* bl = b[l].data();
      for (std::int64_t r = 0; r < B; ++r) {
        float* zr = z + r * n;
        if (l < L)
          for (std::int64_t i = 0; i < n; ++i) zr[i] = std::max(zr[i] + bl[i], 0.0f);
        else
          for (std::int64_t i = 0; i < n; ++i) zr[i] += bl[i];
      }
      in = z;
    }
    // Softmax-cross-entropy: δ^(L) = (softmax(z) − y)/B.
    const std::int64_t C = sizes[L];
    float loss = 0;
    for (std::int64_t r = 0; r < B; ++r) {
      const float* z = a[L].data() + r * C;
      float* d = dz[L].data() + r * C;
      float m = z[0];
      for (std::int64_t k = 1; k < C; ++k) m = std::max(m, z[k]);
      float s = 0;
      for (std::int64_t k = 0; k < C; ++k) s += (d[k] = std::exp(z[k] - m));
      loss += std::log(s) + m - z[y[r]];
      const float inv = 1.0f / (s * static_cast<float>(B));
      for (std::int64_t k = 0; k < C; ++k) d[k] *= inv;
      d[y[r]] -= 1.0f / static_cast<float>(B);
    }
    // Backward: dW = δᵀ·x^(l), db = Σ_rows δ, δ^(l-1) = (δ·W) ⊙ relu′(z^(l-1)).
    for (std::size_t l = L; l >= 1; --l) {
      const std::int64_t n = sizes[l], k = sizes[l - 1];
      const float* xin = l == 1 ? x : a[l - 1].data();
      ad::blas::gemm<float>(true, false, n, k, B, 1.0f, dz[l].data(), n, xin, k, 0.0f, dW[l].data(), k);
      float* dbl = db[l].data();
      std::fill(dbl, dbl + n, 0.0f);
      for (std::int64_t r = 0; r < B; ++r) {
        const float* d = dz[l].data() + r * n;
        for (std::int64_t i = 0; i < n; ++i) dbl[i] += d[i];
      }
      if (l > 1) {
        float* dprev = dz[l - 1].data();
        ad::blas::gemm<float>(false, false, B, k, n, 1.0f, dz[l].data(), n, W[l].data(), k, 0.0f, dprev, k);
        const float* ap = a[l - 1].data();
        for (std::int64_t i = 0; i < B * k; ++i) dprev[i] = ap[i] > 0.0f ? dprev[i] : 0.0f;
      }
    }
    // Update (9.14/9.15), over the same threads as nn::SGD.
    for (std::size_t l = 1; l <= L; ++l) {
      float* w = W[l].data();
      const float* g = dW[l].data();
      ad::backend::parallel_for(static_cast<std::int64_t>(W[l].size()), 32768, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) w[i] -= lr * g[i];
      });
      float* bb = b[l].data();
      const float* gb = db[l].data();
      for (std::size_t i = 0; i < b[l].size(); ++i) bb[i] -= lr * gb[i];
    }
    return loss / static_cast<float>(B);
  }
};

/// The matrix-product flops of one step: forward, dW, and dX for every layer but the first.
double step_flops(const std::vector<std::int64_t>& sizes, std::int64_t B) {
  double f = 0;
  for (std::size_t l = 1; l < sizes.size(); ++l) {
    const double mnk = 2.0 * static_cast<double>(B * sizes[l] * sizes[l - 1]);
    f += (l > 1 ? 3 : 2) * mnk;
  }
  return f;
}

/// A CPU-bound child process pinned to one CPU, killed when this goes out of scope.
class Hog {
 public:
  explicit Hog(int cpu) {
    pid_ = ::fork();
    if (pid_ == 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpu, &set);
      ::sched_setaffinity(0, sizeof set, &set);
      volatile std::uint64_t x = 0;
      for (;;) x = x + 1;
    }
  }
  Hog(const Hog&) = delete;
  Hog& operator=(const Hog&) = delete;
  ~Hog() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

 private:
  pid_t pid_ = -1;
};

/// The second CPU this process may run on, or -1.
int second_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return -1;
  int seen = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set) && ++seen == 2) return c;
  return -1;
}

// The contestants' blocks: the pause before each, its length, and its untimed first steps.
constexpr auto settle = std::chrono::milliseconds(30);
constexpr auto block = std::chrono::milliseconds(40);
constexpr int warm_steps = 2, min_timed_steps = 3;

double us_since(Clock::time_point t0, Clock::time_point t1) { return 1e6 * bench::seconds_between(t0, t1); }

double max_abs_diff(const std::vector<float>& a, const float* b) {
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
  return d;
}

}  // namespace

/// The tape step at batch 128 with a CPU-bound process on the second CPU: the default thread count
/// against one thread, in alternating blocks of steps.
void contended(const std::vector<std::int64_t>& sizes, float lr, double seconds) {
  const int cpu = second_cpu();
  const int default_threads = ad::backend::threads();
  if (cpu < 0 || default_threads < 2) {
    fmt::print("mlp_step_contended skipped: this process may use one CPU only\n");
    return;
  }
  const std::int64_t B = 128;
  nn::Rng rng(1);
  const auto [x, y] = bench::random_batch(B, rng);
  nn::MLP net(sizes, nn::relu, rng);
  nn::SGD opt(net.parameters(), {.lr = lr});
  ad::Tape tape;
  auto step = [&] {
    tape.clear();
    const ad::Tensor J = nn::softmax_cross_entropy(net(tape, x), y);
    opt.step(tape.gradient(J));
  };
  std::vector<double> t_default, t_one;
  std::uint64_t late = 0, alone = 0, jobs = 0;
  {
    Hog hog(cpu);
    // Blocks of 200 steps (about 0.1-0.2 s), long enough for the pool's back-off to play out as it
    // would in a long training run.
    const auto budget = Clock::now() + std::chrono::duration<double>(std::max(seconds, 2.0));
    for (int block = 0; block < 4 || (Clock::now() < budget && block < 200); ++block) {
      const bool one = block % 2 == 1;
      ad::backend::set_threads(one ? 1 : 0);
      const auto s0 = ad::backend::pool_stats();
      for (int rep = 0; rep < 200; ++rep) {
        const auto t0 = Clock::now();
        step();
        if (rep >= 3) (one ? t_one : t_default).push_back(us_since(t0, Clock::now()));
      }
      if (!one) {
        const auto s1 = ad::backend::pool_stats();
        late += s1.late - s0.late;
        alone += s1.serial_backoff - s0.serial_backoff;
        jobs += s1.jobs - s0.jobs;
      }
    }
  }
  ad::backend::set_threads(0);
  const double md = median(t_default), m1 = median(t_one);
  fmt::print("mlp_step_contended batch={} default_us={:.1f} one_thread_us={:.1f} ratio={:.3f} threads={} hog_cpu={} "
             "steps={} late_events={} jobs_run_alone={}/{}\n",
             B, md, m1, md / m1, default_threads, cpu, t_default.size(), late, alone, jobs);
}

int main(int argc, char** argv) {
  const double seconds_per_batch = argc > 1 ? std::atof(argv[1]) : 3.0;
#ifdef DELTAGRAD_HAVE_TORCH
  fmt::print("# {}\n", bench::torch_prepare(argv));  // first: it may re-execute the program
#endif
  fmt::print("# {}\n", ad::blas::info());
  const ad::blas::Info info = ad::blas::info();
  const double peak = bench::peak_gflops();
  const std::vector<std::int64_t> sizes{784, 256, 128, 10};
  const float lr = 0.01f;
  for (std::int64_t B : {16, 128, 1024}) {
    nn::Rng rng(1);
    const auto [x, y] = bench::random_batch(B, rng);

    nn::MLP net(sizes, nn::relu, rng);
    Reference ref(net, lr);
#ifdef DELTAGRAD_HAVE_TORCH
    bench::TorchStep torch_step(sizes, ref.W, ref.b, x.data(), y.data(), B, lr);
#endif
    nn::SGD opt(net.parameters(), {.lr = lr});
    ad::Tape tape;
    auto tape_step = [&] {
      tape.clear();
      const ad::Tensor J = nn::softmax_cross_entropy(net(tape, x), y);
      opt.step(tape.gradient(J));
      return J.item();
    };
    // Same weights, one step each: they must agree (float32 rounding apart).
    const double loss_tape = tape_step();
    const double loss_ref = ref.step(x.data(), y.data(), B);
    double diff = 0;
    for (int l = 1; l <= 3; ++l)
      diff = std::max(diff, max_abs_diff(ref.W[static_cast<std::size_t>(l)], net.linear(l).weight().array<float>().data()));
#ifdef DELTAGRAD_HAVE_TORCH
    torch_step.step();
    double diff_torch = 0;
    for (int l = 1; l <= 3; ++l)
      diff_torch = std::max(diff_torch, max_abs_diff(torch_step.weight(l), ref.W[static_cast<std::size_t>(l)].data()));
    std::vector<double> t_torch;
#endif

    // Each contestant runs in blocks of consecutive steps, as in a training loop, so that its
    // threads are measured in their steady state (libtorch's OpenMP threads spin for several
    // milliseconds after a parallel region, the pool's workers for 200 µs).  Before each block the
    // program sleeps until the previous contestant's spinning threads are idle, the first steps of
    // a block are not timed, and the order of the contestants rotates from round to round.
    std::vector<double> t_tape, t_ref;
    std::vector<std::pair<std::function<void()>, std::vector<double>*>> contestants{
        {[&] { tape_step(); }, &t_tape}, {[&] { ref.step(x.data(), y.data(), B); }, &t_ref}};
#ifdef DELTAGRAD_HAVE_TORCH
    contestants.push_back({[&] { torch_step.step(); }, &t_torch});
#endif
    const auto budget = Clock::now() + std::chrono::duration<double>(seconds_per_batch);
    for (std::size_t round = 0; round < 3 || (Clock::now() < budget && round < 2000); ++round) {
      for (std::size_t c = 0; c < contestants.size(); ++c) {
        auto& [step, times] = contestants[(c + round) % contestants.size()];
        std::this_thread::sleep_for(settle);
        const auto block_end = Clock::now() + block;
        for (int rep = 0; rep < warm_steps + min_timed_steps || Clock::now() < block_end; ++rep) {
          const auto t0 = Clock::now();
          step();
          if (rep >= warm_steps) times->push_back(us_since(t0, Clock::now()));
        }
      }
    }
    const double mt = median(t_tape), mr = median(t_ref);
    fmt::print("mlp_step batch={} tape_us={:.1f} ref_us={:.1f} ratio={:.3f} reps={} loss_tape={:.6f} loss_ref={:.6f} "
               "max_weight_diff={:.2e} threads={} backend={} peak_gflops={:.1f} tape_gflops={:.1f}",
               B, mt, mr, mt / mr, t_tape.size(), loss_tape, loss_ref, diff, info.num_threads, info.backend, peak,
               step_flops(sizes, B) / mt * 1e-3);
#ifdef DELTAGRAD_HAVE_TORCH
    const double mtorch = median(t_torch);
    fmt::print(" torch_us={:.1f} tape_vs_torch={:.3f} max_weight_diff_torch={:.2e}", mtorch, mt / mtorch, diff_torch);
#endif
    fmt::print("\n");
  }
  contended(sizes, lr, seconds_per_batch);
}
