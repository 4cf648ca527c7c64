// Hostile and unlucky inputs: damaged archives, odd files, numbers that overflow, saves that fail
// half-way, training that diverges.  Each case checks the typed error and its message, and that
// nothing was changed or lost (the model in memory, the old file on disk).
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>

#include <sys/resource.h>
#include <sys/stat.h>
#include <csignal>
#include <unistd.h>
#include <zlib.h>

#include "nn/file.hpp"
#include "nn/nn.hpp"
#include "nn_temp.hpp"
#include "test_util.hpp"

using nn_test::read_bytes;
using nn_test::TempDir;
using nn_test::write_bytes;
using Bytes = std::vector<unsigned char>;

namespace {

using test_util::contains;
using test_util::error_of;

/// One float64 parameter "w" [2, 3] holding start + i.
class OneParam : public nn::Module {
 public:
  explicit OneParam(double start)
      : w_(std::make_shared<nn::Parameter>("w", ad::Array<double>(ad::Shape{2, 3}), true)) {
    for (std::int64_t i = 0; i < 6; ++i) w_->array<double>()[i] = start + static_cast<double>(i);
  }
  ad::Tensor forward(const ad::Tensor& x) override { return x; }
  nn::ParameterList parameters() const override { return {w_}; }
  std::string describe() const override { return "OneParam"; }
  std::vector<double> values() const {
    const auto& a = w_->array<double>();
    return {a.data(), a.data() + a.size()};
  }
  std::shared_ptr<nn::Parameter> w_;
};

void put16(Bytes& b, std::uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void put64(Bytes& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

/// A zip archive of one stored entry "w.npy" holding `data`, whose central directory record says
/// `csize`, `usize` and `local` and carries `extra` (its declared length is `xlen`).
Bytes zip_one(const Bytes& data, std::uint32_t csize, std::uint32_t usize, std::uint32_t local, const Bytes& extra,
              std::uint16_t xlen) {
  const std::string name = "w.npy";
  const auto crc = static_cast<std::uint32_t>(crc32(0, data.data(), static_cast<uInt>(data.size())));
  Bytes z;
  put32(z, 0x04034b50);
  put16(z, 20), put16(z, 0), put16(z, 0), put16(z, 0), put16(z, 0x21);
  put32(z, crc), put32(z, static_cast<std::uint32_t>(data.size())), put32(z, static_cast<std::uint32_t>(data.size()));
  put16(z, static_cast<std::uint16_t>(name.size())), put16(z, 0);
  z.insert(z.end(), name.begin(), name.end());
  z.insert(z.end(), data.begin(), data.end());
  const auto cd = static_cast<std::uint32_t>(z.size());
  put32(z, 0x02014b50);
  put16(z, 45), put16(z, 45), put16(z, 0), put16(z, 0), put16(z, 0), put16(z, 0x21);
  put32(z, crc), put32(z, csize), put32(z, usize);
  put16(z, static_cast<std::uint16_t>(name.size())), put16(z, xlen), put16(z, 0), put16(z, 0), put16(z, 0);
  put32(z, 0), put32(z, local);
  z.insert(z.end(), name.begin(), name.end());
  z.insert(z.end(), extra.begin(), extra.end());
  const auto cd_size = static_cast<std::uint32_t>(z.size() - cd);
  put32(z, 0x06054b50);
  put16(z, 0), put16(z, 0), put16(z, 1), put16(z, 1);
  put32(z, cd_size), put32(z, cd);
  put16(z, 0);
  return z;
}

Bytes npy_of(const nn::Module& m) {
  const auto b = nn::encode_npy(m.parameters()[0]->view());
  return Bytes(reinterpret_cast<const unsigned char*>(b.data()), reinterpret_cast<const unsigned char*>(b.data()) + b.size());
}

/// A .npy file of float64 with the given header dict and `count` elements.
Bytes npy_with_header(const std::string& dict, std::size_t count) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  Bytes b{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  put16(b, static_cast<std::uint16_t>(h.size()));
  b.insert(b.end(), h.begin(), h.end());
  b.resize(b.size() + 8 * count, 0);
  return b;
}

/// Names in a directory, sorted.
std::vector<std::string> listing(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

// ---- .npz archives ------------------------------------------------------------------------------------

TEST_CASE("hardening: .npz zip64 sizes near 2^64 are refused without reading out of bounds") {
  TempDir dir;
  OneParam source(1.0), target(7.0);
  const auto before = target.values();
  Bytes extra;
  put16(extra, 0x0001), put16(extra, 16);
  put64(extra, ~std::uint64_t{0} - 7);  // uncompressed size
  put64(extra, ~std::uint64_t{0} - 7);  // compressed size: data + csize wraps around
  write_bytes(dir / "big.npz", zip_one(npy_of(source), 0xffffffffu, 0xffffffffu, 0, extra, 20));
  const std::string m = error_of<nn::WeightsError>([&] { nn::load(target, dir / "big.npz"); });
  CHECK(contains(m, (dir / "big.npz").string()));
  CHECK(contains(m, "entry \"w.npy\" (18446744073709551608 bytes"));
  CHECK(contains(m, "runs past the end of the data"));
  CHECK(target.values() == before);
}

TEST_CASE("hardening: .npz zip64 local-header offset of 2^64 - 16 is refused") {
  TempDir dir;
  OneParam source(1.0), target(7.0);
  const auto before = target.values();
  const Bytes data = npy_of(source);
  Bytes extra;
  put16(extra, 0x0001), put16(extra, 8);
  put64(extra, ~std::uint64_t{0} - 15);
  write_bytes(dir / "off.npz", zip_one(data, static_cast<std::uint32_t>(data.size()),
                                       static_cast<std::uint32_t>(data.size()), 0xffffffffu, extra, 12));
  const std::string m = error_of<nn::WeightsError>([&] { nn::load(target, dir / "off.npz"); });
  CHECK(contains(m, "local header of entry \"w.npy\" (at byte offset 18446744073709551600) is missing or malformed"));
  CHECK(target.values() == before);
  // The same archive with a sane offset loads: only the offset was wrong.
  write_bytes(dir / "ok.npz", zip_one(data, static_cast<std::uint32_t>(data.size()),
                                      static_cast<std::uint32_t>(data.size()), 0, {}, 0));
  nn::load(target, dir / "ok.npz");
  CHECK(target.values() == source.values());
}

TEST_CASE("hardening: a .npz extra field longer than its record is refused") {
  TempDir dir;
  OneParam source(1.0), target(7.0);
  const auto before = target.values();
  const Bytes data = npy_of(source);
  Bytes extra;
  put16(extra, 0x0001), put16(extra, 200);  // claims 200 bytes; the record holds 4 more
  put32(extra, 0);
  const auto n = static_cast<std::uint32_t>(data.size());
  write_bytes(dir / "x.npz", zip_one(data, n, n, 0, extra, 8));
  const std::string m = error_of<nn::WeightsError>([&] { nn::load(target, dir / "x.npz"); });
  CHECK(contains(m, "entry \"w.npy\": extra field of 200 bytes runs past its record (4 bytes left)"));
  CHECK(target.values() == before);
  // A zip64 field too short for the value it must hold.
  Bytes short64;
  put16(short64, 0x0001), put16(short64, 4);
  put32(short64, 0);
  write_bytes(dir / "s.npz", zip_one(data, 0xffffffffu, n, 0, short64, 8));
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load(target, dir / "s.npz"); }), "zip64 extra field too short"));
  CHECK(target.values() == before);
}

