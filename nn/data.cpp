#include "nn/data.hpp"

#include "nn/file.hpp"

#include "autodiff/backend/pool.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <fmt/std.h>
#include <zlib.h>

#include <unistd.h>

namespace nn {

namespace {

/// An IDX file, read through zlib: gzread decompresses a gzip stream and passes any other content
/// through unchanged.  The file is checked to be a regular file first (open_regular).
class IdxReader {
 public:
  explicit IdxReader(const std::filesystem::path& path) : path_(path) {
    detail::OpenFile f = detail::open_regular<DataError>(path, limits::data_bytes);
    const int fd = f.fd.release();
    gz_ = gzdopen(fd, "rb");
    if (!gz_) {
      ::close(fd);
      throw DataError(fmt::format("{}: cannot open: out of memory", path));
    }
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;
  ~IdxReader() {
    if (gz_) gzclose(gz_);
  }

  /// Reads up to n uncompressed bytes into dst (nullptr: discard them); fewer only at the end of the
  /// content.  A damaged or cut gzip stream throws, naming the uncompressed offset reached.
  std::uint64_t read(std::uint8_t* dst, std::uint64_t n) {
    std::uint8_t scratch[1 << 16];
    std::uint64_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(std::min<std::uint64_t>(n - done, dst ? 1u << 30 : sizeof scratch));
      const int got = gzread(gz_, dst ? dst + done : scratch, want);
      if (got < 0) damaged();
      if (got == 0) break;
      done += static_cast<std::uint64_t>(got);
      offset_ += static_cast<std::uint64_t>(got);
    }
    if (done < n) damaged();  // only returns if the stream ended cleanly
    return done;
  }

  /// Throws if the stream is damaged or was cut short; returns if it simply ended.
  void damaged() {
    int code = 0;
    const char* msg = gzerror(gz_, &code);
    if (code == Z_OK) return;
    if (code == Z_BUF_ERROR)
      throw DataError(fmt::format("{}: the gzip stream is truncated after {} uncompressed bytes; the file is "
                                  "incomplete, download or reinstall it",
                                  path_, offset_));
    throw DataError(fmt::format("{}: corrupt gzip data after {} uncompressed bytes ({}); the file is damaged, "
                                "download or reinstall it",
                                path_, offset_, msg ? msg : "unknown error"));
  }

