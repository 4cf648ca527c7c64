// Shapes, element types and dense arrays: the values that live off the tape.
//
// ad::Array<T> owns a dense, row-major, contiguous block of float or double of rank 0..4.
// Parameters, data and results are Arrays; they enter a tape as leaves (see Tape::leaf) without
// being copied, because the element buffer is shared with the tape entry that reads it.
// Copying an Array copies its elements (value semantics); moving it moves the buffer.
//
// Each buffer carries a version stamp, bumped by every access that can write the elements (the
// non-const data(), values(), operator[] and operator(), and touch()).  A tape leaf remembers the
// version it was recorded at, so a sweep over a tape whose parameters were updated in place since
// (an optimiser step) throws StaleTapeError instead of mixing old activations with new weights.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include <boost/container/static_vector.hpp>
#include <fmt/format.h>

#include "autodiff/error.hpp"

namespace ad {

inline constexpr std::size_t max_rank = 4;

/// Dimensions of a tensor, outermost first.  Rank 0 (no dimensions) is a scalar of one element.
using Shape = boost::container::static_vector<std::int64_t, max_rank>;

/// Largest number of elements a shape may have (2^48: far beyond any memory, and small enough that
/// element counts and byte sizes never overflow 64 bits).  check_shape enforces it.
inline constexpr std::int64_t max_elements = std::int64_t{1} << 48;

/// Number of elements of a shape (1 for rank 0).  Exact for every shape check_shape accepts.
inline std::int64_t numel(const Shape& s) {
  std::int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

/// "[128,256]"; "[]" for a scalar.
std::string to_string(const Shape& s);

/// Element type of a tensor.
enum class DType : std::uint8_t { f32, f64 };

template <class T>
concept Element = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <Element T>
inline constexpr DType dtype_of = std::is_same_v<T, float> ? DType::f32 : DType::f64;

inline const char* to_string(DType d) { return d == DType::f32 ? "f32" : "f64"; }
inline std::size_t size_of(DType d) { return d == DType::f32 ? 4 : 8; }

/// "f32[128,256]".
inline std::string describe(DType d, const Shape& s) { return to_string(d) + to_string(s); }

/// Calls f.template operator()<T>() with T = float or double according to d.
template <class F>
decltype(auto) dispatch(DType d, F&& f) {
  if (d == DType::f32) return std::forward<F>(f).template operator()<float>();
  return std::forward<F>(f).template operator()<double>();
}

/// Checks that a shape is valid (rank <= 4 is guaranteed by the type): every dimension >= 0 and at
/// most max_elements elements, counted without overflow (the product of the non-zero dimensions is
/// capped too, so [0, 2^62] is refused like [1, 2^62]).  Throws ShapeError naming `what`.
void check_shape(const Shape& s, const char* what);

/// Builds a Shape from any list of integers, throwing ShapeError if the rank exceeds 4.
template <class Range>
Shape make_shape(const Range& dims, const char* what = "shape") {
  Shape s;
  for (auto d : dims) {
    if (s.size() == max_rank)
      throw ShapeError(fmt::format("{}: rank exceeds {} (at most 4 dimensions are supported)", what, max_rank));
    s.push_back(static_cast<std::int64_t>(d));
  }
  check_shape(s, what);
  return s;
}
inline Shape make_shape(std::initializer_list<std::int64_t> dims, const char* what = "shape") {
  return make_shape<std::initializer_list<std::int64_t>>(dims, what);
}

/// Throws AllocationError: "<op>: cannot allocate <dtype>[shape] (<bytes> bytes): out of memory".
[[noreturn]] void throw_allocation_failed(const char* op, DType dtype, const Shape& shape);

/// Row-major strides (in elements) of a shape.
Shape strides_of(const Shape& s);

/// A read-only, type-erased window on a dense value: a tensor's value or adjoint.
/// It does not own its elements; it is valid as long as what it was taken from.
class View {
 public:
  View() = default;
  View(DType dtype, Shape shape, const void* data) : dtype_(dtype), shape_(std::move(shape)), data_(data) {}

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::size_t rank() const { return shape_.size(); }
  std::int64_t size() const { return numel(shape_); }
  const void* data() const { return data_; }
  bool empty() const { return data_ == nullptr; }

  /// The elements as a span of T; throws DTypeError if T is not the view's element type.
  template <Element T>
  std::span<const T> as() const {
    if (dtype_of<T> != dtype_)
      throw DTypeError(fmt::format("View::as<{}>: the value is {}", to_string(dtype_of<T>), describe(dtype_, shape_)));
    return {static_cast<const T*>(data_), static_cast<std::size_t>(size())};
  }

  /// Element at flat (row-major) position i, converted to double; bounds-checked.
  double flat(std::int64_t i) const;

  /// Element at a multi-index, converted to double; bounds-checked.
  double at(std::initializer_list<std::int64_t> index) const;

 private:
  DType dtype_ = DType::f64;
  Shape shape_;
  const void* data_ = nullptr;
};

/// "[1,2]": the multi-index of flat (row-major) position `flat` in shape s ("" for rank 0).
std::string index_text(const Shape& s, std::int64_t flat);

/// Flat offset of a multi-index; throws IndexError naming `what` if out of range or of the wrong rank.
std::int64_t flat_index(const Shape& shape, std::initializer_list<std::int64_t> index, const char* what);

/// A dense owning array of float or double, rank 0..4, row-major.
template <Element T>
class Array {
 public:
  using value_type = T;

  Array() : Array(Shape{}) {}
  /// Zero-filled array of the given shape.
  explicit Array(const Shape& shape) : shape_(shape) {
    check_shape(shape_, "Array");
    allocate();
    std::fill_n(data_.get(), size(), T{});
  }
  Array(std::initializer_list<std::int64_t> shape) : Array(make_shape(shape, "Array")) {}
  /// Array of the given shape filled from `values` (which must have exactly numel(shape) elements).
  Array(const Shape& shape, std::span<const T> values) : shape_(shape) {
    check_shape(shape_, "Array");
    if (static_cast<std::int64_t>(values.size()) != numel(shape_))
      throw ShapeError(fmt::format("Array: {} values given for shape {} ({} elements)", values.size(),
                                   to_string(shape_), numel(shape_)));
    allocate();
    std::copy(values.begin(), values.end(), data_.get());
  }
  Array(const Shape& shape, std::initializer_list<T> values)
      : Array(shape, std::span<const T>(values.begin(), values.size())) {}

  static Array full(const Shape& shape, T v) {
    Array a(shape);
    std::fill_n(a.data(), a.size(), v);
    return a;
  }
  static Array scalar(T v) { return full(Shape{}, v); }

  Array(const Array& o) : shape_(o.shape_) {
    allocate();
    std::copy_n(o.data(), size(), data_.get());
  }
  Array(Array&& o) noexcept
      : shape_(std::move(o.shape_)), data_(std::move(o.data_)), version_(std::exchange(o.version_, nullptr)) {}
  Array& operator=(const Array& o) {
    if (this != &o) *this = Array(o);
    return *this;
  }
  Array& operator=(Array&& o) noexcept {
    shape_ = std::move(o.shape_);
    data_ = std::move(o.data_);
    version_ = std::exchange(o.version_, nullptr);
    return *this;
  }

  const Shape& shape() const { return shape_; }
  std::size_t rank() const { return shape_.size(); }
  std::int64_t size() const { return numel(shape_); }
  std::int64_t dim(std::size_t k) const { return shape_.at(k); }
  static constexpr DType dtype() { return dtype_of<T>; }

  /// Mutable access to the elements: bumps the version stamp (see the top of this file).
  T* data() {
    touch();
    return data_.get();
  }
  const T* data() const { return data_.get(); }
  std::span<T> values() { return {data(), static_cast<std::size_t>(size())}; }
  std::span<const T> values() const { return {data(), static_cast<std::size_t>(size())}; }

  T& operator[](std::int64_t i) {
    touch();
    return data_[i];
  }
  const T& operator[](std::int64_t i) const { return data_[i]; }

  /// Bounds-checked element access by multi-index: a(i, j).
  template <class... I>
  T& operator()(I... i) {
    touch();
    return data_[flat_index(shape_, {static_cast<std::int64_t>(i)...}, "Array")];
  }
  template <class... I>
  const T& operator()(I... i) const {
    return data_[flat_index(shape_, {static_cast<std::int64_t>(i)...}, "Array")];
  }

  View view() const { return View(dtype(), shape_, data()); }

  /// The same elements under another shape with the same number of elements.
  Array reshaped(const Shape& s) const {
    check_shape(s, "Array::reshaped");
    if (numel(s) != size())
      throw ShapeError(fmt::format("Array::reshaped: cannot view {} as {}", to_string(shape_), to_string(s)));
    Array r(*this);
    r.shape_ = s;
    return r;
  }

  /// The buffer, shared: a tape leaf keeps it alive without copying.
  const std::shared_ptr<T[]>& buffer() const { return data_; }

  /// The buffer's version stamp: changes whenever the elements may have been written.
  std::uint64_t version() const { return version_ ? *version_ : 0; }
  /// Where the stamp lives (valid while the buffer is): a tape leaf compares it at sweep time.
  const std::uint64_t* version_stamp() const { return version_; }
  /// Marks the elements as changed (for writes through a pointer obtained earlier).
  void touch() {
    if (version_) ++*version_;
  }

 private:
  /// The elements and their version stamp in one allocation.
  struct Block {
    explicit Block(std::size_t n) : elements(new T[n]) {}
    std::uint64_t version = 0;
    std::unique_ptr<T[]> elements;
  };
  void allocate() {
    std::shared_ptr<Block> block;
    try {
      block = std::make_shared<Block>(static_cast<std::size_t>(std::max<std::int64_t>(size(), 1)));
    } catch (const std::bad_alloc&) {
      throw_allocation_failed("Array", dtype(), shape_);
    }
    version_ = &block->version;
    data_ = std::shared_ptr<T[]>(block, block->elements.get());
  }

  Shape shape_;
  std::shared_ptr<T[]> data_;
  std::uint64_t* version_ = nullptr;
};

/// Copies a view into a new Array<T> (converting the element type if needed).
template <Element T>
Array<T> to_array(const View& v) {
  Array<T> a(v.shape());
  dispatch(v.dtype(), [&]<class S>() {
    const S* src = static_cast<const S*>(v.data());
    for (std::int64_t i = 0; i < a.size(); ++i) a[i] = static_cast<T>(src[i]);
  });
  return a;
}

}  // namespace ad