// ---- .npy headers ------------------------------------------------------------------------------------

TEST_CASE("hardening: .npy shape tuples are parsed strictly") {
  TempDir dir;
  const std::string pre = "{'descr': '<f8', 'fortran_order': False, 'shape': ";
  struct Case {
    std::string shape;
    std::size_t count;
    std::string says;
  };
  const std::vector<Case> bad{
      {"(2 3)", 6, "\"2 3\" is not a non-negative integer"},
      {"(2,,3)", 6, "an empty dimension"},
      {"(6)", 6, "needs a trailing comma"},
      {"(0, 4611686018427387904)", 0, "more than 8589934592 elements"},
      {"(4611686018427387905, 4)", 0, "more than 8589934592 elements"},
      {"(2, -3)", 0, "\"-3\" is not a non-negative integer"},
      {"(2, 3\x01)", 6, "\"3\\x01\" is not"},
  };
  for (const auto& c : bad) {
    CAPTURE(c.shape);
    write_bytes(dir / "a.npy", npy_with_header(pre + c.shape + ", }", c.count));
    const std::string m = error_of<nn::WeightsError>([&] { nn::load_npy(dir / "a.npy"); });
    CHECK(contains(m, "byte offset 60"));  // where the tuple starts
    CHECK(contains(m, c.says));
  }
  // Well-formed spellings still read.
  for (const std::string ok : {"(2, 3)", "(2,3,)", "( 2 , 3 )"}) {
    write_bytes(dir / "a.npy", npy_with_header(pre + ok + ", }", 6));
    CHECK(nn::load_npy(dir / "a.npy").shape == ad::Shape{2, 3});
  }
  write_bytes(dir / "a.npy", npy_with_header(pre + "(0, 5)}", 0));
  CHECK(nn::load_npy(dir / "a.npy").shape == ad::Shape{0, 5});
}

