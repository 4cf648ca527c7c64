// The tape explorer page: the tape, its reverse sweep and its Graphviz layout as JSON inside one
// HTML file, with the page's script (autodiff/explorer.js) and markup (autodiff/explorer.html),
// both compiled in from the source tree.
//
// Only the public inspection interface is used: the entries' ops, names, shapes and values from the
// tape, the sweep from step_through, the layout from write_picture.
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <string_view>
#include <system_error>

#include "autodiff/explorer.hpp"
#include "explorer_assets.hpp"  // generated: explorer_assets::html, explorer_assets::script

namespace ad {

namespace {

// ---- JSON -------------------------------------------------------------------------------------------
// A small writer rather than a JSON library: the data must also be safe inside an HTML <script>
// element ('<' is always written as \u003c, so no "</script>" or "<!--" can appear), and non-finite
// numbers, which JSON has no literal for, are written as the strings "NaN", "Infinity", "-Infinity"
// (the page's script turns them back into numbers).

/// Length of the valid UTF-8 sequence at s[i], or 0 if the bytes there are not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  return n;
}

class Json {
 public:
  std::string& text() { return out_; }

  /// A string: quotes, backslashes and control characters escaped, '<' as \u003c, bytes that are
  /// not UTF-8 as U+FFFD.
  Json& str(std::string_view s) {
    comma();
    out_ += '"';
    for (std::size_t i = 0; i < s.size();) {
      const char c = s[i];
      const auto u = static_cast<unsigned char>(c);
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
        ++i;
      } else if (c == '\n') {
        out_ += "\\n";
        ++i;
      } else if (u < 0x20 || c == '<') {
        fmt::format_to(std::back_inserter(out_), "\\u{:04x}", u);
        ++i;
      } else if (const std::size_t n = utf8_sequence(s, i)) {
        out_.append(s, i, n);
        i += n;
      } else {
        out_ += "\\ufffd";
        ++i;
      }
    }
    out_ += '"';
    return *this;
  }
  /// A number in the shortest form that reads back to the same value of its own type.
  template <class T>
  Json& num(T x) {
    comma();
    if (std::isnan(x)) out_ += "\"NaN\"";
    else if (std::isinf(x)) out_ += x > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    else fmt::format_to(std::back_inserter(out_), "{}", x);
    return *this;
  }
  Json& boolean(bool b) {
    comma();
    out_ += b ? "true" : "false";
    return *this;
  }
  Json& null() {
    comma();
    out_ += "null";
    return *this;
  }
  Json& key(std::string_view k) {
    str(k);
    out_ += ':';
    first_ = true;
    return *this;
  }
  Json& open(char c) {
    comma();
    out_ += c;
    first_ = true;
    return *this;
  }
  Json& close(char c) {
    out_ += c;
    first_ = false;
    return *this;
  }

 private:
  void comma() {
    if (!first_) out_ += ',';
    first_ = false;
  }
  std::string out_;
  bool first_ = true;
};

/// A tensor (or scalar) for the page: element count, statistics over the finite elements, counts
/// of NaN and infinite elements, and the elements themselves when there are at most `max`
/// (otherwise the first few).  Elements are written in the precision of `dtype`.
template <class Get>
void tensor_json(Json& j, DType dtype, std::int64_t n, Get get, std::int64_t max) {
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0.0;
  std::int64_t nan = 0, inf = 0, finite = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    const double v = get(k);
    if (std::isnan(v)) ++nan;
    else if (std::isinf(v)) ++inf;
    else {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      sum += v;
      ++finite;
    }
  }
  j.open('{').key("n").num(n).key("nan").num(nan).key("inf").num(inf);
  if (finite > 0) j.key("min").num(lo).key("max").num(hi).key("mean").num(sum / static_cast<double>(finite));
  const bool all = n <= max;
  j.key(all ? "els" : "head").open('[');
  for (std::int64_t k = 0, shown = all ? n : std::min<std::int64_t>(n, 6); k < shown; ++k) {
    if (dtype == DType::f32) j.num(static_cast<float>(get(k)));
    else j.num(get(k));
  }
  j.close(']').close('}');
}

