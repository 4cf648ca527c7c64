// The tape as a Graphviz picture.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

extern char** environ;

namespace ad {

using namespace inspect_detail;

namespace {

/// The text of a double-quoted DOT string: quotes and backslashes escaped, a newline becomes the
/// line break escape, other control characters and bytes that are not UTF-8 become '?'.
std::string dot_escape(std::string_view s) {
  std::string r;
  r.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
      ++i;
    } else if (c == '\n') {
      r += "\\n";
      ++i;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      r += '?';
      ++i;
    } else if (std::size_t n = utf8_length(s, i)) {
      r.append(s, i, n);
      i += n;
    } else {
      r += '?';
      ++i;
    }
  }
  return r;
}

/// A value for a label: scalars to 6 digits, tensors summarised with the statistics on a second line.
std::string label_value(const char* head, const View& v, int elements) {
  if (v.rank() == 0) return dot_escape(fmt::format("{} {:.6g}", head, std::isnan(v.flat(0)) ? NAN : v.flat(0)));
  std::string s = summarise(v, elements);
  const auto stats = s.find(" min ");
  if (stats == std::string::npos) return dot_escape(fmt::format("{} {}", head, s));
  return dot_escape(fmt::format("{} {}", head, s.substr(0, stats))) + "\\n" + dot_escape("  " + s.substr(stats + 1));
}

/// The label of an entry: lines joined with the DOT line break.
std::string node_label(const Tape& t, std::uint32_t e, const GradStore* g, const ListOptions& opt) {
  std::string r = dot_escape(index_label(t, e));
  r += "\\n" + dot_escape(op_text(t, e) + args_text(t, e) + "  " + describe(t.dtype_of_entry(e), t.shape_of_entry(e)));
  const int k = std::min(opt.elements, 3);
  if (opt.values) r += "\\n" + label_value("=", t.value_view(e), k);
  if (g && opt.adjoints && t.requires_grad(e)) {
    if (auto a = adjoint_of(t, *g, e)) r += "\\n" + label_value("adj", *a, k);
    else r += "\\nadj 0";
  }
  return r;
}

std::string fill_of(const Tape& t, std::uint32_t e, const GradStore* g) {
  if (first_non_finite(t.value_view(e)) >= 0) return "#f4b6b6";
  if (g && t.requires_grad(e))
    if (auto a = adjoint_of(t, *g, e); a && first_non_finite(*a) >= 0) return "#f4b6b6";
  const Node* n = t.node(e);
  if (!n) return t.op(e) == Op::leaf ? "#cfe0fc" : "white";
  if (n->args.empty() && !n->op->backward) return n->requires_grad ? "#cfe0fc" : "#e6e6e6";
  return "white";
}

/// Edges of entries whose arguments play different roles are labelled with the argument position.
bool ordered_args(const Tape& t, std::uint32_t e) {
  const Node* n = t.node(e);
  return t.args(e).size() > 1 && !(n ? n->op : &descriptor(t.op(e)))->commutative;
}

}  // namespace

std::string to_dot(const Tape& t, const ListOptions& opt) {
  const auto sel = select_entries(t, opt);
  const auto groups = entry_groups(t);
  const GradStore* g = opt.adjoints ? t.last_gradient() : nullptr;
  std::vector<char> selected(t.size(), 0);
  for (auto e : sel) selected[e] = 1;

  std::string r =
      "digraph tape {\n"
      "  graph [rankdir=LR, fontname=\"monospace\", fontsize=11];\n"
      "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"monospace\", fontsize=10];\n"
      "  edge [arrowsize=0.6, fontname=\"monospace\", fontsize=9];\n";
  auto node_line = [&](std::uint32_t e, const char* indent) {
    return fmt::format("{}n{} [label=\"{}\", fillcolor=\"{}\"];\n", indent, e, node_label(t, e, g, opt),
                       fill_of(t, e, g));
  };

  // One cluster per group, in order of first appearance; the rest at top level.
  std::map<std::string, std::vector<std::uint32_t>> clusters;
  std::vector<std::string> order;
  for (auto e : sel) {
    if (groups[e].empty()) {
      r += node_line(e, "  ");
      continue;
    }
    auto [it, fresh] = clusters.try_emplace(groups[e]);
    if (fresh) order.push_back(groups[e]);
    it->second.push_back(e);
  }
  for (std::size_t k = 0; k < order.size(); ++k) {
    r += fmt::format("  subgraph \"cluster_{}\" {{\n    label=\"{}\";\n    style=\"rounded\";\n    color=\"#8c8c8c\";\n",
                     k, dot_escape(order[k]));
    for (auto e : clusters[order[k]]) r += node_line(e, "    ");
    r += "  }\n";
  }

  // Arguments outside the selection are drawn as dashed stubs, so every edge has both ends.
  std::vector<char> stub(t.size(), 0);
  std::string edges;
  for (auto e : sel) {
    const auto args = t.args(e);
    const bool ordered = ordered_args(t, e);
    for (std::size_t k = 0; k < args.size(); ++k) {
      const auto a = args[k];
      if (!selected[a] && !stub[a]) {
        stub[a] = 1;
        r += fmt::format("  n{} [label=\"{}\", style=\"rounded,dashed\", fillcolor=white];\n", a,
                         dot_escape(index_label(t, a)));
      }
      edges += ordered ? fmt::format("  n{} -> n{} [label=\"{}\"];\n", a, e, k) : fmt::format("  n{} -> n{};\n", a, e);
    }
  }
  return r + edges + "}\n";
}