// ---- files that are not regular files ----------------------------------------------------------------

TEST_CASE("hardening: a directory given to any loader is a typed error") {
  TempDir dir;
  OneParam target(7.0);
  const auto before = target.values();
  const auto d = dir / "sub";
  std::filesystem::create_directory(d);
  const std::string is_dir = d.string() + ": is a directory, not a regular file";
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load_npy(d); }), is_dir));
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load_npz(d); }), is_dir));
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load(target, d); }), is_dir));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_csv(d); }), is_dir));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_idx(d); }), is_dir));
  CHECK(target.values() == before);
}

TEST_CASE("hardening: /dev/zero is refused at once instead of read until memory runs out") {
  OneParam target(7.0);
  const auto before = target.values();
  const std::string dev = "/dev/zero: is a character device, not a regular file";
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load_npy("/dev/zero"); }), dev));
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load(target, "/dev/zero"); }), dev));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_csv("/dev/zero"); }), dev));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_idx("/dev/zero"); }), dev));
  CHECK(target.values() == before);
}

TEST_CASE("hardening: a FIFO with no writer is refused instead of hanging") {
  TempDir dir;
  OneParam target(7.0);
  const auto before = target.values();
  const auto fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const std::string is_fifo = fifo.string() + ": is a FIFO (named pipe), not a regular file";
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load_npy(fifo); }), is_fifo));
  CHECK(contains(error_of<nn::WeightsError>([&] { nn::load(target, fifo); }), is_fifo));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_csv(fifo); }), is_fifo));
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_idx(fifo); }), is_fifo));
  CHECK(target.values() == before);
}

// ---- IDX ---------------------------------------------------------------------------------------------

TEST_CASE("hardening: an IDX gzip bomb stops at the announced size plus a small margin") {
  TempDir dir;
  // The header announces 10 elements; the stream inflates to 10 + 8 MiB.
  Bytes content{0, 0, 0x08, 1, 0, 0, 0, 10};
  content.resize(8 + 10 + (std::size_t{8} << 20), 0);
  gzFile f = gzopen((dir / "bomb.gz").c_str(), "wb9");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, content.data(), static_cast<unsigned>(content.size())) == static_cast<int>(content.size()));
  REQUIRE(gzclose(f) == Z_OK);
  CHECK(std::filesystem::file_size(dir / "bomb.gz") < 100000);
  const std::string m = error_of<nn::DataError>([&] { nn::read_idx(dir / "bomb.gz"); });
  CHECK(contains(m, "byte offset 18: more than 1048576 unexpected bytes after the 10 elements the header announces "
                    "(reading stopped there)"));
  // A few trailing bytes are counted exactly.
  content.resize(8 + 10 + 3);
  write_bytes(dir / "tail", content);
  CHECK(contains(error_of<nn::DataError>([&] { nn::read_idx(dir / "tail"); }), "byte offset 18: 3 unexpected bytes"));
  content.resize(8 + 10);
  CHECK_NOTHROW(write_bytes(dir / "ok", content));
  CHECK(nn::read_idx(dir / "ok").bytes.size() == 10);
}

