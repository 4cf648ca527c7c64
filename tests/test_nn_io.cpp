// nn/io: .npy and .npz round trips, files written by another zip implementation, and refusals that
// leave the model unchanged.
#include <doctest/doctest.h>

#include <cstring>

#include "nn/io.hpp"
#include "nn_temp.hpp"

using nn_test::TempDir;

namespace {

/// A module with a float64 weight matrix and a float32 bias, for saving and loading.
class TwoParams : public nn::Module {
 public:
  TwoParams(std::int64_t rows, std::int64_t cols, double start)
      : w_(std::make_shared<nn::Parameter>("layer1.W", ad::Array<double>(ad::Shape{rows, cols}), true)),
        b_(std::make_shared<nn::Parameter>("layer1.b", ad::Array<float>(ad::Shape{rows}), false)) {
    auto& w = w_->array<double>();
    for (std::int64_t i = 0; i < w.size(); ++i) w[i] = start + 0.25 * static_cast<double>(i);
    auto& b = b_->array<float>();
    for (std::int64_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(start) - static_cast<float>(i);
  }
  ad::Tensor forward(const ad::Tensor& x) override { return x; }
  nn::ParameterList parameters() const override { return {w_, b_}; }
  std::string describe() const override { return "TwoParams"; }
  std::shared_ptr<nn::Parameter> w_, b_;
};

std::vector<double> values(const nn::Module& m) {
  std::vector<double> v;
  for (const auto& p : m.parameters())
    for (std::int64_t i = 0; i < p->size(); ++i) v.push_back(p->view().flat(i));
  return v;
}

template <class F>
std::string weights_error(F&& f) {
  try {
    f();
  } catch (const nn::WeightsError& e) {
    return e.what();
  }
  FAIL("no nn::WeightsError thrown");
  return {};
}

std::vector<unsigned char> from_hex(const std::string& hex) {
  std::vector<unsigned char> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<unsigned char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace

TEST_CASE("nn: .npy round trip for float32 and float64 of rank 0 to 4, data aligned to 64 bytes") {
  TempDir dir;
  ad::Array<float> a(ad::Shape{2, 3, 1, 2});
  for (std::int64_t i = 0; i < a.size(); ++i) a[i] = 0.1f * static_cast<float>(i) - 0.7f;
  nn::save_npy(dir / "a.npy", a.view());
  const auto bytes = nn_test::read_bytes(dir / "a.npy");
  // The header dict is 66 characters: preamble (10) + dict + newline pads to 128 bytes, as NumPy's.
  REQUIRE(bytes.size() == 128 + 4 * 12);
  const std::string header(bytes.begin() + 10, bytes.begin() + 128);
  CHECK(header.find("'descr': '<f4'") != std::string::npos);
  CHECK(header.find("'shape': (2, 3, 1, 2)") != std::string::npos);
  CHECK(header.back() == '\n');
  ad::Array<float> back = nn::load_npy_as<float>(dir / "a.npy");
  CHECK(back.shape() == a.shape());
  CHECK(std::memcmp(back.data(), a.data(), 4 * 12) == 0);

  ad::Array<double> s = ad::Array<double>::scalar(-3.5);
  nn::save_npy(dir / "s.npy", s.view());
  CHECK(nn_test::read_bytes(dir / "s.npy").size() == 128 + 8);
  nn::NpyArray r = nn::load_npy(dir / "s.npy");
  CHECK(r.dtype == ad::DType::f64);
  CHECK(r.shape.empty());
  CHECK(r.view().flat(0) == -3.5);
  ad::Array<double> v(ad::Shape{5});
  nn::save_npy(dir / "v.npy", v.view());
  const auto vb = nn_test::read_bytes(dir / "v.npy");
  CHECK(std::string(vb.begin() + 10, vb.begin() + 128).find("'shape': (5,)") != std::string::npos);
  CHECK_THROWS_AS(nn::load_npy_as<float>(dir / "s.npy"), nn::WeightsError);
}

TEST_CASE("nn: .npy refusals: truncated, bad magic, unsupported dtype or order") {
  TempDir dir;
  ad::Array<double> a(ad::Shape{3, 2});
  nn::save_npy(dir / "a.npy", a.view());
  auto bytes = nn_test::read_bytes(dir / "a.npy");
  auto cut = bytes;
  cut.resize(cut.size() - 5);
  nn_test::write_bytes(dir / "cut.npy", cut);
  std::string m = weights_error([&] { nn::load_npy(dir / "cut.npy"); });
  CHECK(m.find("cut.npy") != std::string::npos);
  CHECK(m.find("truncated") != std::string::npos);
  CHECK(m.find("byte offset 171") != std::string::npos);  // 128 + 48 - 5: where the file ends

  auto big_endian = bytes;
  const std::string h(big_endian.begin(), big_endian.begin() + 128);
  big_endian[h.find("<f8") + 0] = '>';
  nn_test::write_bytes(dir / "be.npy", big_endian);
  m = weights_error([&] { nn::load_npy(dir / "be.npy"); });
  CHECK(m.find("'>f8'") != std::string::npos);

  auto fortran = bytes;
  const auto pos = h.find("False");
  const std::string t = "True, ";
  std::copy(t.begin(), t.end(), fortran.begin() + static_cast<std::ptrdiff_t>(pos));
  nn_test::write_bytes(dir / "f.npy", fortran);
  CHECK(weights_error([&] { nn::load_npy(dir / "f.npy"); }).find("Fortran") != std::string::npos);

  auto magic = bytes;
  magic[1] = 'X';
  nn_test::write_bytes(dir / "m.npy", magic);
  CHECK(weights_error([&] { nn::load_npy(dir / "m.npy"); }).find("byte offset 0") != std::string::npos);
  CHECK_THROWS_AS(nn::load_npy(dir / "none.npy"), nn::WeightsError);
}

TEST_CASE("nn: a model saved as .npz loads back into another of the same shape") {
  TempDir dir;
  TwoParams a(3, 4, 1.0), b(3, 4, -9.0);
  nn::save(a, dir / "m.npz");
  CHECK(values(a) != values(b));
  nn::load(b, dir / "m.npz");
  CHECK(values(a) == values(b));
  auto entries = nn::load_npz(dir / "m.npz");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].first == "layer1.W");
  CHECK(entries[0].second.shape == ad::Shape{3, 4});
  CHECK(entries[1].first == "layer1.b");
  CHECK(entries[1].second.dtype == ad::DType::f32);
}

TEST_CASE("nn: .npz written by Python's zipfile (deflated, zip64 local headers, as numpy.savez_compressed)") {
  // Made with Python's zipfile (ZIP_DEFLATED, force_zip64=True, the way NumPy writes): w is float64
  // (2,3) holding 0.5 i - 1, b is float32 (3,) holding 1.5, -2.25, 4.
  const std::string hex =
#include "nn_npz_fixture.inc"
      ;
  TempDir dir;
  nn_test::write_bytes(dir / "py.npz", from_hex(hex));
  auto e = nn::load_npz(dir / "py.npz");
  REQUIRE(e.size() == 2);
  CHECK(e[0].first == "w");
  CHECK(e[0].second.dtype == ad::DType::f64);
  CHECK(e[0].second.shape == ad::Shape{2, 3});
  for (int i = 0; i < 6; ++i) CHECK(e[0].second.view().flat(i) == 0.5 * i - 1);
  CHECK(e[1].first == "b");
  CHECK(e[1].second.shape == ad::Shape{3});
  CHECK(e[1].second.view().flat(1) == -2.25);
}

TEST_CASE("nn: loading refuses mismatched or damaged files and leaves the model unchanged") {
  TempDir dir;
  TwoParams good(3, 4, 1.0), other_shape(4, 3, 1.0), target(3, 4, 5.0);
  nn::save(good, dir / "good.npz");
  nn::save(other_shape, dir / "shape.npz");
  const auto before = values(target);

  std::string m = weights_error([&] { nn::load(target, dir / "shape.npz"); });
  CHECK(m.find("layer1.W") != std::string::npos);
  CHECK(m.find("f64[4,3]") != std::string::npos);
  CHECK(m.find("f64[3,4]") != std::string::npos);
  CHECK(values(target) == before);

  // dtype mismatch: W saved as float32.
  ad::Array<float> w32(ad::Shape{3, 4});
  ad::Array<float> b32(ad::Shape{3});
  nn::save_npz(dir / "dtype.npz", {{"layer1.W", w32.view()}, {"layer1.b", b32.view()}});
  m = weights_error([&] { nn::load(target, dir / "dtype.npz"); });
  CHECK(m.find("f32[3,4]") != std::string::npos);
  CHECK(values(target) == before);

  // A missing name, and an extra one.
  nn::save_npz(dir / "missing.npz", {{"layer1.b", b32.view()}});
  CHECK(weights_error([&] { nn::load(target, dir / "missing.npz"); }).find("no tensor \"layer1.W\"") != std::string::npos);
  nn::save_npz(dir / "extra.npz", {{"layer1.W", good.w_->view()}, {"layer1.b", good.b_->view()}, {"layer2.W", b32.view()}});
  CHECK(weights_error([&] { nn::load(target, dir / "extra.npz"); }).find("layer2.W") != std::string::npos);
  CHECK(values(target) == before);

  // Truncated anywhere: the end record or the data is missing.
  const auto bytes = nn_test::read_bytes(dir / "good.npz");
  for (std::size_t keep : {bytes.size() - 1, bytes.size() - 30, bytes.size() / 2, std::size_t{10}}) {
    auto cut = bytes;
    cut.resize(keep);
    nn_test::write_bytes(dir / "cut.npz", cut);
    CHECK_THROWS_AS(nn::load(target, dir / "cut.npz"), nn::WeightsError);
    CHECK(values(target) == before);
  }
  // One flipped bit in the data of the second tensor: the CRC catches it after the first tensor
  // has been read, and still nothing is written into the model.
  auto flipped = bytes;
  flipped[bytes.size() / 2 + 40] ^= 0x10;
  nn_test::write_bytes(dir / "flip.npz", flipped);
  CHECK(weights_error([&] { nn::load(target, dir / "flip.npz"); }).find("CRC") != std::string::npos);
  CHECK(values(target) == before);

  CHECK_THROWS_AS(nn::save_npz(dir / "dup.npz", {{"a", b32.view()}, {"a", b32.view()}}), nn::WeightsError);
  nn::load(target, dir / "good.npz");
  CHECK(values(target) == values(good));
}
