// Writes the fuzz targets' seed corpora with the library's own writers (save_npy, save_npz,
// nn::save) and small hand-made IDX and CSV files: deltagrad_fuzz_seeds <dir> fills <dir>/npy,
// <dir>/npz, <dir>/idx and <dir>/csv.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <zlib.h>

#include "nn/io.hpp"

namespace {

namespace fs = std::filesystem;

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

void write_gz(const fs::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  if (!f || gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) != static_cast<int>(bytes.size()) ||
      gzclose(f) != Z_OK)
    throw std::runtime_error("cannot write " + p.string());
}

std::string idx(const std::vector<std::uint32_t>& dims, std::size_t count) {
  std::string b{0, 0, 0x08, static_cast<char>(dims.size())};
  for (auto d : dims)
    for (int s = 24; s >= 0; s -= 8) b += static_cast<char>(d >> s);
  for (std::size_t i = 0; i < count; ++i) b += static_cast<char>(i * 37);
  return b;
}

class Model : public nn::Module {
 public:
  Model()
      : w_(std::make_shared<nn::Parameter>("layer1.W", ad::Array<double>(ad::Shape{3, 2}), true)),
        b_(std::make_shared<nn::Parameter>("layer1.b", ad::Array<float>(ad::Shape{3}), false)) {
    for (std::int64_t i = 0; i < 6; ++i) w_->array<double>()[i] = 1.25 * static_cast<double>(i);
    for (std::int64_t i = 0; i < 3; ++i) b_->array<float>()[i] = 2.0f - static_cast<float>(i);
  }
  ad::Tensor forward(const ad::Tensor& x) override { return x; }
  nn::ParameterList parameters() const override { return {w_, b_}; }
  std::string describe() const override { return "seed model"; }
  std::shared_ptr<nn::Parameter> w_, b_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];
  for (const char* d : {"npy", "npz", "idx", "csv"}) fs::create_directories(root / d);

  Model m;
  nn::save_npy(root / "npy" / "f64_3x2.npy", m.w_->view());
  nn::save_npy(root / "npy" / "f32_3.npy", m.b_->view());
  nn::save_npy(root / "npy" / "scalar.npy", ad::Array<double>::scalar(-0.5).view());
  nn::save_npy(root / "npy" / "rank4.npy", ad::Array<float>(ad::Shape{1, 2, 1, 2}).view());
  nn::save_npy(root / "npy" / "empty.npy", ad::Array<float>(ad::Shape{0, 3}).view());

  nn::save(m, root / "npz" / "model.npz");
  nn::save_npz(root / "npz" / "one.npz", {{"layer1.W", m.w_->view()}});
  // An archive as numpy.savez_compressed writes it: deflated entries, zip64 extra fields.
  const std::string hex =
#include "../nn_npz_fixture.inc"
      ;
  std::string py;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) py += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  write(root / "npz" / "deflated_zip64.npz", py);

  write(root / "idx" / "images", idx({3, 2, 2}, 12));
  write(root / "idx" / "labels", idx({3}, 3));
  write_gz(root / "idx" / "images.gz", idx({2, 4}, 8));

  // The first byte of a CSV input selects the options (see fuzz_csv.cpp).
  write(root / "csv" / "plain", std::string(1, '\0') + "1,0.5,2\n0,-0.1,3e-2\n");
  write(root / "csv" / "header_last", std::string(1, '\3') + "x1,x2,label\n0.5,1e-50,2\n7,1e3,4\r\n\n");
  write(root / "csv" / "semicolon_nan", std::string(1, '\x14') + "3;nan;inf\n1;-inf;0.25\n");
  return 0;
}
