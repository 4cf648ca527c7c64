// Weight initialisers.  Each fills an Array in place from a seeded engine, so the same seed gives
// the same weights on every run and platform (the distributions come from Boost.Random, whose
// algorithms are fixed, unlike those of <random>).
//
// fan_in and fan_out are the numbers of inputs and outputs of the layer: for the seed's W^(l) of
// shape [s_l, s_{l-1}], fan_out = s_l and fan_in = s_{l-1}.
#pragma once

#include <cstdint>

#include "autodiff/array.hpp"
#include "nn/data.hpp"
#include "nn/module.hpp"

namespace nn {

/// How a weight matrix is initialised.
enum class Init {
  xavier_uniform,  ///< U(-a, a), a = sqrt(6 / (fan_in + fan_out)): Var = 2 / (fan_in + fan_out)  (Glorot & Bengio)
  xavier_normal,   ///< N(0, 2 / (fan_in + fan_out))
  he_uniform,      ///< U(-a, a), a = sqrt(6 / fan_in): Var = 2 / fan_in  (He et al., for ReLU layers)
  he_normal,       ///< N(0, 2 / fan_in)
  zeros,
};

const char* to_string(Init init);

/// Fills `a` following `init`.
template <ad::Element T>
void initialise(ad::Array<T>& a, Init init, std::int64_t fan_in, std::int64_t fan_out, Rng& rng);
/// The same for a parameter of either element type.
void initialise(Parameter& p, Init init, std::int64_t fan_in, std::int64_t fan_out, Rng& rng);

/// Uniform on [lo, hi) and normal N(mean, stddev²) fills.
template <ad::Element T>
void fill_uniform(ad::Array<T>& a, double lo, double hi, Rng& rng);
template <ad::Element T>
void fill_normal(ad::Array<T>& a, double mean, double stddev, Rng& rng);

}  // namespace nn
