// Data sets: IDX files (MNIST, Fashion-MNIST; raw or gzip-compressed), CSV files, and shuffled
// mini-batches.
//
// A Dataset is a matrix of inputs x [N, features] in float32 and one integer label per row.  Every
// reader validates what it reads (magic numbers, sizes, label ranges, number formats) and throws
// nn::DataError naming the file, the byte offset or line, and what to install or fix.
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autodiff/array.hpp"
#include "nn/error.hpp"

namespace nn {

/// The random engine used across nn (initialisers, shuffling): seeded, reproducible.
using Rng = std::mt19937_64;

/// Inputs and integer labels, one row per sample.
struct Dataset {
  ad::Array<float> x;                 ///< [N, features]
  std::vector<std::int32_t> labels;   ///< N labels in [0, classes)
  std::int64_t classes = 0;

  std::int64_t size() const { return x.rank() == 0 ? 0 : x.dim(0); }
  std::int64_t features() const { return x.rank() < 2 ? 0 : x.dim(1); }
};

/// The contents of one IDX file of unsigned bytes (type code 0x08): its dimensions and elements.
struct IdxData {
  std::vector<std::int64_t> dims;
  std::vector<std::uint8_t> bytes;
};

/// Reads an IDX file of unsigned bytes, gzip-compressed or not (detected from the content).
/// Checks the magic number (two zero bytes, type 0x08, rank 1..4), that the dimensions are
/// positive, and that the file holds exactly the announced number of elements.  Offsets in error
/// messages count bytes of the uncompressed content.
IdxData read_idx(const std::filesystem::path& path);

/// Reads an IDX image file ([N, rows, cols], or [N, features]) and an IDX label file ([N]) into a
/// Dataset with pixels scaled to [0, 1].  Checks that the counts agree and every label is in
/// [0, classes).
Dataset load_idx(const std::filesystem::path& images, const std::filesystem::path& labels, std::int64_t classes = 10);

/// Where Debian's dataset-fashion-mnist package installs the files.
inline const std::filesystem::path fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's "train" (60,000 images) or "t10k" (10,000 images) split from `dir`.  If a file is
/// missing the error says to run `apt-get install dataset-fashion-mnist`.
Dataset load_fashion_mnist(const std::string& split, const std::filesystem::path& dir = fashion_mnist_dir);

/// Options of read_csv.
struct CsvOptions {
  int label_column = 0;          ///< column holding the integer label; -1 for the last column
  bool header = false;           ///< skip the first line
  char delimiter = ',';
  std::int64_t classes = 0;      ///< labels must be in [0, classes); 0: one more than the largest label
  float scale = 1.0f;            ///< every feature is multiplied by this (1/255 for pixel values); must be finite
  /// Accept "nan", "inf" and "-inf" features.  Off: a non-finite feature (or one that overflows
  /// float32 once scaled) throws DataError naming the line and column.
  bool allow_non_finite = false;
};

/// Reads a CSV file of numbers, one sample a line: one column is the integer label, the others the
/// features.  Every line must have the same number of columns.  Empty lines are skipped.  Labels are
/// integers in [0, 2^31 - 1); features are numbers within float32's range (1e-50 reads as 0).
Dataset read_csv(const std::filesystem::path& path, const CsvOptions& options = {});
/// The same from the text of a CSV file (`where` names the source in error messages).
Dataset parse_csv(std::string_view text, const CsvOptions& options = {}, const std::string& where = "<csv>");

/// A 64-bit hash of a data set's rows and labels (not cryptographic): processes that must train on
/// the same data compare it.
std::uint64_t fingerprint(const Dataset& data);
/// The same hash of any bytes, continued from `h` (64-bit FNV-1a over 8-byte words).
std::uint64_t fingerprint(std::span<const std::byte> bytes, std::uint64_t h = 0xcbf29ce484222325ULL);

/// Which part of the work one process of a group takes: process `rank` of `ranks` (rank 0 of 1 is
/// everything).
struct Shard {
  int rank = 0;
  int ranks = 1;
};

/// Rows [n·rank/ranks, n·(rank+1)/ranks) of n: the parts of all ranks, in rank order, cover 0..n
/// once, and their sizes differ by at most one.  Throws InvalidArgument unless 0 <= rank < ranks.
std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t n, Shard shard);

/// One mini-batch: `x` [B, features] and its B labels.  Both are valid until the next batch is
/// produced (the iterator reuses their memory once nothing else holds it).
struct Batch {
  const ad::Array<float>& x;
  std::span<const std::int32_t> labels;
};

/// The mini-batches of one pass over a data set, in a random order drawn from `rng` (or in order
/// when rng is null).  The last batch is smaller when the batch size does not divide N.
///   for (auto [x, y] : nn::batches(train, 128, rng)) { ... }
///
/// With a Shard, each batch of the pass is split between the ranks (shard_range of its size) and
/// only this rank's rows are produced: every rank draws the same order from an engine in the same
/// state, so the ranks' parts of step s together are exactly batch s of the one-process pass.  A
/// rank gets an empty batch [0, features] when the batch has fewer rows than there are ranks.
class Batches {
 public:
  Batches(const Dataset& data, std::int64_t batch_size, Rng* rng, Shard shard = {});

  class iterator {
   public:
    using difference_type = std::ptrdiff_t;
    using value_type = Batch;
    iterator() = default;
    Batch operator*() const;
    iterator& operator++();
    bool operator==(const iterator& o) const { return start_ == o.start_; }

   private:
    friend class Batches;
    iterator(Batches* owner, std::int64_t start);
    void fill();
    Batches* owner_ = nullptr;
    std::int64_t start_ = 0;
  };

  iterator begin();
  iterator end();
  /// Number of batches.
  std::int64_t size() const { return (n_ + batch_ - 1) / batch_; }

 private:
  const Dataset& data_;
  std::int64_t n_ = 0;
  std::int64_t batch_ = 0;
  Shard shard_;
  std::vector<std::int64_t> order_;
  // Two buffers used in turn, so that filling a batch never overwrites the previous one while a
  // tape that has not been cleared yet still reads it.
  ad::Array<float> x_[2];
  std::vector<std::int32_t> y_[2];
  int current_ = 0;
};

/// A shuffled pass when given an engine, in order when not.
inline Batches batches(const Dataset& data, std::int64_t batch_size, Rng& rng) { return Batches(data, batch_size, &rng); }
inline Batches batches(const Dataset& data, std::int64_t batch_size) { return Batches(data, batch_size, nullptr); }
/// This rank's part of every batch of a shuffled pass.
inline Batches batches(const Dataset& data, std::int64_t batch_size, Rng& rng, Shard shard) {
  return Batches(data, batch_size, &rng, shard);
}

/// Rows [begin, end) of a data set, copied (e.g. to hold out a validation set).
Dataset slice(const Dataset& data, std::int64_t begin, std::int64_t end);

}  // namespace nn
