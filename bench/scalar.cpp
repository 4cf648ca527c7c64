// The cost of the scalar tape against plain double code.
//
//   f(x) = (1/n) Σ_{i<n-1} [tanh(x_i x_{i+1}) + exp(-x_i²) sin(x_i)],   x_i = sin(0.1 i)
//
// For n = 10^5 and 10^6, in one run: the median time of f in plain double (f_us), of recording f
// on the tape and sweeping it backwards into a gradient vector (tape_us; the tape is cleared
// before each repetition, so its memory is reused as in a training loop), and of a gradient coded
// by hand (hand_us).  ratio = tape_us / f_us.  bytes_per_op is the tape's memory in use divided
// by the number of recorded entries.  Times are the thread's CPU time, so other processes on a
// shared machine do not inflate them.
//
// The program checks that the tape's gradient equals the hand-coded one.  Some components of this
// gradient are sums of terms that nearly cancel (a component of 1e-11 made of terms of 1e-6), so
// each difference is taken relative to the sum of the magnitudes of the terms of that component,
// the scale of its rounding error; it exits with status 1 if any is above 1e-12.
//
// Output, one line per n:
//   scalar n=<n> f_us=<> tape_us=<> hand_us=<> ratio=<tape/f> bytes_per_op=<> peak_gflops=<>
// preceded by a '#' line with details.  peak_gflops is one core's float32 FMA rate measured just
// after the timings: a virtual machine whose host is busy runs everything slower, CPU time included.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <vector>

#include <fmt/core.h>

#include "autodiff/autodiff.hpp"
#include "bench_util.hpp"

namespace {

/// Keeps a result alive so the compiler cannot drop the computation that made it.
void keep(double v) { asm volatile("" : : "g"(v) : "memory"); }

double f_plain(const std::vector<double>& x) {
  const std::size_t n = x.size();
  double s = 0.0;
  for (std::size_t i = 0; i + 1 < n; ++i) s += std::tanh(x[i] * x[i + 1]) + std::exp(-x[i] * x[i]) * std::sin(x[i]);
  return s / static_cast<double>(n);
}

/// f and its gradient, by hand:
///   ∂/∂x_i     += (1 - tanh²(x_i x_{i+1})) x_{i+1} / n + e^{-x_i²} (cos x_i - 2 x_i sin x_i) / n
///   ∂/∂x_{i+1} += (1 - tanh²(x_i x_{i+1})) x_i / n
double f_hand(const std::vector<double>& x, std::vector<double>& g) {
  const std::size_t n = x.size();
  const double inv_n = 1.0 / static_cast<double>(n);
  std::fill(g.begin(), g.end(), 0.0);
  double s = 0.0;
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const double a = x[i], b = x[i + 1];
    const double t = std::tanh(a * b), e = std::exp(-a * a), sn = std::sin(a), cs = std::cos(a);
    s += t + e * sn;
    const double dt = (1.0 - t * t) * inv_n;
    g[i] += dt * b + e * (cs - 2.0 * a * sn) * inv_n;
    g[i + 1] += dt * a;
  }
  return s * inv_n;
}

/// The scale of the rounding error of each gradient component: the sum of the magnitudes of the
/// terms f_hand adds into it.
std::vector<double> gradient_term_magnitudes(const std::vector<double>& x) {
  const std::size_t n = x.size();
  const double inv_n = 1.0 / static_cast<double>(n);
  std::vector<double> m(n, 0.0);
  for (std::size_t i = 0; i + 1 < n; ++i) {
    const double a = x[i], b = x[i + 1];
    const double t = std::tanh(a * b), e = std::exp(-a * a);
    const double dt = (1.0 - t * t) * inv_n;
    m[i] += std::fabs(dt * b) + e * (std::fabs(std::cos(a)) + std::fabs(2.0 * a * std::sin(a))) * inv_n;
    m[i + 1] += std::fabs(dt * a);
  }
  return m;
}

/// f recorded on the tape, swept backwards; the gradient is copied into g.
double f_tape(ad::Tape& tape, const std::vector<double>& x, std::vector<ad::Var>& xs, std::vector<double>& g) {
  const std::size_t n = x.size();
  tape.clear();
  for (std::size_t i = 0; i < n; ++i) xs[i] = tape.variable(x[i]);
  ad::Var s = tape.variable(0.0);
  for (std::size_t i = 0; i + 1 < n; ++i) s += tanh(xs[i] * xs[i + 1]) + exp(-(xs[i] * xs[i])) * sin(xs[i]);
  const ad::Var y = s / static_cast<double>(n);
  const ad::Gradients grad = tape.gradient(y);
  for (std::size_t i = 0; i < n; ++i) g[i] = grad[xs[i]];
  return y.value();
}

/// CPU time of the calling thread, in microseconds.
double cpu_us() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) * 1e-3;
}

template <class F>
double median_us(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = cpu_us();
    f();
    t.push_back(cpu_us() - t0);
  }
  std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
  return t[static_cast<std::size_t>(reps / 2)];
}

}  // namespace

int main() {
  constexpr int reps = 15;  // odd, so the median is one measured repetition
  ad::Tape tape;
  for (std::size_t n : {std::size_t{100'000}, std::size_t{1'000'000}}) {
    std::vector<double> x(n), g_tape(n), g_hand(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = std::sin(0.1 * static_cast<double>(i));
    std::vector<ad::Var> xs(n);

    // One untimed run of each: warms caches and lets the tape reach its steady-state capacity.
    const double y_plain = f_plain(x), y_hand = f_hand(x, g_hand), y_tape = f_tape(tape, x, xs, g_tape);
    const double bytes_per_op = static_cast<double>(tape.bytes_used()) / static_cast<double>(tape.entries());
    const std::size_t entries = tape.entries();

    const std::vector<double> scale = gradient_term_magnitudes(x);
    double max_rel = std::fabs(y_tape - y_hand) / std::fabs(y_hand);
    for (std::size_t i = 0; i < n; ++i) {
      const double r = std::fabs(g_tape[i] - g_hand[i]) / scale[i];
      if (!(r <= max_rel)) max_rel = r;  // a NaN sticks
    }

    const double f_us = median_us(reps, [&] { keep(f_plain(x)); });
    const double tape_us = median_us(reps, [&] { keep(f_tape(tape, x, xs, g_tape)); });
    const double hand_us = median_us(reps, [&] { keep(f_hand(x, g_hand)); });

    fmt::print("# n={} entries={} bytes_used/entries={:.3f} Tape::bytes_per_scalar_entry={} "
               "f(x)={:.17g} max_rel_diff(tape, hand)={:.3g} |f_plain - f_hand|={:.3g}\n",
               n, entries, bytes_per_op, ad::Tape::bytes_per_scalar_entry, y_tape, max_rel,
               std::fabs(y_plain - y_hand));
    fmt::print("scalar n={} f_us={:.0f} tape_us={:.0f} hand_us={:.0f} ratio={:.2f} bytes_per_op={:.2f} peak_gflops={:.1f}\n",
               n, f_us, tape_us, hand_us, tape_us / f_us, bytes_per_op, bench::peak_gflops());
    std::fflush(stdout);
    if (!(max_rel <= 1e-12)) {
      fmt::print(stderr, "scalar: the tape's gradient differs from the hand-coded one by {:.3g} (relative)\n", max_rel);
      return EXIT_FAILURE;
    }
  }
}
