#include "nn/init.hpp"

#include <cmath>

#include <boost/random/normal_distribution.hpp>
#include <boost/random/uniform_real_distribution.hpp>

namespace nn {

const char* to_string(Init init) {
  switch (init) {
    case Init::xavier_uniform: return "xavier_uniform";
    case Init::xavier_normal: return "xavier_normal";
    case Init::he_uniform: return "he_uniform";
    case Init::he_normal: return "he_normal";
    case Init::zeros: return "zeros";
  }
  return "?";
}

template <ad::Element T>
void fill_uniform(ad::Array<T>& a, double lo, double hi, Rng& rng) {
  boost::random::uniform_real_distribution<double> d(lo, hi);
  for (T& v : a.values()) v = static_cast<T>(d(rng));
}

template <ad::Element T>
void fill_normal(ad::Array<T>& a, double mean, double stddev, Rng& rng) {
  boost::random::normal_distribution<double> d(mean, stddev);
  for (T& v : a.values()) v = static_cast<T>(d(rng));
}

template <ad::Element T>
void initialise(ad::Array<T>& a, Init init, std::int64_t fan_in, std::int64_t fan_out, Rng& rng) {
  if (fan_in <= 0 || fan_out <= 0)
    throw ad::InvalidArgument(fmt::format("initialise({}): fan_in {} and fan_out {} must be positive", to_string(init),
                                          fan_in, fan_out));
  const double in = static_cast<double>(fan_in), out = static_cast<double>(fan_out);
  switch (init) {
    case Init::xavier_uniform: {
      const double r = std::sqrt(6.0 / (in + out));
      return fill_uniform(a, -r, r, rng);
    }
    case Init::xavier_normal: return fill_normal(a, 0.0, std::sqrt(2.0 / (in + out)), rng);
    case Init::he_uniform: {
      const double r = std::sqrt(6.0 / in);
      return fill_uniform(a, -r, r, rng);
    }
    case Init::he_normal: return fill_normal(a, 0.0, std::sqrt(2.0 / in), rng);
    case Init::zeros: std::fill_n(a.data(), a.size(), T{}); return;
  }
}

void initialise(Parameter& p, Init init, std::int64_t fan_in, std::int64_t fan_out, Rng& rng) {
  ad::dispatch(p.dtype(), [&]<class T>() { initialise(p.array<T>(), init, fan_in, fan_out, rng); });
}

template void fill_uniform(ad::Array<float>&, double, double, Rng&);
template void fill_uniform(ad::Array<double>&, double, double, Rng&);
template void fill_normal(ad::Array<float>&, double, double, Rng&);
template void fill_normal(ad::Array<double>&, double, double, Rng&);
template void initialise(ad::Array<float>&, Init, std::int64_t, std::int64_t, Rng&);
template void initialise(ad::Array<double>&, Init, std::int64_t, std::int64_t, Rng&);

}  // namespace nn
