// nn/data: IDX files (raw and gzip), their validation, CSV files, mini-batches.  All files are
// small ones written here; the real data set is never read by the tests.
#include <doctest/doctest.h>

#include <set>

#include <zlib.h>

#include "nn/data.hpp"
#include "nn_temp.hpp"

using nn_test::TempDir;
using nn_test::write_bytes;

namespace {

void put_be32(std::vector<unsigned char>& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<unsigned char>(v >> s));
}

/// An IDX file of unsigned bytes with the given dimensions and elements.
std::vector<unsigned char> idx(std::vector<std::uint32_t> dims, std::vector<unsigned char> data) {
  std::vector<unsigned char> b{0, 0, 0x08, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) put_be32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_gz(const std::filesystem::path& p, const std::vector<unsigned char>& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

/// The message of the DataError that f throws (fails the test if it throws nothing or another type).
template <class F>
std::string data_error(F&& f) {
  try {
    f();
  } catch (const nn::DataError& e) {
    return e.what();
  }
  FAIL("no nn::DataError thrown");
  return {};
}

// Three 2x2 images with pixel values 0..11, labels 2, 0, 1.
const std::vector<unsigned char> pixels{0, 51, 102, 255, 4, 5, 6, 7, 8, 9, 10, 11};
const std::vector<unsigned char> labels{2, 0, 1};

}  // namespace

TEST_CASE("nn: IDX images and labels, raw and gzip-compressed, read the same") {
  TempDir dir;
  write_bytes(dir / "im", idx({3, 2, 2}, pixels));
  write_bytes(dir / "lb", idx({3}, labels));
  write_gz(dir / "im.gz", idx({3, 2, 2}, pixels));
  write_gz(dir / "lb.gz", idx({3}, labels));
  for (auto [im, lb] : {std::pair{"im", "lb"}, std::pair{"im.gz", "lb.gz"}}) {
    nn::Dataset d = nn::load_idx(dir / im, dir / lb, 3);
    REQUIRE(d.size() == 3);
    CHECK(d.features() == 4);
    CHECK(d.classes == 3);
    CHECK(d.labels == std::vector<std::int32_t>{2, 0, 1});
    for (std::size_t i = 0; i < pixels.size(); ++i) CHECK(d.x[static_cast<std::int64_t>(i)] == pixels[i] / 255.0f);
  }
  nn::IdxData raw = nn::read_idx(dir / "im.gz");
  CHECK(raw.dims == std::vector<std::int64_t>{3, 2, 2});
  CHECK(raw.bytes == pixels);
}

TEST_CASE("nn: IDX errors name the file, the byte offset and the problem") {
  TempDir dir;
  write_bytes(dir / "lb", idx({3}, labels));

  auto bad = idx({3, 2, 2}, pixels);
  bad[2] = 0x0D;  // float type code
  write_bytes(dir / "type", bad);
  std::string m = data_error([&] { nn::read_idx(dir / "type"); });
  CHECK(m.find((dir / "type").string()) != std::string::npos);
  CHECK(m.find("byte offset 2") != std::string::npos);

  bad = idx({3, 2, 2}, pixels);
  bad[0] = 0x50;  // not an IDX file at all
  write_bytes(dir / "magic", bad);
  m = data_error([&] { nn::read_idx(dir / "magic"); });
  CHECK(m.find("byte offset 0") != std::string::npos);
  CHECK(m.find("magic") != std::string::npos);

  // Truncated: the header announces 12 pixels, 9 follow.  The file ends at offset 16 + 9 = 25.
  bad = idx({3, 2, 2}, pixels);
  bad.resize(bad.size() - 3);
  write_bytes(dir / "short", bad);
  m = data_error([&] { nn::read_idx(dir / "short"); });
  CHECK(m.find("truncated") != std::string::npos);
  CHECK(m.find("byte offset 25") != std::string::npos);

  // The same truncation inside a gzip file: offsets count uncompressed bytes.
  write_gz(dir / "short.gz", bad);
  m = data_error([&] { nn::read_idx(dir / "short.gz"); });
  CHECK(m.find("byte offset 25") != std::string::npos);

  // A gzip stream that is itself cut short.
  std::vector<unsigned char> big(4000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<unsigned char>((i * 7919) % 251);
  write_gz(dir / "cut.gz", idx({4000}, big));
  auto gz = nn_test::read_bytes(dir / "cut.gz");
  gz.resize(gz.size() / 2);
  write_bytes(dir / "cut.gz", gz);
  m = data_error([&] { nn::read_idx(dir / "cut.gz"); });
  CHECK(m.find("cut.gz") != std::string::npos);
  CHECK(m.find("truncated") != std::string::npos);

  // Label out of range: item 1 has label 7 with 3 classes, at byte offset 8 + 1.
  write_bytes(dir / "im", idx({3, 2, 2}, pixels));
  write_bytes(dir / "lb7", idx({3}, {2, 7, 1}));
  m = data_error([&] { nn::load_idx(dir / "im", dir / "lb7", 3); });
  CHECK(m.find((dir / "lb7").string()) != std::string::npos);
  CHECK(m.find("byte offset 9") != std::string::npos);
  CHECK(m.find("label 7") != std::string::npos);

  // Counts that disagree.
  write_bytes(dir / "lb2", idx({2}, {0, 1}));
  m = data_error([&] { nn::load_idx(dir / "im", dir / "lb2", 3); });
  CHECK(m.find("3 images") != std::string::npos);
  CHECK(m.find("2 labels") != std::string::npos);

  // Missing file.
  m = data_error([&] { nn::read_idx(dir / "nothing.gz"); });
  CHECK(m.find("no such file") != std::string::npos);
}

TEST_CASE("nn: a missing Fashion-MNIST directory says which package to install") {
  TempDir dir;
  const std::string m = data_error([&] { nn::load_fashion_mnist("train", dir.path()); });
  CHECK(m.find("train-images-idx3-ubyte.gz") != std::string::npos);
  CHECK(m.find("apt-get install dataset-fashion-mnist") != std::string::npos);
  CHECK_THROWS_AS(nn::load_fashion_mnist("validation", dir.path()), ad::InvalidArgument);
}

TEST_CASE("nn: CSV with a header, label column first or last, and its errors") {
  TempDir dir;
  auto write = [&](const std::string& name, const std::string& text) {
    write_bytes(dir / name, std::vector<unsigned char>(text.begin(), text.end()));
  };
  write("a.csv", "label,p0,p1\n1, 0.5 ,2\r\n\n0,-1e-1,3\n");
  nn::Dataset d = nn::read_csv(dir / "a.csv", {.header = true});
  REQUIRE(d.size() == 2);
  CHECK(d.features() == 2);
  CHECK(d.classes == 2);
  CHECK(d.labels == std::vector<std::int32_t>{1, 0});
  CHECK(d.x(0, 0) == 0.5f);
  CHECK(d.x(0, 1) == 2.0f);
  CHECK(d.x(1, 0) == -0.1f);
  CHECK(d.x(1, 1) == 3.0f);

  write("b.csv", "10;20;3\n30;40;4\n");
  d = nn::read_csv(dir / "b.csv", {.label_column = -1, .delimiter = ';', .classes = 5, .scale = 0.5f});
  CHECK(d.labels == std::vector<std::int32_t>{3, 4});
  CHECK(d.x(1, 0) == 15.0f);
  CHECK(d.classes == 5);

  write("ragged.csv", "1,2,3\n0,1\n");
  std::string m = data_error([&] { nn::read_csv(dir / "ragged.csv"); });
  CHECK(m.find("line 2") != std::string::npos);
  CHECK(m.find("byte offset 6") != std::string::npos);

  write("word.csv", "1,2,3\n0,x1,4\n");
  m = data_error([&] { nn::read_csv(dir / "word.csv"); });
  CHECK(m.find("line 2, column 2") != std::string::npos);
  CHECK(m.find("\"x1\"") != std::string::npos);

  write("range.csv", "1,2\n3,4\n");
  m = data_error([&] { nn::read_csv(dir / "range.csv", {.classes = 3}); });
  CHECK(m.find("label 3") != std::string::npos);

  write("neg.csv", "-1,2\n");
  CHECK_THROWS_AS(nn::read_csv(dir / "neg.csv"), nn::DataError);
  write("empty.csv", "p0,p1\n");
  CHECK_THROWS_AS(nn::read_csv(dir / "empty.csv", {.header = true}), nn::DataError);
  CHECK_THROWS_AS(nn::read_csv(dir / "missing.csv"), nn::DataError);
}

TEST_CASE("nn: batches cover every sample once, shuffled reproducibly, last batch smaller") {
  nn::Dataset d;
  const std::int64_t n = 10;
  d.x = ad::Array<float>(ad::Shape{n, 2});
  for (std::int64_t i = 0; i < n; ++i) {
    d.x(i, 0) = static_cast<float>(i);
    d.x(i, 1) = static_cast<float>(10 * i);
    d.labels.push_back(static_cast<std::int32_t>(i % 3));
  }
  d.classes = 3;
  auto pass = [&](std::uint64_t seed) {
    nn::Rng rng(seed);
    std::vector<std::int64_t> order, sizes;
    for (auto [x, y] : nn::batches(d, 4, rng)) {
      sizes.push_back(x.dim(0));
      REQUIRE(static_cast<std::int64_t>(y.size()) == x.dim(0));
      for (std::int64_t i = 0; i < x.dim(0); ++i) {
        const auto row = static_cast<std::int64_t>(x(i, 0));
        CHECK(x(i, 1) == 10.0f * static_cast<float>(row));         // rows stay whole
        CHECK(y[static_cast<std::size_t>(i)] == row % 3);          // labels follow their rows
        order.push_back(row);
      }
    }
    CHECK(sizes == std::vector<std::int64_t>{4, 4, 2});
    return order;
  };
  const auto a = pass(7), b = pass(7), c = pass(8);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(std::set<std::int64_t>(a.begin(), a.end()).size() == static_cast<std::size_t>(n));
  std::vector<std::int64_t> in_order;
  for (auto [x, y] : nn::batches(d, 3))
    for (std::int64_t i = 0; i < x.dim(0); ++i) in_order.push_back(static_cast<std::int64_t>(x(i, 0)));
  CHECK(in_order == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  nn::Rng rng(1);
  CHECK_THROWS_AS(nn::batches(d, 0, rng), ad::InvalidArgument);
  nn::Dataset s = nn::slice(d, 2, 5);
  CHECK(s.size() == 3);
  CHECK(s.x(0, 0) == 2.0f);
  CHECK(s.labels == std::vector<std::int32_t>{2, 0, 1});
  CHECK_THROWS_AS(nn::slice(d, 5, 11), ad::IndexError);
}