 private:
  std::filesystem::path path_;
  gzFile gz_ = nullptr;
  std::uint64_t offset_ = 0;
};

std::uint32_t big_endian_u32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

}  // namespace

IdxData read_idx(const std::filesystem::path& path) {
  // The header is read first; then exactly the elements it announces, and at most
  // limits::idx_trailing_bytes more to report trailing data: whatever a compressed stream would
  // inflate to, no more than that is ever decompressed.
  IdxReader in(path);
  std::uint8_t head[4 + 4 * 4] = {};
  const std::uint64_t got = in.read(head, 4);
  if (got < 4)
    throw DataError(fmt::format("{}: byte offset {}: file ends inside the 4-byte IDX magic number ({} bytes in all)",
                                path, got, got));
  if (head[0] != 0 || head[1] != 0)
    throw DataError(fmt::format("{}: byte offset 0: bad IDX magic number {:02x} {:02x} {:02x} {:02x} (an IDX file "
                                "starts with two zero bytes, a type code and a rank); is this an IDX file?",
                                path, head[0], head[1], head[2], head[3]));
  if (head[2] != 0x08)
    throw DataError(fmt::format("{}: byte offset 2: IDX type code 0x{:02x} is not supported (only 0x08, unsigned "
                                "bytes, as in MNIST and Fashion-MNIST)",
                                path, head[2]));
  const int rank = head[3];
  if (rank < 1 || rank > 4)
    throw DataError(fmt::format("{}: byte offset 3: IDX rank {} (expected 1 to 4)", path, rank));
  const std::size_t header = 4 + 4 * static_cast<std::size_t>(rank);
  const std::uint64_t dims_got = in.read(head + 4, header - 4);
  if (dims_got < header - 4)
    throw DataError(fmt::format("{}: byte offset {}: file ends inside the IDX header ({} dimensions need {} bytes)",
                                path, 4 + dims_got, rank, header));
  IdxData d;
  std::uint64_t count = 1;
  for (int k = 0; k < rank; ++k) {
    const std::uint32_t n = big_endian_u32(&head[4 + 4 * k]);
    if (n == 0 || n > (1u << 31))
      throw DataError(fmt::format("{}: byte offset {}: dimension {} is {}", path, 4 + 4 * k, k, n));
    d.dims.push_back(n);
    count *= n;  // at most 2^34 before this factor, and a factor at most 2^31: no overflow
    if (count > limits::data_bytes)
      throw DataError(fmt::format("{}: byte offset {}: the dimensions announce {} elements, more than the {} accepted",
                                  path, 4 + 4 * k, count, limits::data_bytes));
  }
  // Memory grows with the data that actually arrives (doubling), not with what the header
  // announces: a 30-byte file announcing 16 GiB fails as truncated, without allocating 16 GiB.
  std::uint64_t have = 0;
  while (have < count) {
    const std::uint64_t chunk = std::min<std::uint64_t>(count - have, std::max<std::uint64_t>(have, 1u << 20));
    try {
      d.bytes.resize(static_cast<std::size_t>(have + chunk));
    } catch (const std::bad_alloc&) {
      throw DataError(fmt::format("{}: cannot allocate {} bytes for the elements the header announces", path,
                                  have + chunk));
    }
    const std::uint64_t got = in.read(d.bytes.data() + have, chunk);
    have += got;
    if (got < chunk) break;
  }
  if (have < count)
    throw DataError(fmt::format("{}: byte offset {}: file is truncated: the header announces {} elements ({} bytes "
                                "from offset {}) but only {} follow",
                                path, header + have, count, count, header, have));
  const std::uint64_t extra = in.read(nullptr, limits::idx_trailing_bytes + 1);
  if (extra > limits::idx_trailing_bytes)
    throw DataError(fmt::format("{}: byte offset {}: more than {} unexpected bytes after the {} elements the header "
                                "announces (reading stopped there)",
                                path, header + count, limits::idx_trailing_bytes, count));
  if (extra > 0)
    throw DataError(fmt::format("{}: byte offset {}: {} unexpected bytes after the {} elements the header announces",
                                path, header + count, extra, count));
  return d;
}

Dataset load_idx(const std::filesystem::path& images, const std::filesystem::path& labels, std::int64_t classes) {
  if (classes <= 0 || classes > 256)
    throw ad::InvalidArgument(fmt::format("load_idx: classes is {} (expected 1..256)", classes));
  IdxData im = read_idx(images);
  IdxData lb = read_idx(labels);
  if (im.dims.size() < 2)
    throw DataError(fmt::format("{}: byte offset 3: an image file has rank >= 2 ([N, rows, cols]); this one has rank {}",
                                images, im.dims.size()));
  if (lb.dims.size() != 1)
    throw DataError(fmt::format("{}: byte offset 3: a label file has rank 1 ([N]); this one has rank {}", labels,
                                lb.dims.size()));
  if (im.dims[0] != lb.dims[0])
    throw DataError(fmt::format("{} holds {} images but {} holds {} labels (byte offset 4 of each); the two files "
                                "must belong together",
                                images, im.dims[0], labels, lb.dims[0]));
  const std::size_t label_header = 8;
  for (std::size_t i = 0; i < lb.bytes.size(); ++i)
    if (lb.bytes[i] >= classes)
      throw DataError(fmt::format("{}: byte offset {}: label {} of item {} is outside [0, {})", labels,
                                  label_header + i, lb.bytes[i], i, classes));
  const std::int64_t n = im.dims[0];
  const std::int64_t features = static_cast<std::int64_t>(im.bytes.size()) / n;
  Dataset d;
  d.classes = classes;
  d.x = ad::Array<float>(ad::Shape{n, features});
  float* x = d.x.data();
  for (std::size_t i = 0; i < im.bytes.size(); ++i) x[i] = static_cast<float>(im.bytes[i]) / 255.0f;
  d.labels.assign(lb.bytes.begin(), lb.bytes.end());
  return d;
}

Dataset load_fashion_mnist(const std::string& split, const std::filesystem::path& dir) {
  if (split != "train" && split != "t10k")
    throw ad::InvalidArgument(fmt::format("load_fashion_mnist: split \"{}\" (expected \"train\" or \"t10k\")", split));
  const auto images = dir / (split + "-images-idx3-ubyte.gz");
  const auto labels = dir / (split + "-labels-idx1-ubyte.gz");
  for (const auto& p : {images, labels}) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec))
      throw DataError(fmt::format("{}: no such file; Fashion-MNIST is in the Debian package dataset-fashion-mnist: "
                                  "run `apt-get install dataset-fashion-mnist` (as root)",
                                  p));
  }
  return load_idx(images, labels, 10);
}

