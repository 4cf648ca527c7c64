// The tape listing, entry selection and the summary.
#include "autodiff/inspect.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "autodiff/inspect_detail.hpp"

namespace ad {

namespace inspect_detail {

std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  return n;
}

std::string label(const Tape& t, std::uint32_t entry) {
  auto n = t.name_of(entry);
  return n.empty() ? fmt::format("#{}", entry) : std::string(n);
}

std::string index_label(const Tape& t, std::uint32_t entry) {
  auto n = t.name_of(entry);
  return n.empty() ? fmt::format("#{}", entry) : fmt::format("#{} {}", entry, n);
}

std::string op_text(const Tape& t, std::uint32_t entry) {
  const Node* n = t.node(entry);
  return n ? std::string(n->op->name) : std::string(op_name(t.op(entry)));
}

// Each constant is recovered from what the entry stores: its value v, its argument's value a and
// the local partial p.  x + c: c = v - a; x - c: c = a - v; c - x: c = v + a; x * c: c = p;
// x / c: c = 1/p; c / x: c = v a; x^c: p = c a^(c-1), so c = p a / v; c^x: p = v ln c, so c = e^(p/v).
std::optional<double> scalar_constant(const Tape& t, std::uint32_t entry) {
  const Op op = t.op(entry);
  if (op == Op::rule || op == Op::leaf || op == Op::sink) return std::nullopt;
  const auto args = t.args(entry);
  if (args.size() != 1) return std::nullopt;
  const double v = t.scalar_value(entry), a = t.scalar_value(args[0]), p = t.partial(entry, 0);
  double c = std::numeric_limits<double>::quiet_NaN();
  switch (op) {
    case Op::add_c: c = v - a; break;
    case Op::sub_c: c = a - v; break;
    case Op::rsub_c: c = v + a; break;
    case Op::mul_c: c = p; break;
    case Op::div_c: c = 1.0 / p; break;
    case Op::rdiv_c: c = v * a; break;
    case Op::pow_c:
      if (v != 0.0 && std::isfinite(v)) c = p * a / v;
      break;
    case Op::rpow_c:
      if (v != 0.0 && std::isfinite(v)) c = std::exp(p / v);
      break;
    default: return std::nullopt;
  }
  return c;
}

namespace {
/// The op's non-tensor arguments as its descriptor shows them, or empty.
ParamText params_of(const Tape& t, const Node& n) { return n.op->params ? n.op->params(t, n) : ParamText{}; }
}  // namespace

std::string operand_text(const Tape& t, std::uint32_t a) {
  const Node* n = t.node(a);
  if (t.name_of(a).empty() && n && n->op->element_of_argument && n->args.size() == 1)
    return label(t, n->args[0]) + params_of(t, *n).text;
  return label(t, a);
}

std::string args_text(const Tape& t, std::uint32_t entry) {
  const auto args = t.args(entry);
  if (args.empty()) return {};
  const Node* n = t.node(entry);
  std::string r;
  auto add = [&r](const std::string& s) { r += (r.empty() ? "" : ", ") + s; };
  if (n) {
    const ParamText p = params_of(t, *n);
    const bool show = !p.text.empty() && !n->op->element_of_argument;
    if (show && p.first) add(p.text);
    for (auto a : args) add(operand_text(t, a));
    if (n->op->element_of_argument) add(p.text);
    else if (show && !p.first) add(p.text);
    return "(" + r + ")";
  }
  const Op op = t.op(entry);
  const auto c = scalar_constant(t, entry);
  const bool constant_first = op == Op::rsub_c || op == Op::rdiv_c || op == Op::rpow_c;
  const bool has_constant = args.size() == 1 && op >= Op::add_c && op <= Op::rpow_c && op != Op::pow;
  const std::string c_text = c && std::isfinite(*c) ? fmt::format("{:.15g}", *c) : std::string("?");
  if (has_constant && constant_first) add(c_text);
  for (auto a : args) add(operand_text(t, a));
  if (has_constant && !constant_first) add(c_text);
  return "(" + r + ")";
}

std::optional<View> adjoint_of(const Tape& t, const GradStore& g, std::uint32_t entry) {
  if (entry >= g.adj.size()) return std::nullopt;
  const Node* n = t.node(entry);
  if (n && !n->scalar_out) {
    const std::uint32_t k = t.node_index(entry);
    if (k >= g.tadj.size() || g.tadj[k] == nullptr) return std::nullopt;
    return View(n->dtype, n->shape, g.tadj[k]);
  }
  return View(DType::f64, Shape{}, &g.adj[entry]);
}

void check_store(const Tape& t, const GradStore& g, const char* what) {
  if (g.tape != &t) throw ForeignHandleError(fmt::format("{}: the gradients belong to another tape", what));
  if (g.generation != t.generation())
    throw StaleHandleError(fmt::format("{}: the gradients were taken before tape.clear()", what));
}

std::int64_t first_non_finite(const View& v) {
  return dispatch(v.dtype(), [&]<class T>() -> std::int64_t {
    const T* p = static_cast<const T*>(v.data());
    for (std::int64_t i = 0, n = v.size(); i < n; ++i)
      if (!std::isfinite(p[i])) return i;
    return -1;
  });
}

// NaN is printed as "nan" whatever its sign bit (log(-1) gives -nan on x86).
std::string element_text(const View& v, std::int64_t i) {
  return dispatch(v.dtype(), [&]<class T>() {
    const T x = static_cast<const T*>(v.data())[i];
    return std::isnan(x) ? std::string("nan") : fmt::format("{}", x);
  });
}

namespace {

/// Every element, nested in brackets like NumPy, one innermost row a line.
void full_rows(const View& v, std::size_t dim, std::int64_t offset, const std::string& indent, std::string& out,
               std::string& line) {
  const Shape& s = v.shape();
  if (dim + 1 == s.size()) {
    line += "[";
    for (std::int64_t j = 0; j < s[dim]; ++j) line += (j ? ", " : "") + element_text(v, offset + j);
    line += "]";
    return;
  }
  std::int64_t stride = 1;
  for (std::size_t k = dim + 1; k < s.size(); ++k) stride *= s[k];
  line += "[";
  for (std::int64_t j = 0; j < s[dim]; ++j) {
    if (j) {
      line += ",";
      out += line + "\n";
      line = indent + std::string(dim + 1, ' ');
    }
    full_rows(v, dim + 1, offset + j * stride, indent, out, line);
  }
  line += "]";
}

std::string full_block(const View& v, const std::string& indent) {
  if (v.rank() == 0) return indent + element_text(v, 0) + "\n";
  std::string out, line = indent;
  full_rows(v, 0, 0, indent, out, line);
  return out + line + "\n";
}

struct LineParts {
  std::string index, name, op, args, type, value, adj;
};

}  // namespace

std::vector<std::string> lines(const Tape& t, std::span<const std::uint32_t> entries, const GradStore* g,
                               const ListOptions& opt) {
  std::vector<LineParts> parts;
  parts.reserve(entries.size());
  for (auto e : entries) {
    LineParts p;
    p.index = fmt::format("#{}", e);
    p.name = std::string(t.name_of(e));
    p.op = op_text(t, e);
    p.args = args_text(t, e);
    p.type = describe(t.dtype_of_entry(e), t.shape_of_entry(e));
    if (opt.values) p.value = "= " + summarise(t.value_view(e), opt.elements);
    if (g && opt.adjoints) {
      if (e >= g->adj.size()) p.adj = "adj = none (recorded after the gradient)";
      else if (!t.requires_grad(e)) p.adj = "adj = none (no gradient)";
      else if (auto a = adjoint_of(t, *g, e)) p.adj = "adj = " + summarise(*a, opt.elements);
      else p.adj = "adj = 0";
    }
    parts.push_back(std::move(p));
  }
  std::size_t w[6] = {};
  for (const auto& p : parts) {
    w[0] = std::max(w[0], p.index.size());
    w[1] = std::max(w[1], p.name.size());
    w[2] = std::max(w[2], p.op.size());
    w[3] = std::max(w[3], std::min<std::size_t>(p.args.size(), 40));
    w[4] = std::max(w[4], p.type.size());
    w[5] = std::max(w[5], std::min<std::size_t>(p.value.size(), 64));
  }
  std::vector<std::string> r;
  r.reserve(parts.size());
  for (std::size_t k = 0; k < parts.size(); ++k) {
    const auto& p = parts[k];
    std::string line = fmt::format("{:<{}}  {:<{}}  {:<{}} {:<{}}  {:<{}}", p.index, w[0], p.name, w[1], p.op, w[2],
                                   p.args, w[3], p.type, w[4]);
    if (!p.value.empty()) line += fmt::format("  {:<{}}", p.value, p.adj.empty() ? 0 : w[5]);
    if (!p.adj.empty()) line += "  " + p.adj;
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (opt.full && t.shape_of_entry(entries[k]).size() > 0) {
      const std::string indent(w[0] + 4, ' ');
      if (opt.values) line += "\n" + indent + "value:\n" + full_block(t.value_view(entries[k]), indent);
      if (g && opt.adjoints && t.requires_grad(entries[k]))
        if (auto a = adjoint_of(t, *g, entries[k])) line += indent + "adjoint:\n" + full_block(*a, indent);
      if (line.back() == '\n') line.pop_back();
    }
    r.push_back(std::move(line));
  }
  return r;
}

bool matches_prefix(const Tape& t, const std::vector<std::string>& groups, std::uint32_t e, std::string_view prefix) {
  if (prefix.empty()) return true;
  const auto name = t.name_of(e);
  if (!name.empty()) return name.starts_with(prefix);
  if (groups[e].empty()) return false;
  return (groups[e] + ".").starts_with(prefix);
}

}  // namespace inspect_detail