void view_json(Json& j, const View& v, std::int64_t max) {
  dispatch(v.dtype(), [&]<class T>() {
    const T* p = static_cast<const T*>(v.data());
    tensor_json(j, v.dtype(), v.size(), [p](std::int64_t k) { return static_cast<double>(p[k]); }, max);
  });
}

void shape_json(Json& j, const Shape& s) {
  j.open('[');
  for (auto d : s) j.num(d);
  j.close(']');
}

std::string op_of(const Tape& t, std::uint32_t e) {
  const Node* n = t.node(e);
  return n ? n->op->name : op_name(t.op(e));
}

/// "&amp;" and friends, for text placed in HTML.
std::string html_escape(std::string_view s) {
  std::string r;
  for (char c : s) {
    switch (c) {
      case '&': r += "&amp;"; break;
      case '<': r += "&lt;"; break;
      case '>': r += "&gt;"; break;
      case '"': r += "&quot;"; break;
      case '\'': r += "&#39;"; break;
      default: r += c;
    }
  }
  return r;
}

/// A fresh private directory under the system's temporary directory, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "deltagrad-explorer-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw PictureError("write_explorer: cannot create a temporary directory under " +
                                                       std::filesystem::temp_directory_path().string());
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

struct Layout {
  std::string svg{};   // the <svg> element, empty without a graph
  std::string note{};  // why there is no graph
};

