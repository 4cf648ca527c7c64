#include "autodiff/blas_summary.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace ad::blas {

const char* to_string(Simd s) {
  switch (s) {
    case Simd::sse: return "SSE";
    case Simd::avx: return "AVX";
    case Simd::avx2: return "AVX2";
    case Simd::avx512: return "AVX-512";
    case Simd::unknown: break;
  }
  return "unknown";
}

Simd cpu_simd() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return Simd::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Simd::avx2;
  if (__builtin_cpu_supports("avx")) return Simd::avx;
  return Simd::sse;
#else
  return Simd::unknown;
#endif
}

Simd core_simd(std::string_view core) {
  std::string c(core);
  std::transform(c.begin(), c.end(), c.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  // OpenBLAS's x86-64 cores (driver/others/dynamic.c) by the instruction set of their kernels.
  static constexpr std::pair<const char*, Simd> table[] = {
      {"skylakex", Simd::avx512}, {"cooperlake", Simd::avx512}, {"sapphirerapids", Simd::avx512},
      {"haswell", Simd::avx2},    {"zen", Simd::avx2},          {"excavator", Simd::avx2},
      {"sandybridge", Simd::avx}, {"bulldozer", Simd::avx},     {"piledriver", Simd::avx},
      {"steamroller", Simd::avx}, {"prescott", Simd::sse},      {"core2", Simd::sse},
      {"penryn", Simd::sse},      {"dunnington", Simd::sse},    {"nehalem", Simd::sse},
      {"atom", Simd::sse},        {"opteron", Simd::sse},       {"barcelona", Simd::sse},
      {"nano", Simd::sse},        {"katmai", Simd::sse},        {"coppermine", Simd::sse},
      {"northwood", Simd::sse},   {"banias", Simd::sse},        {"bobcat", Simd::sse},
  };
  for (const auto& [name, simd] : table)
    if (c == name) return simd;
  return Simd::unknown;
}

std::string slow_core_warning(const Info& info, Simd cpu) {
  const Simd kernels = core_simd(info.core);
  if (kernels == Simd::unknown || cpu == Simd::unknown || kernels >= cpu) return {};
  std::string why, fix;
  if (info.core_from == "user") {
    why = fmt::format("OPENBLAS_CORETYPE={} is set in the environment", info.core);
    fix = "unset OPENBLAS_CORETYPE to let deltagrad choose";
  } else if (info.core_from == "preloaded") {
    why = "OpenBLAS was loaded and configured before deltagrad";
    fix = "start the program with OPENBLAS_CORETYPE set for this CPU (see ad::blas::default_settings())";
  } else {
    why = "OpenBLAS chose it";
    fix = "set OPENBLAS_CORETYPE for this CPU";
  }
  return fmt::format("warning: BLAS runs the {} kernels ({}) but this CPU has {}: {}. Matrix products can take up to "
                     "twice as long; {}.",
                     info.core, to_string(kernels), to_string(cpu), why, fix);
}

std::string summary_line() {
  const Info& info = load();
  std::string name = info.library;
  if (info.config.rfind("OpenBLAS ", 0) == 0) {  // "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." -> "OpenBLAS 0.3.21"
    const auto end = info.config.find(' ', 9);
    name = info.config.substr(0, end);
  }
  const Simd cpu = cpu_simd();
  std::string line;
  if (info.core.empty()) {
    line = fmt::format("BLAS: {}", name);
  } else {
    const std::string who = info.core_from == "user"        ? "set by OPENBLAS_CORETYPE"
                            : info.core_from == "deltagrad" ? "chosen by deltagrad"
                            : info.core_from == "preloaded" ? "configured before deltagrad loaded it"
                                                            : "OpenBLAS's own choice";
    line = fmt::format("BLAS: {}, core {} ({} kernels, {}; this CPU has {})", name, info.core,
                       to_string(core_simd(info.core)), who, to_string(cpu));
  }
  if (std::string w = slow_core_warning(info, cpu); !w.empty()) line += "\n" + w;
  return line;
}

}  // namespace ad::blas