using namespace inspect_detail;

std::string summarise(const View& v, int elements) {
  if (v.rank() == 0) return element_text(v, 0);
  const std::int64_t n = v.size();
  const std::int64_t shown = std::min<std::int64_t>(n, std::max(elements, 0));
  std::string r = "[";
  for (std::int64_t i = 0; i < shown; ++i) {
    const double x = v.flat(i);
    r += fmt::format("{}{:.6g}", i ? ", " : "", std::isnan(x) ? std::fabs(x) : x);
  }
  if (n > shown) r += shown ? ", ..." : "...";
  r += "]";
  if (n <= 1) return r;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0.0;
  std::int64_t nan = 0;
  dispatch(v.dtype(), [&]<class T>() {
    const T* p = static_cast<const T*>(v.data());
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = p[i];
      if (std::isnan(x)) {
        ++nan;
        continue;
      }
      lo = std::min(lo, x);
      hi = std::max(hi, x);
      sum += x;
    }
  });
  if (nan == n) return r + fmt::format(" all {} nan", n);
  r += fmt::format(" min {:.6g} max {:.6g} mean {:.6g}", lo, hi, sum / static_cast<double>(n - nan));
  if (nan) r += fmt::format(" ({} nan)", nan);
  return r;
}

std::vector<std::string> entry_groups(const Tape& t) {
  std::vector<std::string> g(t.size());
  for (std::uint32_t i = static_cast<std::uint32_t>(t.size()); i-- > 1;) {
    const auto name = t.name_of(i);
    if (!name.empty()) {
      const auto dot = name.find('.');
      g[i] = dot == std::string_view::npos ? std::string() : std::string(name.substr(0, dot));
    }
    if (g[i].empty()) continue;
    // Entries are visited from the last, so the earliest consumer with a group writes last.
    for (auto a : t.args(i))
      if (t.name_of(a).empty()) g[a] = g[i];
  }
  return g;
}

