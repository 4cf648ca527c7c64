// The matrix-product backends and the thread pool: oneDNN against OpenBLAS and a float64 loop
// (every transpose combination, beta 0 and 1, padded rows, products split by rows and by
// columns, one to three threads), the fused linear forward, and the pool's chunk contract.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "autodiff/backend/onednn.hpp"
#include "autodiff/backend/pool.hpp"
#include "autodiff/blas.hpp"

namespace {

/// Restores the thread count and backend a test changed.
struct Restore {
  int threads = ad::backend::threads();
  ad::blas::Backend backend = ad::blas::backend();
  ~Restore() {
    ad::backend::set_threads(0);
    if (ad::backend::threads() != threads) ad::backend::set_threads(threads);
    ad::blas::set_backend(backend);
  }
};

struct Case {
  bool ta, tb;
  std::int64_t m, n, k, pad;  // pad: extra elements at the end of every stored row
  float beta;
};

/// C = op(A)·op(B) + beta·C0 in float64, for the row-major, padded operands of `c`.
std::vector<double> exact(const Case& c, const std::vector<float>& a, std::int64_t lda, const std::vector<float>& b,
                          std::int64_t ldb, const std::vector<float>& c0, std::int64_t ldc) {
  std::vector<double> out(static_cast<std::size_t>(c.m * ldc));
  for (std::int64_t i = 0; i < c.m; ++i)
    for (std::int64_t j = 0; j < c.n; ++j) {
      double s = 0;
      for (std::int64_t p = 0; p < c.k; ++p) {
        const double av = c.ta ? a[p * lda + i] : a[i * lda + p];
        const double bv = c.tb ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
      }
      out[i * ldc + j] = s + c.beta * c0[i * ldc + j];
    }
  return out;
}

std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

}  // namespace

TEST_CASE("backend: float32 products agree with float64 on both backends, split over 1 to 3 threads") {
  Restore restore;
  std::mt19937 rng(7);
  const std::vector<Case> cases{
      {false, false, 5, 7, 3, 0, 0.0f},      {false, true, 128, 256, 784, 0, 1.0f}, {true, false, 256, 784, 128, 0, 0.0f},
      {true, true, 33, 70, 19, 3, 1.0f},     {false, false, 16, 784, 256, 0, 0.0f}, {true, false, 10, 128, 16, 0, 1.0f},
      {false, true, 16, 256, 784, 5, 0.0f},  {true, true, 200, 48, 64, 1, 0.0f},    {false, false, 97, 113, 61, 2, 1.0f},
  };
  std::vector<ad::blas::Backend> backends{ad::blas::Backend::openblas};
  if (ad::backend::onednn::available()) backends.push_back(ad::blas::Backend::onednn);
  for (const Case& c : cases) {
    const std::int64_t a_rows = c.ta ? c.k : c.m, a_cols = c.ta ? c.m : c.k;
    const std::int64_t b_rows = c.tb ? c.n : c.k, b_cols = c.tb ? c.k : c.n;
    const std::int64_t lda = a_cols + c.pad, ldb = b_cols + c.pad, ldc = c.n + c.pad;
    const auto a = random_floats(static_cast<std::size_t>(a_rows * lda), rng);
    const auto b = random_floats(static_cast<std::size_t>(b_rows * ldb), rng);
    const auto c0 = random_floats(static_cast<std::size_t>(c.m * ldc), rng);
    const auto want = exact(c, a, lda, b, ldb, c0, ldc);
    for (const auto be : backends)
      for (int threads : {1, 2, 3}) {
        INFO("ta=", c.ta, " tb=", c.tb, " m=", c.m, " n=", c.n, " k=", c.k, " pad=", c.pad, " beta=", c.beta,
             " backend=", static_cast<int>(be), " threads=", threads);
        ad::blas::set_backend(be);
        ad::backend::set_threads(threads);
        std::vector<float> got = c0;
        ad::blas::gemm<float>(c.ta, c.tb, c.m, c.n, c.k, 1.0f, a.data(), lda, b.data(), ldb, c.beta, got.data(), ldc);
        // Each term is rounded once to float and the sum of k terms accumulates at most k roundings
        // of values no larger than k (|a|, |b| <= 1): |error| <= k·eps·(k + 1) with margin.
        const double bound = 4.0 * static_cast<double>(c.k + 1) * static_cast<double>(c.k + 1) * 6e-8;
        double worst = 0;
        for (std::int64_t i = 0; i < c.m; ++i) {
          for (std::int64_t j = 0; j < c.n; ++j)
            worst = std::max(worst, std::abs(got[i * ldc + j] - want[i * ldc + j]));
          for (std::int64_t j = c.n; j < ldc; ++j) REQUIRE(got[i * ldc + j] == c0[i * ldc + j]);  // padding untouched
        }
        CHECK(worst <= bound);
      }
  }
}

