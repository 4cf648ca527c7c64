// Small pieces shared by the benchmark programs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include <immintrin.h>

#include "autodiff/autodiff.hpp"

namespace bench {

using Clock = std::chrono::steady_clock;

/// A batch of B MNIST-shaped samples: 784 features uniform in [0, 1) and labels in 0..9, drawn from
/// `rng` in that order (features first), so a program that draws its network next gets the same
/// weights as before.
struct Batch {
  ad::Array<float> x;
  std::vector<std::int32_t> y;
};
template <class Rng>
Batch random_batch(std::int64_t B, Rng& rng) {
  Batch b{ad::Array<float>(ad::Shape{B, 784}), std::vector<std::int32_t>(static_cast<std::size_t>(B))};
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (float& v : b.x.values()) v = u(rng);
  for (auto& label : b.y) label = static_cast<std::int32_t>(rng() % 10);
  return b;
}

/// The median of v (the upper middle element when v has an even size).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

inline double seconds_between(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double>(t1 - t0).count();
}

/// Seconds spent recording and sweeping one op chain.
struct ChainTime {
  double record = 0, sweep = 0;
  double total() const { return record + sweep; }
};

/// The op chain: `ops` element-wise ops on a one-element float tensor, cycling y*1.0001, y+0.5,
/// tanh(y), recorded on `tape` (cleared first) and swept.  What the tape costs an op when there is
/// almost no arithmetic to do.  Adds dy/dx to `check`, so the work cannot be optimised away.
inline ChainTime deltagrad_op_chain(ad::Tape& tape, const ad::Array<float>& x0, int ops, double& check) {
  const auto t0 = Clock::now();
  tape.clear();
  const ad::Tensor x = tape.leaf(x0);
  ad::Tensor y = x;
  for (int i = 0; i < ops; ++i) {
    switch (i % 3) {
      case 0: y = y * 1.0001; break;
      case 1: y = y + 0.5; break;
      default: y = tanh(y); break;
    }
  }
  const auto t1 = Clock::now();
  const ad::Gradients g = tape.gradient(y);
  check += g[x].flat(0);
  const auto t2 = Clock::now();
  return {seconds_between(t0, t1), seconds_between(t1, t2)};
}

/// One core's float32 FMA rate in GFLOP/s: 16 independent chains of vector FMAs (enough to keep
/// two FMA ports busy through the FMA latency), AVX-512 where the CPU has it, else AVX2.
#define DELTAGRAD_FMA_PEAK(V, LANES, SET1, FMA)                                    \
  constexpr int chains = 16;                                                       \
  V acc[chains];                                                                   \
  for (auto& a : acc) a = SET1(0.999f);                                            \
  const V mul = SET1(0.9999f), add = SET1(1e-7f);                                  \
  std::int64_t iters = 0;                                                          \
  const auto t0 = Clock::now();                                                    \
  double seconds = 0;                                                              \
  while (seconds < 0.2) {                                                          \
    for (int r = 0; r < 100000; ++r)                                               \
      for (auto& a : acc) a = FMA(a, mul, add);                                    \
    iters += 100000;                                                               \
    seconds = seconds_between(t0, Clock::now());                                   \
  }                                                                                \
  float sink = 0;                                                                  \
  for (auto& a : acc) sink += reinterpret_cast<const float*>(&a)[0];               \
  if (sink == 12345.0f) std::printf("#");                                        \
  return 2.0 * LANES * chains * static_cast<double>(iters) / seconds * 1e-9;

__attribute__((target("avx512f"))) inline double peak_avx512() {
  DELTAGRAD_FMA_PEAK(__m512, 16, _mm512_set1_ps, _mm512_fmadd_ps)
}
__attribute__((target("avx2,fma"))) inline double peak_avx2() {
  DELTAGRAD_FMA_PEAK(__m256, 8, _mm256_set1_ps, _mm256_fmadd_ps)
}
#undef DELTAGRAD_FMA_PEAK

/// Printed beside timings, so that a figure taken while the machine ran slower (a busy host of a
/// virtual machine) shows it.
inline double peak_gflops() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return peak_avx512();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return peak_avx2();
  return 0;
}

}  // namespace bench