std::vector<std::uint32_t> select_entries(const Tape& t, const ListOptions& opt) {
  std::vector<char> keep(t.size(), 1);
  keep[0] = 0;
  if (!opt.subtree.empty()) {
    const std::uint32_t root = t.find(opt.subtree);
    if (root == 0)
      throw InvalidArgument(fmt::format("inspect: subtree \"{}\": no entry of the tape has this name", opt.subtree));
    std::fill(keep.begin(), keep.end(), 0);
    keep[root] = 1;
    for (std::uint32_t i = root; i > 0; --i)
      if (keep[i])
        for (auto a : t.args(i)) keep[a] = 1;
  }
  std::vector<std::string> groups;
  if (!opt.prefix.empty()) groups = entry_groups(t);
  std::vector<std::uint32_t> r;
  for (std::uint32_t i = 1; i < t.size(); ++i)
    if (keep[i] && matches_prefix(t, groups, i, opt.prefix)) r.push_back(i);
  return r;
}

namespace {

std::string join_lines(const std::vector<std::string>& ls) {
  std::string r;
  for (const auto& l : ls) r += l + "\n";
  return r;
}

}  // namespace

std::string listing(const Tape& t, const ListOptions& opt) {
  const auto sel = select_entries(t, opt);
  return join_lines(lines(t, sel, t.last_gradient(), opt));
}