/// The Graphviz layout of the whole tape as an <svg> element (prolog and doctype dropped).  Node
/// n<e> is entry e: Graphviz writes the node's name as the <title> of its group.
Layout layout(const Tape& t, const ExplorerOptions& opt) {
  Layout r;
  if (!opt.graph) {
    r.note = "the graph was turned off when this page was written (ExplorerOptions::graph)";
    return r;
  }
  if (t.entries() > opt.max_graph) {
    r.note = fmt::format("the tape has {} entries, more than the {} laid out as a graph (ExplorerOptions::max_graph)",
                         t.entries(), opt.max_graph);
    return r;
  }
  if (find_dot().empty()) {
    r.note = "Graphviz's dot was not on PATH when this page was written "
             "(apt-get install graphviz, then write it again)";
    return r;
  }
  try {
    TempDir dir;
    const Picture pic = write_picture(t, dir.path() / "tape.svg", {.max_render = opt.max_graph});
    if (!pic.rendered) {
      r.note = pic.message;
      return r;
    }
    std::ifstream f(pic.svg, std::ios::binary);
    std::string svg((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    const auto start = svg.find("<svg");
    if (!f || start == std::string::npos) {
      r.note = "Graphviz's output " + pic.svg.string() + " has no <svg> element";
      return r;
    }
    r.svg = svg.substr(start);
  } catch (const PictureError& e) {
    r.note = e.what();
  }
  return r;
}

Explorer write(Tape& t, StepLog log, const std::filesystem::path& path, const ExplorerOptions& opt) {
  if (path.empty() || !path.has_filename())
    throw PictureError(fmt::format("write_explorer: \"{}\" does not name a file", path.string()));
  const Gradients& g = log.gradients();
  const std::uint32_t output = log.output();
  const std::int64_t max = std::max<std::int64_t>(opt.max_elements, 0);
  const Layout lay = layout(t, opt);
  const auto groups = entry_groups(t);

  Json j;
  j.open('{');
  j.key("title").str(opt.title.empty() ? "deltagrad tape explorer" : opt.title);
  j.key("output").num(output);
  j.key("maxElements").num(max);
  j.key("graphNote").str(lay.note);

  // Every entry: what it is, its value, and its final adjoint.
  j.key("entries").open('[');
  for (std::uint32_t e = 1; e < t.size(); ++e) {
    const Shape shape = t.shape_of_entry(e);
    j.open('{').key("i").num(e).key("name").str(t.name_of(e)).key("op").str(op_of(t, e));
    j.key("line").str(entry_line(t, e, {.values = false, .adjoints = false}));
    j.key("dtype").str(to_string(t.dtype_of_entry(e))).key("shape");
    shape_json(j, shape);
    j.key("group").str(groups[e]).key("grad").boolean(t.requires_grad(e));
    j.key("args").open('[');
    for (auto a : t.args(e)) j.num(a);
    j.close(']');
    j.key("value");
    view_json(j, t.value_view(e), max);
    j.key("adj");
    if (e <= output && t.requires_grad(e) && g.reached(e)) view_json(j, g.adjoint(e), max);
    else j.null();
    j.close('}');
  }
  j.close(']');

  // The sweep: the seed, then every step where something flowed, with what it added to each
  // argument and that argument's adjoint afterwards.  A scalar argument's adjoint is kept here by
  // adding the amounts in sweep order, as the tape does.
  std::vector<double> scalar_adj(t.size(), 0.0);
  j.key("steps").open('[');
  {
    const Shape shape = t.shape_of_entry(output);
    const DType dt = t.dtype_of_entry(output);
    const auto one = [](std::int64_t) { return 1.0; };
    j.open('{').key("e").num(0).key("c").open('[').open('{').key("to").num(output);
    j.key("after");
    tensor_json(j, dt, numel(shape), one, max);
    j.key("added");
    tensor_json(j, dt, numel(shape), one, max);
    j.close('}').close(']').close('}');
    scalar_adj[output] = 1.0;
  }
  std::size_t steps = 0;
  for (const Step& st : log.steps()) {
    if (st.skipped) continue;
    ++steps;
    j.open('{').key("e").num(st.entry).key("c").open('[');
    for (const Contribution& c : st.contributions) {
      const DType dt = t.dtype_of_entry(c.to);
      j.open('{').key("to").num(c.to);
      if (!st.rule && !std::isnan(c.partial)) j.key("partial").num(c.partial);
      if (c.tensor) {
        const double* after = c.after.data();
        const double* before = c.before.data();
        j.key("after");
        tensor_json(j, dt, c.after.size(), [after](std::int64_t k) { return after[k]; }, max);
        j.key("added");
        tensor_json(j, dt, c.after.size(), [after, before](std::int64_t k) { return after[k] - before[k]; }, max);
      } else {
        scalar_adj[c.to] += c.amount;
        const double now = scalar_adj[c.to], amount = c.amount;
        j.key("after");
        tensor_json(j, dt, 1, [now](std::int64_t) { return now; }, max);
        j.key("added");
        tensor_json(j, dt, 1, [amount](std::int64_t) { return amount; }, max);
      }
      j.close('}');
    }
    j.close(']').close('}');
  }
  j.close(']');
  j.key("graph");
  if (lay.svg.empty()) j.null();
  else j.str(lay.svg);
  j.close('}');

  // The page: the markup with the title, the data and the script put in.
  std::string_view html = explorer_assets::html;
  const std::string title = html_escape(opt.title.empty() ? "deltagrad tape explorer" : opt.title);
  std::string page;
  page.reserve(html.size() + j.text().size() + sizeof(explorer_assets::script));
  const auto put = [&](std::string_view marker, std::string_view with) {
    const auto at = html.find(marker);
    if (at == std::string_view::npos) throw PictureError(fmt::format("write_explorer: the page has no {}", marker));
    page.append(html.substr(0, at));
    page.append(with);
    html.remove_prefix(at + marker.size());
  };
  put("{{title}}", title);
  put("{{data}}", j.text());
  put("{{script}}", explorer_assets::script);
  page.append(html);

  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw PictureError(fmt::format("write_explorer: cannot open {} for writing", path.string()));
    f << page;
    f.close();
    if (!f) throw PictureError(fmt::format("write_explorer: writing {} failed", path.string()));
  }
  Explorer r;
  r.path = path;
  r.graph = !lay.svg.empty();
  r.entries = t.entries();
  r.steps = steps;
  r.bytes = page.size();
  r.message = fmt::format("wrote {} ({} entries, {} backward steps, {:.1f} kB){}", path.string(), r.entries, steps,
                          static_cast<double>(r.bytes) / 1e3, r.graph ? "" : "; listing only: " + lay.note);
  return r;
}

}  // namespace

Explorer write_explorer(Tape& tape, const Tensor& loss, const std::filesystem::path& path, const ExplorerOptions& opt) {
  return write(tape, step_through(tape, loss), path, opt);
}

Explorer write_explorer(Tape& tape, const Var& loss, const std::filesystem::path& path, const ExplorerOptions& opt) {
  return write(tape, step_through(tape, loss), path, opt);
}

}  // namespace ad
