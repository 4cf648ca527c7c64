// Small helpers several test files share: substring checks, the message of an expected exception,
// and seeded random arrays.
#pragma once

#include <doctest/doctest.h>

#include <random>
#include <string>

#include "autodiff/array.hpp"

namespace test_util {

/// Whether `part` occurs in `s`.
inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The message of the E that f throws; fails the test if f throws nothing or something else.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
    return {};
  }
  FAIL("nothing thrown");
  return {};
}

/// An array of the given shape filled from a uniform distribution on [lo, hi) with a fixed seed.
template <class T>
ad::Array<T> random_array(ad::Shape shape, unsigned seed, double lo = -1.0, double hi = 1.0) {
  ad::Array<T> a(shape);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : a.values()) v = static_cast<T>(u(rng));
  return a;
}

}  // namespace test_util
