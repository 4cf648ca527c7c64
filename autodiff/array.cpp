#include "autodiff/array.hpp"

namespace ad {

std::string to_string(const Shape& s) {
  std::string r = "[";
  for (std::size_t k = 0; k < s.size(); ++k) {
    if (k) r += ',';
    r += std::to_string(s[k]);
  }
  return r + "]";
}

void check_shape(const Shape& s, const char* what) {
  std::int64_t nonzero = 1;
  for (auto d : s) {
    if (d < 0) throw ShapeError(fmt::format("{}: negative dimension in shape {}", what, to_string(s)));
    if (d == 0) continue;
    if (nonzero > max_elements / d)
      throw ShapeError(fmt::format("{}: shape {} has more than {} (2^48) elements", what, to_string(s), max_elements));
    nonzero *= d;
  }
}

void throw_allocation_failed(const char* op, DType dtype, const Shape& shape) {
  const double bytes = static_cast<double>(numel(shape)) * static_cast<double>(size_of(dtype));
  throw AllocationError(fmt::format("{}: cannot allocate {} ({:.3g} bytes): out of memory", op, describe(dtype, shape),
                                    bytes));
}

Shape strides_of(const Shape& s) {
  Shape st(s.size());
  std::int64_t stride = 1;
  for (std::size_t k = s.size(); k-- > 0;) {
    st[k] = stride;
    stride *= s[k];
  }
  return st;
}

std::int64_t flat_index(const Shape& shape, std::initializer_list<std::int64_t> index, const char* what) {
  if (index.size() != shape.size())
    throw IndexError(fmt::format("{}: {} indices given for a tensor of shape {}", what, index.size(), to_string(shape)));
  std::int64_t flat = 0;
  std::size_t k = 0;
  for (auto i : index) {
    if (i < 0 || i >= shape[k])
      throw IndexError(fmt::format("{}: index {} out of range for dimension {} of shape {}", what, i, k, to_string(shape)));
    flat = flat * shape[k] + i;
    ++k;
  }
  return flat;
}

double View::flat(std::int64_t i) const {
  if (i < 0 || i >= size())
    throw IndexError(fmt::format("View::flat: index {} out of range for {}", i, describe(dtype_, shape_)));
  return dispatch(dtype_, [&]<class T>() { return static_cast<double>(static_cast<const T*>(data_)[i]); });
}

double View::at(std::initializer_list<std::int64_t> index) const { return flat(flat_index(shape_, index, "View::at")); }

std::string index_text(const Shape& s, std::int64_t flat) {
  if (s.empty()) return "";
  Shape idx(s.size());
  for (std::size_t k = s.size(); k-- > 0;) {
    idx[k] = s[k] ? flat % s[k] : 0;
    flat = s[k] ? flat / s[k] : 0;
  }
  return to_string(idx);
}

}  // namespace ad