TEST_CASE("hardening: an IDX header announcing 2^33 elements in a tiny file fails as truncated without allocating them") {
  TempDir dir;
  Bytes b{0, 0, 0x08, 2, 0, 0, 0, 4, 0x80, 0, 0, 0};  // [4, 2^31]
  b.resize(b.size() + 100, 7);
  write_bytes(dir / "huge", b);
  const std::string m = error_of<nn::DataError>([&] { nn::read_idx(dir / "huge"); });
  CHECK(contains(m, "byte offset 112: file is truncated: the header announces 8589934592 elements"));
  CHECK(contains(m, "but only 100 follow"));
}

// ---- CSV ---------------------------------------------------------------------------------------------

TEST_CASE("hardening: CSV label 2147483647 with classes = 0 is refused instead of overflowing") {
  TempDir dir;
  write_bytes(dir / "big.csv", {'2', '1', '4', '7', '4', '8', '3', '6', '4', '7', ',', '1', '\n'});
  const std::string m = error_of<nn::DataError>([&] { nn::read_csv(dir / "big.csv"); });
  CHECK(contains(m, "line 1, column 1 (byte offset 0): label 2147483647 is outside [0, 2^31 - 1)"));
  // The largest accepted label gives classes = 2^31 - 1, computed without overflow.
  write_bytes(dir / "max.csv", {'2', '1', '4', '7', '4', '8', '3', '6', '4', '6', ',', '1', '\n'});
  const nn::Dataset d = nn::read_csv(dir / "max.csv");
  CHECK(d.classes == 2147483647);
  CHECK(d.labels == std::vector<std::int32_t>{2147483646});
}

TEST_CASE("hardening: CSV features below float32's range read as 0, above it are refused") {
  const nn::Dataset d = nn::parse_csv("0,1e-50,-1e-50,1e-400,3.4e38\n1,1e-40,2,3,4\n", {}, "t.csv");
  CHECK(d.x(0, 0) == 0.0f);
  CHECK(d.x(0, 1) == 0.0f);
  CHECK(std::signbit(d.x(0, 1)));
  CHECK(d.x(0, 2) == 0.0f);
  CHECK(d.x(0, 3) == 3.4e38f);
  CHECK(d.x(1, 0) == static_cast<float>(1e-40));  // a subnormal float
  std::string m = error_of<nn::DataError>([] { nn::parse_csv("0,1e50\n", {}, "t.csv"); });
  CHECK(contains(m, "t.csv: line 1, column 2 (byte offset 2): 1e50 is outside the range of float32"));
  m = error_of<nn::DataError>([] { nn::parse_csv("0,1e400\n", {}, "t.csv"); });
  CHECK(contains(m, "1e400 is outside the range of float32"));
  m = error_of<nn::DataError>([] { nn::parse_csv("0,3e38\n", {.scale = 10.0f}, "t.csv"); });
  CHECK(contains(m, "3e38 times the scale 10 is outside the range of float32"));
}