// ---- CSV ---------------------------------------------------------------------------------------------

namespace {

/// A CSV feature: a decimal or scientific number within float32's range.  Values too small for
/// float32 (1e-50) become 0 or a subnormal, as any float parser rounds them; values too large
/// (1e50) are refused.  "nan" and "inf" parse here and are refused or kept by the caller.
std::optional<float> parse_feature(std::string_view field, bool& out_of_range) {
  out_of_range = false;
  const char* b = field.data();
  const char* z = field.data() + field.size();
  double v = 0;
  auto [p, ec] = std::from_chars(b, z, v);
  if (ec == std::errc::result_out_of_range && p == z) {
    // Out of double's range: underflow when the exponent is negative, overflow otherwise.
    const std::size_t e = field.find_first_of("eE");
    if (e != std::string_view::npos && e + 1 < field.size() && field[e + 1] == '-')
      return field.front() == '-' ? -0.0f : 0.0f;
    out_of_range = true;
    return std::nullopt;
  }
  if (ec != std::errc() || p != z || field.empty()) return std::nullopt;
  if (std::isfinite(v) && std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max())) {
    out_of_range = true;
    return std::nullopt;
  }
  return static_cast<float>(v);
}

}  // namespace

Dataset parse_csv(std::string_view text, const CsvOptions& opt, const std::string& where) {
  if (!std::isfinite(opt.scale))
    throw ad::InvalidArgument(fmt::format("read_csv {}: scale is {} (must be finite)", where, opt.scale));
  const std::string path = detail::printable(where, 4096);
  std::vector<float> values;
  std::vector<std::int32_t> labels;
  std::int64_t columns = -1;
  std::size_t pos = 0, line_no = 0;
  bool skip = opt.header;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::size_t line_start = pos;
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (skip) {
      skip = false;
      continue;
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    // Split into fields.
    std::int64_t ncols = 1 + std::count(line.begin(), line.end(), opt.delimiter);
    if (columns < 0) {
      columns = ncols;
      if (columns < 2)
        throw DataError(fmt::format("{}: line {} (byte offset {}): {} column; a sample needs a label column and at "
                                    "least one feature (is the delimiter '{}' right?)",
                                    path, line_no, line_start, columns, detail::printable({&opt.delimiter, 1})));
      const std::int64_t lc = opt.label_column < 0 ? columns + opt.label_column : opt.label_column;
      if (lc < 0 || lc >= columns)
        throw DataError(fmt::format("{}: label column {} does not exist: line {} has {} columns", path,
                                    opt.label_column, line_no, columns));
    } else if (ncols != columns) {
      throw DataError(fmt::format("{}: line {} (byte offset {}): {} columns, but the first data line has {}", path,
                                  line_no, line_start, ncols, columns));
    }
    const std::int64_t label_col = opt.label_column < 0 ? columns + opt.label_column : opt.label_column;
    std::size_t f = 0;
    for (std::int64_t c = 0; c < columns; ++c) {
      std::size_t e = line.find(opt.delimiter, f);
      if (e == std::string_view::npos) e = line.size();
      std::string_view field = line.substr(f, e - f);
      const std::size_t field_offset = line_start + f;
      while (!field.empty() && (field.front() == ' ' || field.front() == '\t')) field.remove_prefix(1);
      while (!field.empty() && (field.back() == ' ' || field.back() == '\t')) field.remove_suffix(1);
      const auto where_field = [&] {
        return fmt::format("{}: line {}, column {} (byte offset {})", path, line_no, c + 1, field_offset);
      };
      if (c == label_col) {
        std::int64_t v = 0;
        auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
        if (ec != std::errc() || p != field.data() + field.size() || field.empty())
          throw DataError(fmt::format("{}: label \"{}\" is not an integer", where_field(), detail::printable(field)));
        if (v < 0 || (opt.classes > 0 && v >= opt.classes) || v >= INT32_MAX)
          throw DataError(fmt::format("{}: label {} is outside [0, {})", where_field(), v,
                                      opt.classes > 0 ? fmt::format("{}", opt.classes) : std::string("2^31 - 1")));
        labels.push_back(static_cast<std::int32_t>(v));
      } else {
        bool out_of_range = false;
        const std::optional<float> v = parse_feature(field, out_of_range);
        if (!v) {
          if (out_of_range)
            throw DataError(fmt::format("{}: {} is outside the range of float32 (about ±3.4e38)", where_field(),
                                        detail::printable(field)));
          throw DataError(
              fmt::format("{}: \"{}\" is not a number", where_field(), detail::printable(field)));
        }
        const float scaled = *v * opt.scale;
        if (!std::isfinite(scaled) && !opt.allow_non_finite) {
          if (std::isfinite(*v))
            throw DataError(fmt::format("{}: {} times the scale {} is outside the range of float32", where_field(),
                                        detail::printable(field), opt.scale));
          throw DataError(fmt::format("{}: feature \"{}\" is not finite; NaN and infinite features are refused "
                                      "unless CsvOptions::allow_non_finite is set",
                                      where_field(), detail::printable(field)));
        }
        values.push_back(scaled);
      }
      f = e + 1;
    }
  }
  if (labels.empty()) throw DataError(fmt::format("{}: no data lines", path));
  Dataset d;
  const auto n = static_cast<std::int64_t>(labels.size());
  d.x = ad::Array<float>(ad::Shape{n, columns - 1}, std::span<const float>(values));
  d.labels = std::move(labels);
  // In 64 bits: the largest label is below 2^31 - 1, so one more than it still fits an int32 too.
  d.classes = opt.classes > 0 ? opt.classes : std::int64_t{1} + *std::max_element(d.labels.begin(), d.labels.end());
  return d;
}

