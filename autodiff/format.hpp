// Printing tensor values with fmt: ad::Array, ad::View and ad::Tensor.
//
//   fmt::print("{}\n", W);            // f32[2,3]
//                                     // [[0.5,   -1,  2],
//                                     //  [  3, 0.25, -4]]
//   fmt::print("{:.3f}\n", g[w]);     // the spec after ':' formats each element, as for a double
//
// The output starts with the dtype and the shape ("f64[2,3]"; "f64[]" for a scalar), then the values
// nested in brackets one level per dimension, rows aligned under each other, as NumPy prints arrays:
// on the same line for a scalar or a vector, from the next line on for a matrix or more.
// A value with more than ValueFormat::threshold elements is elided: only the first and last
// ValueFormat::edge_items indices of each longer dimension are shown, with "..." between them.
// Elements default to the "g" presentation (6 significant digits); any spec fmt accepts for a double
// ("{:.3e}", "{:+.4f}") applies to every element instead.  A Tensor prints its recorded value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "autodiff/array.hpp"
#include "autodiff/tensor.hpp"

namespace ad {

struct ValueFormat {
  std::int64_t threshold = 1000;  ///< more elements than this: elide
  std::int64_t edge_items = 3;    ///< indices kept at each end of an elided dimension
  int line_width = 100;           ///< a row of the last dimension wraps after this many characters
  std::string element = "g";      ///< fmt spec (without braces or ':') for one element, as a double
};

/// The value as described above: "f32[2] [1, 2]", "f32[2,2]\n[[1, 2],\n [3, 4]]".  An empty View (no data)
/// prints "<empty>".  Throws ad::InvalidArgument if `element` is not a valid spec for a double.
std::string format_value(const View& v, const ValueFormat& options = {});

namespace detail {
/// Shared by the formatters below: keeps the spec between ':' and '}' as the element format.
class ValueFormatterBase {
 public:
  constexpr auto parse(fmt::format_parse_context& ctx) -> fmt::format_parse_context::iterator {
    auto it = ctx.begin();
    while (it != ctx.end() && *it != '}') {
      if (length_ == sizeof spec_) throw fmt::format_error("tensor format spec too long");
      spec_[length_++] = *it++;
    }
    return it;
  }

 protected:
  auto write(const View& v, fmt::format_context& ctx) const -> fmt::format_context::iterator {
    ValueFormat options;
    if (length_) options.element.assign(spec_, length_);
    const std::string s = format_value(v, options);
    return std::copy(s.begin(), s.end(), ctx.out());
  }

 private:
  char spec_[32] = {};
  std::size_t length_ = 0;
};
}  // namespace detail

}  // namespace ad

template <>
struct fmt::formatter<ad::View> : ad::detail::ValueFormatterBase {
  auto format(const ad::View& v, fmt::format_context& ctx) const { return write(v, ctx); }
};

template <ad::Element T>
struct fmt::formatter<ad::Array<T>> : ad::detail::ValueFormatterBase {
  auto format(const ad::Array<T>& a, fmt::format_context& ctx) const { return write(a.view(), ctx); }
};

template <>
struct fmt::formatter<ad::Tensor> : ad::detail::ValueFormatterBase {
  auto format(const ad::Tensor& t, fmt::format_context& ctx) const { return write(t.value(), ctx); }
};