TEST_CASE("hardening: CSV nan and inf features are refused unless allowed explicitly") {
  for (const std::string bad : {"nan", "inf", "-inf", "infinity", "NaN"}) {
    CAPTURE(bad);
    const std::string m = error_of<nn::DataError>([&] { nn::parse_csv("1,2\n0," + bad + "\n", {}, "t.csv"); });
    CHECK(contains(m, "t.csv: line 2, column 2 (byte offset 6): feature \"" + bad + "\" is not finite"));
    CHECK(contains(m, "allow_non_finite"));
  }
  const nn::Dataset d = nn::parse_csv("1,nan,inf\n", {.allow_non_finite = true}, "t.csv");
  CHECK(std::isnan(d.x(0, 0)));
  CHECK(std::isinf(d.x(0, 1)));
}

TEST_CASE("hardening: a NaN or infinite CSV scale is refused before anything is read") {
  TempDir dir;
  write_bytes(dir / "a.csv", {'0', ',', '1', '\n'});
  for (float s : {std::nanf(""), INFINITY}) {
    const std::string m = error_of<ad::InvalidArgument>([&] { nn::read_csv(dir / "a.csv", {.scale = s}); });
    CHECK(contains(m, "a.csv: scale is"));
    CHECK(contains(m, "(must be finite)"));
  }
  CHECK(nn::read_csv(dir / "a.csv", {.scale = 0.5f}).x(0, 0) == 0.5f);
}

TEST_CASE("hardening: a NUL byte in a CSV field is shown escaped, not cutting the message") {
  using namespace std::string_literals;
  std::string m = error_of<nn::DataError>([] { nn::parse_csv("0,1\x00x2\n"s, {}, "t.csv"); });
  CHECK(contains(m, "\"1\\x00x2\" is not a number"));
  m = error_of<nn::DataError>([] { nn::parse_csv("\x00\x01,1\n"s, {}, "t.csv"); });
  CHECK(contains(m, "label \"\\x00\\x01\" is not an integer"));
}

// ---- saving --------------------------------------------------------------------------------------------

TEST_CASE("hardening: saving never follows a symlink planted at a temporary name") {
  TempDir dir;
  write_bytes(dir / "victim", {'k', 'e', 'e', 'p'});
  std::filesystem::create_symlink(dir / "victim", dir / "w.npz.tmp");
  OneParam a(1.0), b(0.0);
  nn::save(a, dir / "w.npz");
  CHECK(read_bytes(dir / "victim") == Bytes{'k', 'e', 'e', 'p'});
  CHECK(std::filesystem::is_symlink(dir / "w.npz.tmp"));
  nn::load(b, dir / "w.npz");
  CHECK(b.values() == a.values());
  CHECK(listing(dir.path()) == std::vector<std::string>{"victim", "w.npz", "w.npz.tmp"});
  // A symlink as the target itself is replaced by the new file; what it pointed to is untouched.
  std::filesystem::create_symlink(dir / "victim", dir / "link.npz");
  nn::save(a, dir / "link.npz");
  CHECK(!std::filesystem::is_symlink(dir / "link.npz"));
  CHECK(read_bytes(dir / "victim") == Bytes{'k', 'e', 'e', 'p'});
}

TEST_CASE("hardening: two threads saving to one path never collide and leave no temporary file") {
  TempDir dir;
  OneParam a(1.0), b(100.0);
  std::atomic<int> errors{0};
  auto saver = [&](const OneParam& m) {
    for (int i = 0; i < 40; ++i) {
      try {
        nn::save(m, dir / "w.npz");
      } catch (const std::exception&) {
        ++errors;
      }
    }
  };
  std::thread t1(saver, std::cref(a)), t2(saver, std::cref(b));
  t1.join();
  t2.join();
  CHECK(errors == 0);
  OneParam c(0.0);
  nn::load(c, dir / "w.npz");
  CHECK((c.values() == a.values() || c.values() == b.values()));
  CHECK(listing(dir.path()) == std::vector<std::string>{"w.npz"});
}

