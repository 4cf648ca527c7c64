// Hardening of the engine: element counts that overflow 64 bits, allocations that cannot succeed,
// pow with a zero exponent, and a tape met by two threads.  Each case checks the typed error (or
// the fixed value) and that the tape was left as it was.
#include <doctest/doctest.h>

#include <cmath>
#include <thread>

#include "autodiff/autodiff.hpp"
#include "test_util.hpp"

// The tape's arena allocates with nothrow new: under ASan an impossible size must then return null
// (and become AllocationError) rather than abort.  Only read by ASan; harmless elsewhere.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }

using ad::Shape;
using ad::Tape;
using ad::Tensor;
using ad::Var;

namespace {

using test_util::contains;
using test_util::error_of;

constexpr std::int64_t two_pow(int k) { return std::int64_t{1} << k; }

}  // namespace

TEST_CASE("hardening: shapes whose element count overflows 64 bits are refused") {
  // 2^62 + 1 rows of 4: the count wraps to 4, and a(5, 0) used to write out of bounds.
  std::string m = error_of<ad::ShapeError>([] { ad::Array<float> a(Shape{two_pow(62) + 1, 4}); });
  CHECK(contains(m, "Array: shape [4611686018427387905,4] has more than 281474976710656 (2^48) elements"));
  // 2^32 x 2^32: the count wraps to 0.
  m = error_of<ad::ShapeError>([] { ad::Array<double> a(Shape{two_pow(32), two_pow(32)}); });
  CHECK(contains(m, "[4294967296,4294967296] has more than"));
  // A zero dimension does not hide the others.
  CHECK_THROWS_AS(ad::Array<float>(Shape{0, two_pow(62)}), ad::ShapeError);
  CHECK_THROWS_AS(ad::make_shape({two_pow(20), two_pow(20), two_pow(20)}), ad::ShapeError);
  // The largest allowed count is fine as a shape (allocating it is another matter).
  CHECK_NOTHROW(ad::check_shape(Shape{two_pow(24), two_pow(24)}, "t"));
  CHECK(ad::Array<float>(Shape{0, two_pow(40)}).size() == 0);  // within the cap: an empty array
}

TEST_CASE("hardening: reshape to a shape whose element count overflows is refused, tape unchanged") {
  Tape tape;
  ad::Array<float> a(Shape{4});
  const Tensor x = tape.leaf(a);
  const std::size_t before = tape.size();
  for (const std::vector<std::int64_t>& dims :
       std::vector<std::vector<std::int64_t>>{{two_pow(62) + 1, 4}, {two_pow(32), two_pow(32)}, {0, two_pow(62)},
                                              {-1, two_pow(32), two_pow(32)}}) {
    CAPTURE(dims.size());
    const std::string m = error_of<ad::ShapeError>([&] { ad::reshape(x, dims); });
    CHECK(contains(m, "reshape"));
    CHECK(tape.size() == before);
  }
  CHECK_THROWS_AS(a.reshaped(Shape{two_pow(32), two_pow(32)}), ad::ShapeError);
  CHECK(ad::reshape(x, {2, 2}).shape() == Shape{2, 2});
}

TEST_CASE("hardening: an impossible allocation is a typed error naming the op and the shape, tape unchanged") {
  Tape tape;
  // 2^23 x 2^23 float elements are 256 TiB: more than any address space, so this always fails.
  const Tensor col = tape.leaf(ad::Array<float>(Shape{two_pow(23), 1}));
  const Tensor row = tape.leaf(ad::Array<float>(Shape{1, two_pow(23)}));
  const std::size_t before = tape.size(), used = tape.bytes_used();
  std::string m = error_of<ad::AllocationError>([&] { (void)(col * row); });
  CHECK(contains(m, "mul: cannot allocate f32[8388608,8388608]"));
  CHECK(contains(m, "out of memory"));
  m = error_of<ad::AllocationError>([&] { (void)ad::matmul(col, row); });
  CHECK(contains(m, "matmul: cannot allocate f32[8388608,8388608]"));
  CHECK(tape.size() == before);
  CHECK(tape.bytes_used() == used);
#if !defined(__SANITIZE_ADDRESS__)
  // (ASan's throwing operator new aborts on an impossible size instead of throwing bad_alloc.)
  m = error_of<ad::AllocationError>([] { ad::Array<double> a(Shape{two_pow(23), two_pow(23)}); });
  CHECK(contains(m, "Array: cannot allocate f64[8388608,8388608]"));
#endif
  // The tape still works.
  const Tensor s = ad::sum(col * 2.0);
  CHECK(tape.gradient(s)[col].flat(0) == 2.0);
}