Dataset read_csv(const std::filesystem::path& path, const CsvOptions& opt) {
  const std::vector<std::byte> bytes = detail::read_regular<DataError>(path, limits::data_bytes);
  return parse_csv(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), opt, path.string());
}

// ---- batches -----------------------------------------------------------------------------------------

std::uint64_t fingerprint(std::span<const std::byte> bytes, std::uint64_t h) {
  constexpr std::uint64_t prime = 0x100000001b3ULL;
  std::size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * prime;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<std::uint64_t>(bytes[i])) * prime;
  return h ^ (h >> 29);
}

std::uint64_t fingerprint(const Dataset& d) {
  std::uint64_t h = fingerprint(std::as_bytes(std::span(d.x.data(), static_cast<std::size_t>(d.x.size()))));
  h = fingerprint(std::as_bytes(std::span(d.labels)), h);
  const std::int64_t shape[] = {d.size(), d.features(), d.classes};
  return fingerprint(std::as_bytes(std::span(shape)), h);
}

std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t n, Shard s) {
  if (s.ranks <= 0 || s.rank < 0 || s.rank >= s.ranks)
    throw ad::InvalidArgument(fmt::format("shard: rank {} of {} (need 0 <= rank < ranks)", s.rank, s.ranks));
  return {n * s.rank / s.ranks, n * (s.rank + 1) / s.ranks};
}