TEST_CASE("hardening: saving over a file keeps its permission bits") {
  TempDir dir;
  OneParam a(1.0);
  nn::save(a, dir / "w.npz");
  std::filesystem::permissions(dir / "w.npz", std::filesystem::perms(0640));
  nn::save(a, dir / "w.npz");
  CHECK(std::filesystem::status(dir / "w.npz").permissions() == std::filesystem::perms(0640));
  nn::save_npy(dir / "w.npy", a.w_->view());
  std::filesystem::permissions(dir / "w.npy", std::filesystem::perms(0604));
  nn::save_npy(dir / "w.npy", a.w_->view());
  CHECK(std::filesystem::status(dir / "w.npy").permissions() == std::filesystem::perms(0604));
}

namespace {

/// Limits the size of files this process may write (RLIMIT_FSIZE) for its lifetime; a write past
/// it fails with EFBIG ("File too large") instead of raising SIGXFSZ.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    ::getrlimit(RLIMIT_FSIZE, &old_);
    rlimit r = old_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
};

}  // namespace

TEST_CASE("hardening: a write error says why, keeps the old file and leaves no temporary file") {
  TempDir dir;
  // A model of 8 KiB of weights, saved once; the second save fails after 4 KiB.
  auto w = std::make_shared<nn::Parameter>("w", ad::Array<double>(ad::Shape{32, 32}), true);
  struct Big : nn::Module {
    std::shared_ptr<nn::Parameter> p;
    ad::Tensor forward(const ad::Tensor& x) override { return x; }
    nn::ParameterList parameters() const override { return {p}; }
    std::string describe() const override { return "Big"; }
  } big;
  big.p = w;
  nn::save(big, dir / "w.npz");
  const Bytes old = read_bytes(dir / "w.npz");
  for (std::int64_t i = 0; i < 1024; ++i) w->array<double>()[i] = static_cast<double>(i);
  std::string m;
  {
    FileSizeLimit limit(4096);
    m = error_of<nn::WeightsError>([&] { nn::save(big, dir / "w.npz"); });
  }
  CHECK(contains(m, (dir / "w.npz").string() + ": write error in"));
  CHECK(contains(m, "File too large"));
  CHECK(contains(m, "the old file is unchanged"));
  CHECK(read_bytes(dir / "w.npz") == old);
  CHECK(listing(dir.path()) == std::vector<std::string>{"w.npz"});
}

TEST_CASE("hardening: saving into a missing directory or over a directory is a typed error") {
  TempDir dir;
  OneParam a(1.0);
  std::string m = error_of<nn::WeightsError>([&] { nn::save(a, dir / "no" / "w.npz"); });
  CHECK(contains(m, "cannot create a temporary file in " + (dir / "no").string() + ": No such file or directory"));
  std::filesystem::create_directory(dir / "d.npz");
  m = error_of<nn::WeightsError>([&] { nn::save(a, dir / "d.npz"); });
  CHECK(contains(m, (dir / "d.npz").string() + ": is a directory; cannot save over it"));
  CHECK(std::filesystem::is_empty(dir / "d.npz"));
  CHECK(listing(dir.path()) == std::vector<std::string>{"d.npz"});
}

// ---- training ------------------------------------------------------------------------------------------