TEST_CASE("backend: oneDNN and OpenBLAS give the same products to float rounding") {
  if (!ad::backend::onednn::available()) return;
  Restore restore;
  std::mt19937 rng(3);
  const std::int64_t m = 128, n = 256, k = 784;
  const auto x = random_floats(static_cast<std::size_t>(m * k), rng);
  const auto w = random_floats(static_cast<std::size_t>(n * k), rng);
  std::vector<float> by_dnnl(static_cast<std::size_t>(m * n)), by_blas(by_dnnl.size());
  ad::blas::set_backend(ad::blas::Backend::onednn);
  ad::blas::gemm<float>(false, true, m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, by_dnnl.data(), n);
  ad::blas::set_backend(ad::blas::Backend::openblas);
  ad::blas::gemm<float>(false, true, m, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, by_blas.data(), n);
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < by_dnnl.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(by_dnnl[i] - by_blas[i])));
    scale = std::max(scale, static_cast<double>(std::abs(by_blas[i])));
  }
  CHECK(scale > 1.0);  // the products are not trivially zero
  // Both sum 784 products in different orders: a few hundred float ulps of the largest partial sum.
  CHECK(worst <= 1e-4 * scale);
}

TEST_CASE("backend: linear_forward adds the bias to every row, on both backends and both element types") {
  Restore restore;
  std::mt19937 rng(11);
  const std::int64_t m = 70, n = 48, k = 33;
  const auto x = random_floats(static_cast<std::size_t>(m * k), rng);
  const auto w = random_floats(static_cast<std::size_t>(n * k), rng);
  const auto bias = random_floats(static_cast<std::size_t>(n), rng);
  std::vector<ad::blas::Backend> backends{ad::blas::Backend::openblas};
  if (ad::backend::onednn::available()) backends.push_back(ad::blas::Backend::onednn);
  for (const auto be : backends)
    for (int threads : {1, 2}) {
      ad::blas::set_backend(be);
      ad::backend::set_threads(threads);
      std::vector<float> z(static_cast<std::size_t>(m * n), 99.0f);
      ad::blas::linear_forward<float>(m, n, k, x.data(), w.data(), bias.data(), z.data());
      std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), bd(bias.begin(), bias.end());
      std::vector<double> zd(z.size(), 99.0);
      ad::blas::linear_forward<double>(m, n, k, xd.data(), wd.data(), bd.data(), zd.data());
      double worst_f = 0, worst_d = 0;
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double s = bias[static_cast<std::size_t>(j)];
          for (std::int64_t p = 0; p < k; ++p) s += double(x[i * k + p]) * double(w[j * k + p]);
          worst_f = std::max(worst_f, std::abs(z[i * n + j] - s));
          worst_d = std::max(worst_d, std::abs(zd[i * n + j] - s));
        }
      CAPTURE(threads);
      CHECK(worst_f <= 1e-5);
      CHECK(worst_d <= 1e-12);
    }
  // k = 0: the bias alone.
  std::vector<float> z(4 * 3, 5.0f);
  ad::blas::linear_forward<float>(4, 3, 0, nullptr, nullptr, bias.data(), z.data());
  for (std::size_t i = 0; i < z.size(); ++i) CHECK(z[i] == bias[i % 3]);
}

