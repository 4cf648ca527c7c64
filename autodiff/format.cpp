#include "autodiff/format.hpp"

#include <algorithm>
#include <vector>

#include "autodiff/error.hpp"

namespace ad {

namespace {

/// The indices of one dimension that are printed; -1 marks the "..." between the two ends.
std::vector<std::int64_t> shown_indices(std::int64_t n, bool elide, std::int64_t edge) {
  std::vector<std::int64_t> idx;
  if (elide && n > 2 * edge) {
    for (std::int64_t i = 0; i < edge; ++i) idx.push_back(i);
    idx.push_back(-1);
    for (std::int64_t i = n - edge; i < n; ++i) idx.push_back(i);
  } else {
    for (std::int64_t i = 0; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

class Printer {
 public:
  Printer(const View& v, const ValueFormat& o) : v_(v), o_(o), strides_(strides_of(v.shape())) {
    const bool elide = v.size() > o.threshold;
    for (std::int64_t d : v.shape()) shown_.push_back(shown_indices(d, elide, std::max<std::int64_t>(o.edge_items, 1)));
    const std::string spec = "{:" + o.element + "}";
    try {
      collect(0, 0, spec);
    } catch (const fmt::format_error& e) {
      throw InvalidArgument(fmt::format("format_value: \"{}\" is not a format for a {} element ({})", o.element,
                                        to_string(v.dtype()), e.what()));
    }
    for (const auto& s : text_) width_ = std::max(width_, s.size());
  }

  /// The nested brackets of dimension `dim` starting at element `offset`; `column` is where its
  /// opening bracket stands, so that continuation lines line up under it.
  void render(std::string& out, std::size_t dim, std::int64_t offset, std::size_t column) {
    if (dim == v_.rank()) {  // a scalar
      out += text_[next_++];
      return;
    }
    out += '[';
    const auto& idx = shown_[dim];
    const bool last = dim + 1 == v_.rank();
    std::size_t line = column + 1;
    for (std::size_t k = 0; k < idx.size(); ++k) {
      if (k) {
        out += ',';
        ++line;
        if (last) {
          // room for a space, the element and the ',' or ']' after it
          if (line + 1 + width_ + 1 > static_cast<std::size_t>(o_.line_width)) {
            out += '\n';
            out.append(column + 1, ' ');
            line = column + 1;
          } else {
            out += ' ';
            ++line;
          }
        } else {
          out.append(v_.rank() - dim - 1, '\n');  // a blank line between blocks of rank ≥ 2
          out.append(column + 1, ' ');
        }
      }
      if (idx[k] < 0) {
        const std::string dots = last ? fmt::format("{:>{}}", "...", width_) : "...";
        out += dots;
        line += dots.size();
        continue;
      }
      if (last) {
        const std::string& s = text_[next_++];
        out.append(width_ - s.size(), ' ');
        out += s;
        line += width_;
      } else {
        render(out, dim + 1, offset + idx[k] * strides_[dim], column + 1);
      }
    }
    out += ']';
  }

 private:
  /// The text of every printed element, in printing order.
  void collect(std::size_t dim, std::int64_t offset, const std::string& spec) {
    if (dim == v_.rank()) {
      text_.push_back(fmt::format(fmt::runtime(spec), v_.flat(offset)));
      return;
    }
    for (std::int64_t i : shown_[dim])
      if (i >= 0) collect(dim + 1, offset + i * strides_[dim], spec);
  }

  const View& v_;
  const ValueFormat& o_;
  Shape strides_;
  std::vector<std::vector<std::int64_t>> shown_;
  std::vector<std::string> text_;
  std::size_t width_ = 0;
  std::size_t next_ = 0;
};

}  // namespace

std::string format_value(const View& v, const ValueFormat& options) {
  if (v.empty()) return "<empty>";
  // Rank 0 and 1 on the header's line; a matrix or more under it, so that its rows line up
  // whatever text precedes the value on the first line.
  std::string out = describe(v.dtype(), v.shape());
  const bool below = v.rank() >= 2 && v.size() > 0;
  out += below ? '\n' : ' ';
  Printer p(v, options);
  p.render(out, 0, 0, below ? 0 : out.size());
  return out;
}

}  // namespace ad