namespace {

/// Two blobs in 2-D, 16 points each, labels 0 and 1.
nn::Dataset two_blobs() {
  nn::Dataset d;
  d.classes = 2;
  d.x = ad::Array<float>(ad::Shape{32, 2});
  for (std::int64_t i = 0; i < 32; ++i) {
    const auto k = static_cast<std::int32_t>(i % 2);
    d.x(i, 0) = (k ? 1.5f : -1.5f) + 0.01f * static_cast<float>(i);
    d.x(i, 1) = 0.3f * static_cast<float>(i % 5);
    d.labels.push_back(k);
  }
  return d;
}

std::vector<std::vector<float>> weights(const nn::Module& m) {
  std::vector<std::vector<float>> w;
  for (const auto& p : m.parameters()) {
    const auto& a = p->array<float>();
    w.emplace_back(a.data(), a.data() + a.size());
  }
  return w;
}

bool all_finite(const nn::Module& m) {
  for (const auto& w : weights(m))
    for (float v : w)
      if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("hardening: a NaN feature hidden by ReLU stops fit at the step that poisons a weight") {
  nn::Dataset d = two_blobs();
  d.x(5, 1) = std::nanf("");
  nn::Rng init(3), rng(4);
  nn::MLP net({2, 8, 2}, nn::relu, nn::identity, init);
  const auto start = weights(net);
  nn::SGD opt(net.parameters(), {.lr = 0.1});
  // One batch per epoch: the first step sees the NaN.
  try {
    nn::fit(net, opt, d, rng, {.epochs = 3, .batch_size = 32, .out = nullptr});
    FAIL("fit did not throw");
  } catch (const nn::TrainingError& e) {
    const std::string m = e.what();
    CHECK(e.step() == 1);
    CHECK(e.epoch() == 1);
    CHECK(e.batch() == 1);
    CHECK(!e.parameter().empty());
    CHECK(contains(m, "fit: step 1 (epoch 1, batch 1) made parameter \"" + e.parameter() + "\""));
    CHECK(contains(m, "the weights from before this step were restored"));
  }
  CHECK(weights(net) == start);
  // Off, the same run silently ends with NaN weights.
  nn::Rng init2(3), rng2(4);
  nn::MLP net2({2, 8, 2}, nn::relu, nn::identity, init2);
  nn::SGD opt2(net2.parameters(), {.lr = 0.1});
  nn::fit(net2, opt2, d, rng2, {.epochs = 1, .batch_size = 32, .out = nullptr, .check_finite = false});
  CHECK(!all_finite(net2));
}

TEST_CASE("hardening: an infinite feature with Adam stops fit at a non-finite loss, weights unchanged") {
  nn::Dataset d = two_blobs();
  d.x(7, 0) = INFINITY;
  nn::Rng init(3), rng(4);
  nn::MLP net({2, 8, 2}, nn::relu, nn::identity, init);
  const auto start = weights(net);
  nn::Adam opt(net.parameters());
  try {
    nn::fit(net, opt, d, rng, {.epochs = 2, .batch_size = 32, .out = nullptr});
    FAIL("fit did not throw");
  } catch (const nn::TrainingError& e) {
    CHECK(e.parameter().empty());
    CHECK(e.step() == 1);
    CHECK(contains(e.what(), "fit: the loss is nan at step 1 (epoch 1, batch 1); no update was made"));
  }
  CHECK(weights(net) == start);
  CHECK(opt.steps() == 0);
}

TEST_CASE("hardening: lr = 1e6 stops fit at the diverging step with the last good weights in the model") {
  const nn::Dataset d = two_blobs();
  // One full batch per epoch, so that "the first k steps" is "k epochs".
  auto run = [&](int epochs, bool check, long* failed_at) {
    nn::Rng init(3), rng(4);
    auto net = std::make_unique<nn::MLP>(std::vector<std::int64_t>{2, 8, 2}, nn::relu, nn::identity, init);
    nn::SGD opt(net->parameters(), {.lr = 1e6});
    try {
      nn::fit(*net, opt, d, rng, {.epochs = epochs, .batch_size = 32, .out = nullptr, .check_finite = check});
    } catch (const nn::TrainingError& e) {
      *failed_at = e.step();
      CHECK(contains(e.what(), fmt::format("step {} (epoch {}, batch 1)", e.step(), e.step())));
    }
    return net;
  };
  long failed = 0;
  const auto net = run(100, true, &failed);
  REQUIRE(failed > 1);
  CHECK(all_finite(*net));
  // The same run stopped just before the failing step holds exactly these weights: nothing lost.
  long unused = 0;
  const auto ref = run(static_cast<int>(failed - 1), false, &unused);
  CHECK(unused == 0);
  CHECK(weights(*ref) == weights(*net));
  // Without the check the run goes on with non-finite weights or loss.
  const auto off = run(100, false, &unused);
  CHECK(!all_finite(*off));
}

namespace {

/// Plain gradient descent, written outside nn: Optimizer::apply_checked falls back to copying the
/// weights before each step and restoring them.
class PlainDescent : public nn::Optimizer {
 public:
  PlainDescent(nn::ParameterList params, double lr) : nn::Optimizer(std::move(params)), lr_(lr) {}
  double learning_rate() const override { return lr_; }
  void set_learning_rate(double lr) override { lr_ = lr; }

 private:
  void update() override {
    for (std::size_t k = 0; k < params_.size(); ++k) {
      float* w = params_[k]->array<float>().data();
      const auto* g = static_cast<const float*>(gradient_data(k));
      for (std::int64_t i = 0; i < params_[k]->size(); ++i) w[i] -= static_cast<float>(lr_) * g[i];
    }
  }
  double lr_;
};

}  // namespace

TEST_CASE("hardening: a step that overflows is undone exactly, by SGD, Adam and an optimiser of its own") {
  const nn::Dataset d = two_blobs();
  // One full batch per epoch; the learning rate jumps to 1e39 (infinite in float) in epoch 4, so
  // step 4 is the first to make the weights non-finite, from good weights and a finite loss.  A run
  // of 3 unchecked epochs must hold exactly the weights the checked run is left with.
  using Make = std::function<std::unique_ptr<nn::Optimizer>(nn::ParameterList)>;
  const std::pair<const char*, Make> optimisers[] = {
      {"SGD", [](nn::ParameterList p) { return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 0.1}); }},
      {"SGD with momentum and decay",
       [](nn::ParameterList p) {
         return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3});
       }},
      {"Adam", [](nn::ParameterList p) { return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.1}); }},
      {"PlainDescent (copies)", [](nn::ParameterList p) { return std::make_unique<PlainDescent>(p, 0.1); }},
  };
  for (const auto& entry : optimisers) {
    const char* name = entry.first;
    const Make& make = entry.second;
    CAPTURE(name);
    auto run = [&](int epochs, bool check, long* failed_at) {
      nn::Rng init(3), rng(4);
      auto net = std::make_unique<nn::MLP>(std::vector<std::int64_t>{2, 8, 2}, nn::relu, nn::identity, init);
      auto opt = make(net->parameters());
      try {
        nn::fit(*net, *opt, d, rng,
                {.epochs = epochs,
                 .batch_size = 32,
                 .learning_rate = [](int epoch) { return epoch <= 3 ? 0.1 : 1e39; },
                 .out = nullptr,
                 .check_finite = check});
      } catch (const nn::TrainingError& e) {
        *failed_at = e.step();
        CHECK(e.parameter() == "layer1.W");
        CHECK(contains(e.what(), "the weights from before this step were restored"));
        CHECK(!opt->collected());
      }
      return net;
    };
    long failed = 0, unused = 0;
    const auto net = run(6, true, &failed);
    CHECK(failed == 4);
    CHECK(all_finite(*net));
    const auto ref = run(3, false, &unused);
    CHECK(unused == 0);
    CHECK(weights(*ref) == weights(*net));
    CHECK(!all_finite(*run(4, false, &unused)));
  }
}

TEST_CASE("hardening: the README's reliability snippet runs") {
  TempDir dir;
  const nn::Dataset train = two_blobs();
  bool stopped = false;
  // --- as in the README ---
  nn::Rng rng(1);
  nn::MLP net({2, 8, 2}, nn::relu, nn::identity, rng);
  nn::SGD opt(net.parameters(), {.lr = 0.1});
  try {
    nn::fit(net, opt, train, rng, {.epochs = 5, .out = nullptr});
  } catch (const nn::TrainingError& e) {
    stopped = true;
  }
  nn::save(net, dir / "model.npz");
  // ---
  CHECK(!stopped);
  CHECK(all_finite(net));
  nn::Rng other(9);
  nn::MLP back({2, 8, 2}, nn::relu, nn::identity, other);
  nn::load(back, dir / "model.npz");
  CHECK(weights(back) == weights(net));
}