Batches::Batches(const Dataset& data, std::int64_t batch_size, Rng* rng, Shard shard)
    : data_(data), n_(data.size()), batch_(batch_size), shard_(shard) {
  if (batch_size <= 0) throw ad::InvalidArgument(fmt::format("batches: batch size {} (must be positive)", batch_size));
  shard_range(0, shard);  // checks the shard
  if (static_cast<std::int64_t>(data.labels.size()) != n_)
    throw ad::ShapeError(fmt::format("batches: the data set has {} rows but {} labels", n_, data.labels.size()));
  order_.resize(static_cast<std::size_t>(n_));
  std::iota(order_.begin(), order_.end(), 0);
  if (rng) std::shuffle(order_.begin(), order_.end(), *rng);
}

Batches::iterator::iterator(Batches* owner, std::int64_t start) : owner_(owner), start_(start) {
  if (start_ < owner_->n_) fill();
}

Batches::iterator Batches::begin() { return iterator(this, 0); }
Batches::iterator Batches::end() { return iterator(this, n_); }

Batch Batches::iterator::operator*() const {
  Batches& o = *owner_;
  return Batch{o.x_[o.current_], std::span<const std::int32_t>(o.y_[o.current_])};
}

Batches::iterator& Batches::iterator::operator++() {
  start_ = std::min(start_ + owner_->batch_, owner_->n_);
  if (start_ < owner_->n_) fill();
  return *this;
}

void Batches::iterator::fill() {
  Batches& o = *owner_;
  o.current_ ^= 1;
  const auto [lo, hi] = shard_range(std::min(o.batch_, o.n_ - start_), o.shard_);
  const std::int64_t b = hi - lo;
  const std::int64_t f = o.data_.features();
  ad::Array<float>& x = o.x_[o.current_];
  // Reuse the buffer unless its shape differs or something (a tape leaf) still shares it.
  if (x.rank() != 2 || x.dim(0) != b || x.dim(1) != f || x.buffer().use_count() != 1)
    x = ad::Array<float>(ad::Shape{b, f});
  std::vector<std::int32_t>& y = o.y_[o.current_];
  y.resize(static_cast<std::size_t>(b));
  // The rows are scattered over the data set (mostly outside the caches): the copies are spread over
  // the backend's threads, each prefetching the row it copies two rows later.  Each range holds at
  // least 64 KiB of rows, a few microseconds of copying from memory, so that a second thread pays.
  const float* src = o.data_.x.data();
  const std::int64_t* rows = o.order_.data() + start_ + lo;
  const std::int32_t* labels = o.data_.labels.data();
  float* dst = x.data();
  std::int32_t* out = y.data();
  const auto row_bytes = sizeof(float) * static_cast<std::size_t>(f);
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 16) / std::max<std::int64_t>(1, 4 * f));
  ad::backend::parallel_for_balanced(b, grain, [=](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      if (i + 2 < end) {
        const auto* ahead = reinterpret_cast<const char*>(src + rows[i + 2] * f);
        for (std::size_t at = 0; at < row_bytes; at += 64) __builtin_prefetch(ahead + at);
      }
      std::memcpy(dst + i * f, src + rows[i] * f, row_bytes);
      out[i] = labels[rows[i]];
    }
  });
}

Dataset slice(const Dataset& data, std::int64_t begin, std::int64_t end) {
  if (begin < 0 || end > data.size() || begin > end)
    throw ad::IndexError(fmt::format("slice: rows [{}, {}) of a data set of {} rows", begin, end, data.size()));
  const std::int64_t f = data.features();
  Dataset d;
  d.classes = data.classes;
  d.x = ad::Array<float>(ad::Shape{end - begin, f},
                         std::span<const float>(data.x.data() + begin * f, static_cast<std::size_t>((end - begin) * f)));
  d.labels.assign(data.labels.begin() + begin, data.labels.begin() + end);
  return d;
}

}  // namespace nn