std::filesystem::path find_dot() {
  const char* path = std::getenv("PATH");
  if (!path) return {};
  std::string_view rest(path);
  while (true) {
    const auto colon = rest.find(':');
    const std::string_view dir = rest.substr(0, colon);
    if (!dir.empty()) {
      const std::filesystem::path p = std::filesystem::path(dir) / "dot";
      std::error_code ec;
      if (std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0) return p;
    }
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return {};
}

namespace {

/// Runs `dot -Tsvg in -o out` without a shell and waits for it; returns its exit status.
int run_dot(const std::filesystem::path& dot, const std::filesystem::path& in, const std::filesystem::path& out) {
  std::string a0 = dot.string(), a1 = "-Tsvg", a2 = in.string(), a3 = "-o", a4 = out.string();
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), a4.data(), nullptr};
  pid_t pid = 0;
  if (int err = posix_spawn(&pid, a0.c_str(), nullptr, nullptr, argv, environ); err != 0)
    throw PictureError(fmt::format("write_picture: cannot run {}: {}", a0, std::strerror(err)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw PictureError(fmt::format("write_picture: waiting for {} failed", a0));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace

Picture write_picture(const Tape& t, const std::filesystem::path& path, const PictureOptions& opt) {
  if (path.empty() || !path.has_filename())
    throw PictureError(fmt::format("write_picture: \"{}\" does not name a file", path.string()));
  Picture pic;
  pic.dot = path;
  pic.dot.replace_extension(".dot");
  pic.svg = path;
  pic.svg.replace_extension(".svg");
  const std::string text = to_dot(t, opt.select);
  {
    std::ofstream f(pic.dot, std::ios::binary | std::ios::trunc);
    if (!f) throw PictureError(fmt::format("write_picture: cannot open {} for writing", pic.dot.string()));
    f << text;
    f.close();
    if (!f) throw PictureError(fmt::format("write_picture: writing {} failed", pic.dot.string()));
  }
  const std::string how =
      fmt::format("to render it: apt-get install graphviz; dot -Tsvg {} -o {}", pic.dot.string(), pic.svg.string());
  const std::size_t nodes = select_entries(t, opt.select).size();
  const std::filesystem::path dot = opt.render ? find_dot() : std::filesystem::path();
  if (!opt.render) {
    pic.message = fmt::format("wrote {} ({} nodes); {}", pic.dot.string(), nodes, how);
  } else if (dot.empty()) {
    pic.message = fmt::format("wrote {} ({} nodes); Graphviz's dot is not on PATH; {}", pic.dot.string(), nodes, how);
  } else if (nodes > opt.max_render) {
    pic.message = fmt::format(
        "wrote {} ({} nodes, more than {} to render; select a subtree or a layer, or render it yourself: dot "
        "-Tsvg {} -o {})",
        pic.dot.string(), nodes, opt.max_render, pic.dot.string(), pic.svg.string());
  } else {
    if (int status = run_dot(dot, pic.dot, pic.svg); status != 0)
      throw PictureError(fmt::format("write_picture: {} -Tsvg {} -o {} failed with exit status {}", dot.string(),
                                     pic.dot.string(), pic.svg.string(), status));
    pic.rendered = true;
    pic.message = fmt::format("wrote {} ({} nodes; source {})", pic.svg.string(), nodes, pic.dot.string());
  }
  return pic;
}

}  // namespace ad