TEST_CASE("backend: run_chunks runs every chunk exactly once and rethrows a chunk's exception") {
  Restore restore;
  for (int threads : {1, 2, 4}) {
    ad::backend::set_threads(threads);
    CHECK(ad::backend::threads() == threads);
    CHECK(ad::backend::threads_from() == "code");
    for (int round = 0; round < 200; ++round) {
      const int chunks = 1 + round % 37;
      std::vector<std::atomic<int>> hits(static_cast<std::size_t>(chunks));
      ad::backend::run_chunks(chunks, [&](int i) { hits[static_cast<std::size_t>(i)].fetch_add(1); });
      for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    // A chunk that starts its own chunks runs them on its thread.
    std::atomic<int> inner{0};
    ad::backend::run_chunks(4, [&](int) { ad::backend::run_chunks(3, [&](int) { inner.fetch_add(1); }); });
    CHECK(inner.load() == 12);
    CHECK_THROWS_WITH_AS(ad::backend::run_chunks(5,
                                                 [](int i) {
                                                   if (i == 3) throw std::runtime_error("chunk 3 failed");
                                                 }),
                         "chunk 3 failed", std::runtime_error);
    // The pool still works after an exception.
    std::atomic<int> after{0};
    ad::backend::run_chunks(6, [&](int) { after.fetch_add(1); });
    CHECK(after.load() == 6);
  }
}

TEST_CASE("backend: parallel_for covers the range once, in ranges no shorter than the grain") {
  Restore restore;
  ad::backend::set_threads(2);
  for (std::int64_t n : {0, 1, 999, 1000, 1999, 2000, 100000}) {
    std::vector<int> seen(static_cast<std::size_t>(n), 0);
    std::atomic<int> ranges{0};
    std::atomic<std::int64_t> shortest{n};
    ad::backend::parallel_for(n, 1000, [&](std::int64_t b, std::int64_t e) {
      ranges.fetch_add(1);
      std::int64_t s = shortest.load();
      while (e - b < s && !shortest.compare_exchange_weak(s, e - b)) {
      }
      for (std::int64_t i = b; i < e; ++i) ++seen[static_cast<std::size_t>(i)];
    });
    CAPTURE(n);
    CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
    CHECK(ranges.load() == (n == 0 ? 0 : n < 2000 ? 1 : 2));
    if (ranges.load() > 1) CHECK(shortest.load() >= 1000);
  }
}

TEST_CASE("backend: parallel_for_balanced covers the range once, in up to four ranges a thread") {
  Restore restore;
  for (int threads : {1, 2, 3}) {
    ad::backend::set_threads(threads);
    for (std::int64_t n : {0, 1, 999, 1000, 1999, 2000, 5000, 100000}) {
      std::vector<int> seen(static_cast<std::size_t>(n), 0);
      std::atomic<int> ranges{0};
      std::atomic<std::int64_t> shortest{n};
      ad::backend::parallel_for_balanced(n, 1000, [&](std::int64_t b, std::int64_t e) {
        ranges.fetch_add(1);
        std::int64_t s = shortest.load();
        while (e - b < s && !shortest.compare_exchange_weak(s, e - b)) {
        }
        for (std::int64_t i = b; i < e; ++i) ++seen[static_cast<std::size_t>(i)];
      });
      CAPTURE(threads);
      CAPTURE(n);
      CHECK(std::all_of(seen.begin(), seen.end(), [](int v) { return v == 1; }));
      const std::int64_t expected = n == 0 ? 0 : threads == 1 || n < 2000 ? 1 : std::min<std::int64_t>(n / 1000, 4 * threads);
      CHECK(ranges.load() == expected);
      if (ranges.load() > 1) CHECK(shortest.load() >= 1000);
    }
  }
}

TEST_CASE("backend: thread count and backend settings, with errors for bad values") {
  Restore restore;
  CHECK_THROWS_AS(ad::backend::set_threads(-1), ad::InvalidArgument);
  ad::backend::set_threads(0);
  CHECK(ad::backend::threads() >= 1);
  const std::string from = ad::backend::threads_from();
  CHECK((from == "affinity" || from == "environment"));
  ad::backend::set_threads(3);
  const ad::blas::Info info = ad::blas::info();
  CHECK(info.num_threads == 3);
  CHECK(info.num_threads_from == "code");
  CHECK(fmt::format("{}", info).find("threads=3 threads_from=code") != std::string::npos);
  if (ad::backend::onednn::available()) {
    ad::blas::set_backend(ad::blas::Backend::onednn);
    CHECK(ad::blas::info().backend == "onednn");
    CHECK(!ad::blas::info().isa.empty());
    CHECK(!ad::blas::info().onednn_version.empty());
  } else {
    CHECK_THROWS_AS(ad::blas::set_backend(ad::blas::Backend::onednn), ad::LibraryError);
    CHECK(ad::blas::info().onednn_version.empty());
  }
  ad::blas::set_backend(ad::blas::Backend::openblas);
  CHECK(ad::blas::info().backend == "openblas");
}

TEST_CASE("backend: the pool backs off for a competing process, not for single stalls or hiccups") {
  using Policy = ad::backend::detail::BackoffPolicy;
  using us = std::chrono::microseconds;
  using ms = std::chrono::milliseconds;
  const Policy::Duration none = Policy::Duration::zero();
  SUBCASE("hiccups: a 150 µs wait every 20 jobs of 700 µs, for ten seconds") {
    Policy p;
    for (int job = 0; job < 14000; ++job) {
      const bool late = job % 20 == 19;
      REQUIRE(!p.add(late ? us(850) : us(700), late ? us(150) : none));
    }
  }
  SUBCASE("a single stall of one time slice (4 ms), once a second, never") {
    Policy p;
    for (int job = 0; job < 14000; ++job) {
      const bool late = job % 1400 == 700;
      REQUIRE(!p.add(late ? ms(5) : us(700), late ? ms(4) : none));
    }
  }
  SUBCASE("two stalls of 3 ms within one window do") {
    Policy p;
    CHECK(!p.add(ms(4), ms(3)));
    for (int job = 0; job < 5; ++job) CHECK(!p.add(us(700), none));
    const auto pause = p.add(ms(4), ms(3));  // 6 ms lost in 11.5 ms of jobs: 30% of the 20 ms window
    REQUIRE(pause);
    CHECK(*pause == Policy::backoff_min);
  }
  SUBCASE("a competing process: a 4 ms wait every five jobs backs off, doubling up to 1 s, and calm resets it") {
    Policy p;
    auto run_until_backoff = [&] {
      for (int job = 0; job < 1000; ++job) {
        const bool late = job % 5 == 4;
        if (const auto pause = p.add(late ? ms(5) : ms(1), late ? ms(4) : none)) return *pause;
      }
      return Policy::Duration::zero();
    };
    std::vector<Policy::Duration> pauses;
    for (int i = 0; i < 8; ++i) pauses.push_back(run_until_backoff());
    CHECK(pauses[0] == ms(20));
    CHECK(pauses[1] == ms(40));
    CHECK(pauses[2] == ms(80));
    CHECK(pauses[5] == ms(640));
    CHECK(pauses[6] == ms(1000));
    CHECK(pauses[7] == ms(1000));
    // Five calm windows (100 ms of jobs without waiting) later, the next back-off is short again.
    for (int job = 0; job < 100; ++job) CHECK(!p.add(ms(1), none));
    CHECK(run_until_backoff() == ms(20));
  }
}

TEST_CASE("backend: README snippet sets threads and backend and runs a loop over ranges") {
  Restore restore;
  const std::int64_t n = 100000;
  const float lr = 0.5f;
  std::vector<float> w(static_cast<std::size_t>(n), 1.0f), g(static_cast<std::size_t>(n), 2.0f);
  // The README's snippet, verbatim:
  ad::backend::set_threads(1);                         // 0: back to the default
  ad::blas::set_backend(ad::blas::Backend::openblas);  // float32 on OpenBLAS too
fmt::print("{}\n", ad::blas::info());  // backend=openblas isa=SkylakeX loops_isa=avx2 threads=1 ...
  ad::backend::parallel_for(n, 32768, [&](std::int64_t begin, std::int64_t end) {  // your own loop
    for (std::int64_t i = begin; i < end; ++i) w[i] -= lr * g[i];                   // ranges >= 32768
  });
  CHECK(std::all_of(w.begin(), w.end(), [](float v) { return v == 0.0f; }));
  CHECK(ad::blas::info().backend == "openblas");
  CHECK(ad::blas::info().num_threads == 1);
}

// Not bit for bit: oneDNN chooses how to block the inner dimension from the block's shape, so a
// split product may sum its terms in another order than the whole one (float rounding apart).
TEST_CASE("backend: the MLP's products on one thread and on two agree to float rounding") {
  Restore restore;
  std::mt19937 rng(5);
  struct P {
    bool ta, tb;
    std::int64_t m, n, k;
  };
  // Forward, dW and dX of the 784-256-128-10 layers at batches 16, 128 and 1024.
  std::vector<P> products;
  for (std::int64_t B : {16, 128, 1024})
    for (auto [in, out] : {std::pair<std::int64_t, std::int64_t>{784, 256}, {256, 128}, {128, 10}}) {
      products.push_back({false, true, B, out, in});
      products.push_back({true, false, out, in, B});
      products.push_back({false, false, B, in, out});
    }
  for (const P& p : products) {
    const std::int64_t lda = p.ta ? p.m : p.k, ldb = p.tb ? p.k : p.n;
    const auto a = random_floats(static_cast<std::size_t>(p.m * p.k), rng);
    const auto b = random_floats(static_cast<std::size_t>(p.k * p.n), rng);
    std::vector<float> one(static_cast<std::size_t>(p.m * p.n)), two(one.size());
    ad::backend::set_threads(1);
    ad::blas::gemm<float>(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, one.data(), p.n);
    ad::backend::set_threads(2);
    ad::blas::gemm<float>(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, two.data(), p.n);
    INFO("ta=", p.ta, " tb=", p.tb, " m=", p.m, " n=", p.n, " k=", p.k, " backend=", ad::blas::info().backend);
    double worst = 0;
    for (std::size_t i = 0; i < one.size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(one[i] - two[i])));
    // k terms of size <= 1: the two summation orders differ by a few float ulps of the partial sums.
    CHECK(worst <= 1e-6 * static_cast<double>(p.k));
  }
}
