// How data-parallel training splits the data (no MPI needed): shard_range and Batches with a
// Shard.  The runs on several processes are in tests/distributed/.
#include <doctest/doctest.h>

#include <vector>

#include "nn/nn.hpp"

TEST_CASE("distributed: shard_range splits n rows into parts that differ by at most one and cover them once") {
  for (std::int64_t n : {0, 1, 2, 3, 7, 96, 255, 256}) {
    for (int ranks : {1, 2, 3, 5}) {
      std::int64_t next = 0;
      for (int r = 0; r < ranks; ++r) {
        const auto [lo, hi] = nn::shard_range(n, {r, ranks});
        CHECK(lo == next);
        CHECK(hi - lo >= n / ranks);
        CHECK(hi - lo <= n / ranks + 1);
        next = hi;
      }
      CHECK(next == n);
    }
  }
  CHECK(nn::shard_range(1, {0, 2}) == std::pair<std::int64_t, std::int64_t>{0, 0});  // a rank may get nothing
  CHECK_THROWS_AS(nn::shard_range(10, {2, 2}), ad::InvalidArgument);
  CHECK_THROWS_AS(nn::shard_range(10, {-1, 2}), ad::InvalidArgument);
  CHECK_THROWS_AS(nn::shard_range(10, {0, 0}), ad::InvalidArgument);
}

TEST_CASE("distributed: the ranks' shards of each batch, in rank order, are the one-process batch") {
  // 23 rows in batches of 5 (the last has 3) over 3 ranks, from engines in the same state.
  nn::Dataset d;
  d.classes = 23;
  d.x = ad::Array<float>(ad::Shape{23, 2});
  for (std::int32_t i = 0; i < 23; ++i) {
    d.x(i, 0) = static_cast<float>(i);
    d.x(i, 1) = static_cast<float>(-i);
    d.labels.push_back(i);
  }
  auto pass = [&](nn::Shard shard) {
    nn::Rng rng(42);
    std::vector<std::vector<std::int32_t>> labels;
    for (auto [x, y] : nn::batches(d, 5, rng, shard)) {
      REQUIRE(x.dim(0) == static_cast<std::int64_t>(y.size()));
      for (std::size_t i = 0; i < y.size(); ++i) CHECK(x(static_cast<std::int64_t>(i), 0) == static_cast<float>(y[i]));
      labels.emplace_back(y.begin(), y.end());
    }
    return labels;
  };
  const auto whole = pass({});
  const auto r0 = pass({0, 3}), r1 = pass({1, 3}), r2 = pass({2, 3});
  REQUIRE(whole.size() == 5);
  REQUIRE(r0.size() == 5);  // every rank takes the same number of steps, even with nothing to do
  REQUIRE(r1.size() == 5);
  REQUIRE(r2.size() == 5);
  for (std::size_t s = 0; s < whole.size(); ++s) {
    std::vector<std::int32_t> joined = r0[s];
    joined.insert(joined.end(), r1[s].begin(), r1[s].end());
    joined.insert(joined.end(), r2[s].begin(), r2[s].end());
    CHECK(joined == whole[s]);
  }
  CHECK(r0.back().size() == 1);  // the last batch of 3: one row each
  CHECK(r2.back().size() == 1);
  // Four ranks on a last batch of 3 rows: rank 0 gets an empty batch of the right width.
  nn::Rng rng(42);
  std::int64_t steps = 0, last_rows = -1, width = -1;
  for (auto [x, y] : nn::batches(d, 5, rng, {0, 4})) {
    ++steps;
    last_rows = static_cast<std::int64_t>(y.size());
    width = x.dim(1);
  }
  CHECK(steps == 5);
  CHECK(last_rows == 0);
  CHECK(width == 2);
}
