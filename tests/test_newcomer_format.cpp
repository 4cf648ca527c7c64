// autodiff/format.hpp: Array, View and Tensor printed with fmt, NumPy-like.
#include <doctest/doctest.h>

#include <string>

#include <fmt/format.h>

#include "autodiff/autodiff.hpp"

TEST_CASE("newcomer: formatter prints dtype, shape and values of Array, View and Tensor") {
  const ad::Array<double> a(ad::make_shape({2, 3}), {0.5, -1.0, 2.0, 3.0, 0.25, -4.0});
  const std::string want = "f64[2,3]\n"
                           "[[ 0.5,   -1,    2],\n"
                           " [   3, 0.25,   -4]]";
  CHECK(fmt::format("{}", a) == want);
  CHECK(fmt::format("{}", a.view()) == want);

  ad::Tape tape;
  const ad::Tensor t = tape.leaf(a);
  CHECK(fmt::format("{}", t) == want);
  const ad::Tensor s = sum(t);
  CHECK(fmt::format("{}", s) == "f64[] 0.75");
  CHECK(fmt::format("{}", s.value()) == "f64[] 0.75");

  const ad::Array<float> f(ad::make_shape({3}), {1.0f, 2.5f, -0.125f});
  CHECK(fmt::format("{}", f) == "f32[3] [     1,    2.5, -0.125]");
  CHECK(fmt::format("{}", ad::Array<float>::scalar(7.0f)) == "f32[] 7");
}

TEST_CASE("newcomer: formatter applies the spec to every element") {
  const ad::Array<double> a(ad::make_shape({2, 2}), {1.0, 2.0, 3.0, 4.0});
  CHECK(fmt::format("{:.2f}", a) == "f64[2,2]\n[[1.00, 2.00],\n [3.00, 4.00]]");
  CHECK(fmt::format("{:+.1e}", ad::Array<double>::scalar(-0.0015)) == "f64[] -1.5e-03");
  CHECK_THROWS_AS((void)ad::format_value(a.view(), {.element = "d"}), ad::InvalidArgument);
}

TEST_CASE("newcomer: formatter prints rank 3 blocks separated by a blank line, and empty values") {
  ad::Array<double> a(ad::make_shape({2, 1, 2}));
  for (std::int64_t i = 0; i < a.size(); ++i) a[i] = static_cast<double>(i);
  CHECK(fmt::format("{}", a) == "f64[2,1,2]\n[[[0, 1]],\n\n [[2, 3]]]");
  CHECK(fmt::format("{}", ad::Array<double>(ad::make_shape({0, 3}))) == "f64[0,3] []");
  CHECK(fmt::format("{}", ad::View()) == "<empty>");
}

TEST_CASE("newcomer: formatter elides the middle of large values") {
  ad::Array<float> big(ad::make_shape({100, 50}));
  for (std::int64_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i);
  const std::string s = fmt::format("{}", big);
  // 5000 elements > 1000: three rows and three columns from each end.
  const std::string want = "f32[100,50]\n"
                           "[[   0,    1,    2,  ...,   47,   48,   49],\n"
                           " [  50,   51,   52,  ...,   97,   98,   99],\n"
                           " [ 100,  101,  102,  ...,  147,  148,  149],\n"
                           " ...,\n"
                           " [4850, 4851, 4852,  ..., 4897, 4898, 4899],\n"
                           " [4900, 4901, 4902,  ..., 4947, 4948, 4949],\n"
                           " [4950, 4951, 4952,  ..., 4997, 4998, 4999]]";
  CHECK(s == want);

  // At the threshold nothing is elided; a long row wraps at the line width, aligned under its bracket.
  ad::Array<double> row(ad::make_shape({40}));
  for (std::int64_t i = 0; i < row.size(); ++i) row[i] = static_cast<double>(i);
  const std::string r = ad::format_value(row.view(), {.line_width = 40});
  CHECK(r.find("...") == std::string::npos);
  CHECK(r.substr(0, 40) == "f64[40] [ 0,  1,  2,  3,  4,  5,  6,  7,");
  // the second line: 9 spaces up to the bracket's column, then " 8" padded to the width of "39"
  CHECK(r.find("\n          8,  9,") != std::string::npos);
  for (std::size_t start = 0, end; start < r.size(); start = end + 1) {
    end = r.find('\n', start);
    if (end == std::string::npos) end = r.size();
    CHECK(end - start <= 40);
  }
}
