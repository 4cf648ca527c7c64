// The scalar tape itself: adjoints of intermediates, repeated sweeps, clear(), bad handles.
#include <doctest/doctest.h>

#include "autodiff/autodiff.hpp"

TEST_CASE("tape: adjoints of every intermediate, by hand") {
  ad::Tape tape;
  ad::Var x = tape.variable(3.0), y = tape.variable(-2.0);
  ad::Var u = x * y;      // u = -6
  ad::Var v = u + x;      // v = -3
  ad::Var w = v * v;      // w = 9
  auto g = tape.gradient(w);
  CHECK(g[w] == 1.0);
  CHECK(g[v] == 2 * v.value());              // dw/dv = 2v = -6
  CHECK(g[u] == 2 * v.value());              // dv/du = 1
  CHECK(g[x] == 2 * v.value() * (y.value() + 1.0));  // through u (y) and directly (1)
  CHECK(g[y] == 2 * v.value() * x.value());
}

TEST_CASE("tape: a second gradient gives the same answer, with no accumulation") {
  ad::Tape tape;
  ad::Var x = tape.variable(0.7);
  ad::Var y = sin(x) * exp(x);
  auto g1 = tape.gradient(y);
  auto g2 = tape.gradient(y);
  CHECK(g1[x] == g2[x]);
  auto g3 = tape.gradient(y);
  CHECK(g3[x] == g1[x]);
}

TEST_CASE("tape: stale and foreign handles throw typed errors") {
  ad::Tape a, b;
  ad::Var x = a.variable(1.0), z = b.variable(2.0);
  CHECK_THROWS_AS(x + z, ad::ForeignHandleError);
  CHECK_THROWS_AS(b.gradient(x), ad::ForeignHandleError);
  auto g = a.gradient(x * 2.0);
  a.clear();
  CHECK_THROWS_AS(x.value(), ad::StaleHandleError);
  CHECK_THROWS_AS(exp(x), ad::StaleHandleError);
  CHECK_THROWS_AS(g[x], ad::StaleHandleError);
  CHECK_THROWS_AS(a.gradient(x), ad::StaleHandleError);
  CHECK_THROWS_AS(ad::Var{} * 2.0, ad::InvalidArgument);
  CHECK(a.entries() == 0);
}