std::string listing(const Tape& t, const Gradients& g, const ListOptions& opt) {
  check_store(t, g.store(), "listing");
  const auto sel = select_entries(t, opt);
  return join_lines(lines(t, sel, &g.store(), opt));
}

std::string entry_line(const Tape& t, std::uint32_t entry, const ListOptions& opt) {
  if (entry == 0 || entry >= t.size())
    throw InvalidArgument(fmt::format("entry_line: no entry #{} (the tape has entries 1..{})", entry, t.size() - 1));
  const std::uint32_t one[] = {entry};
  return lines(t, one, t.last_gradient(), opt).front();
}

// ---- summary -----------------------------------------------------------------------------------------

TapeSummary summarize(const Tape& t) {
  TapeSummary s;
  s.entries = t.entries();
  std::map<std::string, std::size_t> ops;
  for (std::uint32_t i = 1; i < t.size(); ++i) {
    const Node* n = t.node(i);
    ++ops[op_text(t, i)];
    if (!n || n->scalar_out) {
      ++s.scalar_entries;
      if (!n && t.op(i) == Op::leaf) ++s.scalar_variables;
      continue;
    }
    ++s.tensor_entries;
    if (!n->args.empty() || n->op->backward) continue;
    if (n->requires_grad) {
      s.parameters.push_back({i, label(t, i), n->dtype, n->shape});
      s.parameter_elements += numel(n->shape);
    } else {
      ++s.constants;
    }
  }
  s.by_op.assign(ops.begin(), ops.end());
  std::stable_sort(s.by_op.begin(), s.by_op.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  s.bytes_used = t.bytes_used();
  s.bytes_reserved = t.bytes_reserved();
  s.gradient_current = t.last_gradient() != nullptr;
  return s;
}

namespace {

std::string bytes_text(std::size_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < (std::size_t{1} << 20)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024.0);
  if (b < (std::size_t{1} << 30)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / 1048576.0);
  return fmt::format("{:.2f} GiB", static_cast<double>(b) / 1073741824.0);
}

}  // namespace

std::string summary(const Tape& t, std::size_t max_parameters) {
  const TapeSummary s = summarize(t);
  std::string r = fmt::format("tape: {} entries ({} tensor, {} scalar); {} in use, {} reserved; {}\n", s.entries,
                              s.tensor_entries, s.scalar_entries, bytes_text(s.bytes_used),
                              bytes_text(s.bytes_reserved),
                              s.gradient_current ? "gradient current" : "no current gradient");
  std::string line = "ops:";
  for (const auto& [op, count] : s.by_op) {
    const std::string item = fmt::format(" {} {}", op, count);
    if (line.size() + item.size() > 100) {
      r += line + "\n";
      line = "    ";
    }
    line += item;
  }
  r += line + "\n";
  r += fmt::format("parameters: {} tensor{}, {} element{}", s.parameters.size(), s.parameters.size() == 1 ? "" : "s",
                   s.parameter_elements, s.parameter_elements == 1 ? "" : "s");
  for (std::size_t k = 0; k < s.parameters.size() && k < max_parameters; ++k) {
    const auto& p = s.parameters[k];
    r += fmt::format("{} {} {}", k ? "," : ":", p.name, describe(p.dtype, p.shape));
  }
  if (s.parameters.size() > max_parameters) r += fmt::format(", ... ({} more)", s.parameters.size() - max_parameters);
  r += fmt::format("\nscalar variables: {}; constant tensors (no gradient): {}\n", s.scalar_variables, s.constants);
  return r;
}

}  // namespace ad

auto fmt::formatter<ad::Tape>::format(const ad::Tape& t, fmt::format_context& ctx) const
    -> fmt::format_context::iterator {
  return fmt::formatter<std::string_view>::format(ad::listing(t), ctx);
}