TEST_CASE("hardening: pow with exponent 0 has derivative 0 at x = 0, scalar and tensor") {
  Tape tape;
  const Var x = tape.variable(0.0);
  const Var y = pow(x, 0.0);
  CHECK(y.value() == 1.0);
  CHECK(tape.gradient(y)[x] == 0.0);
  // pow(Var 0, Var 0): partials 0 and 0 (were NaN and -inf).
  const Var a = tape.variable(0.0), b = tape.variable(0.0);
  const Var p = pow(a, b);
  CHECK(p.value() == 1.0);
  const auto g = tape.gradient(p);
  CHECK(g[a] == 0.0);
  CHECK(g[b] == 0.0);
  // 0^x for x >= 0: derivative 0 (was NaN for x > 0 and -inf at 0).
  const Var e = tape.variable(0.0), e2 = tape.variable(1.5);
  const Var q = pow(0.0, e), q2 = pow(0.0, e2);
  CHECK(tape.gradient(q)[e] == 0.0);
  CHECK(tape.gradient(q2)[e2] == 0.0);
  // Elsewhere the formulas are unchanged.
  const Var u = tape.variable(2.0), v = tape.variable(3.0);
  const Var r = pow(u, v);
  const auto gr = tape.gradient(r);
  CHECK(gr[u] == 12.0);
  CHECK(gr[v] == doctest::Approx(8.0 * std::log(2.0)).epsilon(1e-15));
  CHECK(tape.gradient(pow(u, 0.0))[u] == 0.0);

  // Tensors: pow(t, 0) at zeros, float and double.
  ad::Array<double> zeros(Shape{3});
  const Tensor t = tape.leaf(zeros);
  const auto gt = tape.gradient(ad::sum(ad::pow(t, 0.0)));
  for (int i = 0; i < 3; ++i) CHECK(gt[t].flat(i) == 0.0);
  ad::Array<float> zf(Shape{2});
  const Tensor tf = tape.leaf(zf);
  const auto gf = tape.gradient(ad::sum(ad::pow(tf, 0.0)));
  CHECK(gf[tf].flat(0) == 0.0);
  CHECK(gf[tf].flat(1) == 0.0);
}

TEST_CASE("hardening: one tape per thread is safe, a tape handed over after clear() works") {
  // Four threads, each with its own tape: d/dx of x^3 at x = k is 3k^2.
  std::vector<double> got(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([k, &got] {
      Tape tape;
      const Var x = tape.variable(k);
      got[static_cast<std::size_t>(k)] = tape.gradient(x * x * x)[x];
    });
  for (auto& t : threads) t.join();
  for (int k = 0; k < 4; ++k) CHECK(got[static_cast<std::size_t>(k)] == 3.0 * k * k);

  // A tape made here, recorded on here, then handed to a worker that starts with clear().
  Tape tape;
  (void)tape.variable(1.0);
  double worker = 0;
  std::thread([&] {
    tape.clear();
    const Var x = tape.variable(5.0);
    worker = tape.gradient(x * x)[x];
  }).join();
  CHECK(worker == 10.0);
}

#if DELTAGRAD_THREAD_CHECKS
TEST_CASE("hardening: recording on a tape another thread owns throws ThreadError, tape unchanged") {
  Tape tape;
  const Var x = tape.variable(2.0);
  const Tensor t = tape.leaf(ad::Array<double>(Shape{2}));
  const std::size_t before = tape.size();
  // doctest's assertions belong to the main thread: the worker only records what it caught.
  auto caught = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const ad::ThreadError& e) {
      return e.what();
    } catch (...) {
      return "another exception";
    }
    return "nothing thrown";
  };
  std::string scalar, tensor, leaf;
  std::thread([&] {
    scalar = caught([&] { [[maybe_unused]] const Var y = x * x; });  // a Var records its expression when assigned
    tensor = caught([&] { (void)(t * 2.0); });
    leaf = caught([&] { (void)tape.variable(1.0); });
  }).join();
  CHECK(contains(scalar, "tape: recording from a thread other than the one that owns this tape"));
  CHECK(contains(tensor, "use one tape per thread"));
  CHECK(contains(leaf, "tape: recording from a thread other"));
  CHECK(tape.size() == before);
  // The owner goes on as if nothing happened.
  const Var y = x * x;
  CHECK(tape.gradient(y)[x] == 4.0);
}
#endif
