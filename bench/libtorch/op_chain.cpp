// The op chain of bench/tensor (2,000 element-wise ops on a one-element float tensor, recorded and
// swept) on deltagrad's tape and in libtorch, interleaved in one run; medians.  Prints
//   torch_op_chain ops=<> reps=<> deltagrad_ns_per_op=<> torch_ns_per_op=<> torch_over_deltagrad=<>
// Before timing, dy/dx of a 30-op chain is taken both ways and must agree to float32 rounding
// (exit status 1 if not; the 2,000-op chain's dy/dx underflows to 0, a product of ~667 tanh′ < 1).
#include <cmath>
#include <vector>

#include <fmt/core.h>

#include "../bench_util.hpp"
#include "torch_bench.hpp"

int main(int, char** argv) {
  fmt::print("# {}\n", bench::torch_prepare(argv));
  constexpr int ops = 2000, reps = 51;
  const ad::Array<float> x0({1}, {0.3f});
  ad::Tape tape;
  double dydx = 0, dydx_torch = 0;
  bench::deltagrad_op_chain(tape, x0, 30, dydx);
  bench::torch_op_chain(30, dydx_torch);
  fmt::print("# 30-op chain: dydx_deltagrad={:.7e} dydx_torch={:.7e}\n", dydx, dydx_torch);
  if (!(std::abs(dydx - dydx_torch) <= 1e-5 * std::abs(dydx)) || dydx == 0) return 1;

  double check = 0, torch_check = 0;
  std::vector<double> t_tape, t_torch;
  for (int r = 0; r < reps + 3; ++r) {
    const double tape_s = bench::deltagrad_op_chain(tape, x0, ops, check).total();
    const double torch_s = bench::torch_op_chain(ops, torch_check);
    if (r < 3) continue;  // warm-up
    t_tape.push_back(tape_s);
    t_torch.push_back(torch_s);
  }
  const double a = bench::median(t_tape) / ops * 1e9, b = bench::median(t_torch) / ops * 1e9;
  fmt::print("torch_op_chain ops={} reps={} deltagrad_ns_per_op={:.1f} torch_ns_per_op={:.1f} torch_over_deltagrad={:.1f}\n", ops,
             reps, a, b, b / a);
  return std::isfinite(check + torch_check) ? 0 : 1;
}
