// Inspection: the listing, entry selection, the summary and the Graphviz picture.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "autodiff/autodiff.hpp"
#include "inspect_fixtures.hpp"

using inspect_test::line_of;

TEST_CASE("inspect: the listing shows names, ops, arguments, types, full-precision values and adjoints") {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(0.1), "x");
  ad::Var y = tape.name(tape.variable(0.2), "y");
  ad::Var s = tape.name(x + y, "s");  // 0.30000000000000004: needs all 17 digits
  ad::Var p = s * x;                  // unnamed: its users show it as #4
  ad::Var t = tanh(p);                // kept as a Var: its own entry (a longer expression would fuse)
  ad::Var out = tape.name(t + s, "out");

  std::string before = ad::listing(tape);
  CHECK(line_of(before, 1).find("x") != std::string::npos);
  const std::string ls = line_of(before, s.index());
  CHECK(ls.find(" s ") != std::string::npos);
  CHECK(ls.find("add") != std::string::npos);
  CHECK(ls.find("(x, y)") != std::string::npos);
  CHECK(ls.find("f64[]") != std::string::npos);
  CHECK(ls.find(fmt::format("= {}", s.value())) != std::string::npos);
  CHECK(fmt::format("{}", s.value()) == "0.30000000000000004");
  CHECK(before.find("adj") == std::string::npos);  // no gradient yet
  CHECK(line_of(before, t.index()).find(fmt::format("(#{})", p.index())) != std::string::npos);  // tanh(#4)

  auto g = tape.gradient(out);
  const std::string after = ad::listing(tape);
  CHECK(line_of(after, x.index()).find(fmt::format("adj = {}", g[x])) != std::string::npos);
  CHECK(line_of(after, s.index()).find(fmt::format("adj = {}", g[s])) != std::string::npos);
  CHECK(line_of(after, out.index()).find("adj = 1") != std::string::npos);
  // One line per entry, the formatter gives the default listing.
  CHECK(static_cast<std::size_t>(std::count(after.begin(), after.end(), '\n')) == tape.entries());
  CHECK(fmt::format("{}", tape) == after);
  // Values and adjoints can be left out.
  const std::string bare = ad::listing(tape, {.values = false, .adjoints = false});
  CHECK(bare.find("= ") == std::string::npos);
  CHECK(bare.find("adj") == std::string::npos);
  CHECK(line_of(bare, s.index()).find("(x, y)") != std::string::npos);
  // A gradient passed explicitly is used even after a newer entry made the tape's own stale.
  ad::Var later = out * 3.0;
  CHECK(ad::listing(tape).find("adj") == std::string::npos);
  CHECK(line_of(ad::listing(tape, g), x.index()).find(fmt::format("adj = {}", g[x])) != std::string::npos);
  CHECK(line_of(ad::listing(tape, g), later.index()).find("recorded after the gradient") != std::string::npos);
  ad::Tape other;
  CHECK_THROWS_AS(ad::listing(other, g), ad::ForeignHandleError);
}

TEST_CASE("inspect: scalar ops with a constant show the constant") {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(3.0), "x");
  struct Case {
    ad::Var v;
    std::string args;
  };
  const Case cases[] = {
      {x + 2.5, "(x, 2.5)"},    {x - 0.75, "(x, 0.75)"},   {4.0 - x, "(4, x)"},     {x * -1.5, "(x, -1.5)"},
      {x / 8.0, "(x, 8)"},      {6.0 / x, "(6, x)"},       {pow(x, 2.5), "(x, 2.5)"}, {pow(2.0, x), "(2, x)"},
      {0.1 + x, "(x, 0.1)"},    {x / 0.2, "(x, 0.2)"},
  };
  const std::string l = ad::listing(tape);
  for (const auto& c : cases) {
    INFO(line_of(l, c.v.index()));
    CHECK(line_of(l, c.v.index()).find(c.args) != std::string::npos);
  }
  // Binary ops between Vars show no constant.
  ad::Var q = x * x;
  CHECK(line_of(ad::listing(tape), q.index()).find("(x, x)") != std::string::npos);
}

TEST_CASE("inspect: tensor entries show dtype, shape and a summary, and full tensors on request") {
  ad::Tape tape;
  ad::Array<float> a(ad::make_shape({2, 3}), {1.f, -2.f, 3.5f, 4.f, 0.25f, 6.f});
  ad::Array<double> w(ad::make_shape({2, 2}), {0.5, 1.5, -2.5, 3.0});
  ad::Tensor ta = tape.name(tape.constant(a), "data");
  ad::Tensor tw = tape.name(tape.leaf(w), "w");
  ad::Tensor t2 = tape.name(inspect_test::twice(tw), "w2");
  ad::Var e = tape.name(t2(1, 0) * t2(0, 1), "e");
  (void)ta;
  auto g = tape.gradient(e);

  const std::string l = ad::listing(tape);
  const std::string la = line_of(l, ta.index());
  CHECK(la.find("const") != std::string::npos);
  CHECK(la.find("f32[2,3]") != std::string::npos);
  CHECK(la.find("[1, -2, 3.5, 4, ...]") != std::string::npos);
  CHECK(la.find("min -2 max 6 mean 2.125") != std::string::npos);
  CHECK(la.find("no gradient") != std::string::npos);
  const std::string lw = line_of(l, tw.index());
  CHECK(lw.find("leaf") != std::string::npos);
  CHECK(lw.find("f64[2,2]") != std::string::npos);
  // w2 = [[1, 3], [-5, 6]], e = w2[1,0]·w2[0,1]: adj w2 is 3 at [1,0] and -5 at [0,1]; adj w = 2 adj w2.
  CHECK(g[tw].at({1, 0}) == 6.0);
  CHECK(lw.find("adj = [0, -10, 6, 0] min -10 max 6 mean -1") != std::string::npos);
  const std::string l2 = line_of(l, t2.index());
  CHECK(l2.find("twice") != std::string::npos);
  CHECK(l2.find("(w)") != std::string::npos);
  // element bridges show the picked index
  CHECK(l.find("(w2, [1,0])") != std::string::npos);

  const std::string full = ad::listing(tape, {.prefix = "data", .full = true});
  CHECK(full.find("[[1, -2, 3.5, 4, 0.25, 6]]") == std::string::npos);
  CHECK(full.find("[[1, -2, 3.5],") != std::string::npos);
  CHECK(full.find(" [4, 0.25, 6]]") != std::string::npos);
  const std::string few = ad::listing(tape, {.prefix = "data", .elements = 2});
  CHECK(few.find("[1, -2, ...]") != std::string::npos);
}

TEST_CASE("inspect: subtree and layer filters select what they claim") {
  ad::Tape tape;
  inspect_test::ScalarNet net(tape);
  const auto all = ad::select_entries(tape);
  CHECK(all.size() == tape.entries());

  // The subtree of layer1.z[2] is that z, its bias and weights row (as element bridges), the products,
  // the partial sums and the leaves: nothing of layer 2.
  const auto sub = ad::select_entries(tape, {.subtree = "layer1.z[2]"});
  const std::set<std::uint32_t> subset(sub.begin(), sub.end());
  CHECK(subset.count(net.z1[2].index()) == 1);
  CHECK(subset.count(net.tW1.index()) == 1);
  CHECK(subset.count(net.tb1.index()) == 1);
  CHECK(subset.count(net.tx.index()) == 1);
  CHECK(subset.count(net.tW2.index()) == 0);
  CHECK(subset.count(net.z1[1].index()) == 0);
  CHECK(subset.count(net.a1[2].index()) == 0);
  // every selected entry's arguments are selected too (closed under "depends on")
  for (auto e : sub)
    for (auto a : tape.args(e)) CHECK(subset.count(a) == 1);
  // z: 3 products, 2 partial-sum adds, 1 bias add; 3 W, 3 x and 1 b elements; 3 leaves
  CHECK(sub.size() == 16);

  // The layer filter takes the named entries of layer 2 and the unnamed ops that build them, and
  // nothing of the loss.
  const auto layer = ad::select_entries(tape, {.prefix = "layer2."});
  const std::set<std::uint32_t> lset(layer.begin(), layer.end());
  for (auto& z : net.z2) CHECK(lset.count(z.index()) == 1);
  CHECK(lset.count(net.tW2.index()) == 1);
  CHECK(lset.count(net.a1[0].index()) == 0);
  CHECK(lset.count(net.loss.index()) == 0);
  for (auto e : layer) {
    auto name = tape.name_of(e);
    if (!name.empty()) CHECK(name.starts_with("layer2."));
  }
  // 3 z's, each 4 products (4 W2 elements), 3 partial-sum adds and 1 bias add, 1 bias element: 3·13 + 2 leaves
  CHECK(layer.size() == 41);
  const std::string l = ad::listing(tape, {.prefix = "layer2."});
  CHECK(l.find("layer1.W") == std::string::npos);
  CHECK(l.find("layer2.z[1]") != std::string::npos);
  // both filters: the intersection
  const auto both = ad::select_entries(tape, {.subtree = "layer2.z[0]", .prefix = "layer2."});
  for (auto e : both) CHECK(lset.count(e) == 1);
  CHECK(both.size() == 15);

  CHECK_THROWS_AS(ad::select_entries(tape, {.subtree = "no such name"}), ad::InvalidArgument);
  const auto groups = ad::entry_groups(tape);
  CHECK(groups[net.z2[0].index() - 1] == "layer2");  // the add under layer2.z[0]
  CHECK(groups[net.loss.index()].empty());
  CHECK(groups[net.loss.index() - 1].empty());       // the loss's own ops belong to no layer
}

TEST_CASE("inspect: the summary counts entries by op, parameters and bytes") {
  ad::Tape tape;
  inspect_test::ScalarNet net(tape);
  const ad::TapeSummary s = ad::summarize(tape);
  CHECK(s.entries == tape.entries());
  CHECK(s.tensor_entries == 5);
  CHECK(s.scalar_entries == tape.entries() - 5);
  CHECK(s.parameters.size() == 4);
  CHECK(s.parameter_elements == 12 + 4 + 12 + 3);
  CHECK(s.parameters[0].name == "layer1.W");
  CHECK(s.parameters[0].shape == ad::make_shape({4, 3}));
  CHECK(s.constants == 1);
  CHECK(s.scalar_variables == 0);
  CHECK(s.bytes_used == tape.bytes_used());
  CHECK(s.bytes_reserved == tape.bytes_reserved());
  CHECK(!s.gradient_current);
  auto count = [&](const std::string& op) {
    for (const auto& [o, c] : s.by_op)
      if (o == op) return c;
    return std::size_t{0};
  };
  // 3·4 + 4·3 products, 3 exp; sigmoid per hidden unit; 2 max for the softmax shift
  CHECK(count("mul") == 24);
  CHECK(count("sigmoid") == 4);
  CHECK(count("exp") == 3);
  CHECK(count("max") == 2);
  CHECK(count("element") == 12 + 4 + 12 + 3 + 4 * 3);
  for (std::size_t k = 1; k < s.by_op.size(); ++k) CHECK(s.by_op[k - 1].second >= s.by_op[k].second);

  tape.gradient(net.loss);
  const std::string text = ad::summary(tape);
  CHECK(text.find("parameters: 4 tensors, 31 elements: layer1.W f64[4,3], layer1.b f64[4]") != std::string::npos);
  CHECK(text.find("element 43") != std::string::npos);
  CHECK(text.find("gradient current") != std::string::npos);
  CHECK(std::count(text.begin(), text.end(), '\n') < 25);
}

namespace {

/// Checks the DOT text is well-formed: quotes balanced, braces balanced outside quotes, and every
/// edge endpoint declared as a node.  Returns the declared node ids.
std::set<std::string> check_dot(const std::string& dot) {
  int depth = 0, raw_newlines = 0;
  bool quoted = false;
  for (std::size_t i = 0; i < dot.size(); ++i) {
    const char c = dot[i];
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
      else raw_newlines += c == '\n';  // a raw newline inside a label would be an escaping bug
      continue;
    }
    if (c == '"') quoted = true;
    if (c == '{') ++depth;
    if (c == '}') REQUIRE(--depth >= 0);
  }
  CHECK(!quoted);
  CHECK(depth == 0);
  CHECK(raw_newlines == 0);
  std::set<std::string> declared;
  std::vector<std::pair<std::string, std::string>> edges;
  // Node statements are "  n<k> [..." and edges "  n<a> -> n<b>..." (one statement a line).
  auto node_id = [](const std::string& line, std::size_t at) {
    if (at >= line.size() || line[at] != 'n') return std::string();
    std::size_t end = at + 1;
    while (end < line.size() && std::isdigit(static_cast<unsigned char>(line[end]))) ++end;
    return end > at + 1 ? line.substr(at, end - at) : std::string();
  };
  std::istringstream in(dot);
  for (std::string line; std::getline(in, line);) {
    const std::size_t start = line.find_first_not_of(' ');
    const std::string a = start == std::string::npos ? std::string() : node_id(line, start);
    if (a.empty()) continue;
    const std::size_t after = start + a.size();
    if (line.compare(after, 4, " -> ") == 0) {
      const std::string b = node_id(line, after + 4);
      CHECK(!b.empty());
      edges.emplace_back(a, b);
    } else if (line.compare(after, 2, " [") == 0) {
      CHECK(declared.insert(a).second);
    }
  }
  for (const auto& [a, b] : edges) {
    CHECK(declared.count(a) == 1);
    CHECK(declared.count(b) == 1);
  }
  CHECK(!edges.empty());
  return declared;
}

std::filesystem::path temp_dir(const char* tag) {
  auto d = std::filesystem::temp_directory_path() / fmt::format("deltagrad_inspect_{}_{}", tag, ::getpid());
  std::filesystem::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("inspect: the DOT picture is well-formed, escaped and clustered by layer") {
  ad::Tape tape;
  inspect_test::ScalarNet net(tape);
  ad::Var odd = tape.name(net.loss * 1.0, "say \"hi\" \\ back\nslash\x01");
  tape.gradient(odd);
  const std::string dot = ad::to_dot(tape);
  const auto declared = check_dot(dot);
  CHECK(declared.size() == tape.entries());
  CHECK(dot.find("label=\"layer1\"") != std::string::npos);
  CHECK(dot.find("label=\"layer2\"") != std::string::npos);
  CHECK(std::count(dot.begin(), dot.end(), '{') == 3);  // the graph and two clusters
  CHECK(dot.find("say \\\"hi\\\" \\\\ back\\nslash?") != std::string::npos);
  CHECK(dot.find("adj ") != std::string::npos);
  CHECK(dot.find("f64[4,3]") != std::string::npos);

  // A selection draws the arguments it leaves out as stubs, so every edge still has both ends.
  const std::string part = ad::to_dot(tape, {.subtree = "layer2.z[1]", .prefix = "layer2."});
  const auto part_nodes = check_dot(part);
  CHECK(part.find("dashed") != std::string::npos);
  CHECK(part_nodes.count(fmt::format("n{}", net.a1[0].index())) == 1);  // a stub

  const auto dir = temp_dir("dot");
  const ad::Picture fallback = ad::write_picture(tape, dir / "fallback.svg", {.render = false});
  CHECK(!fallback.rendered);
  CHECK(std::filesystem::exists(dir / "fallback.dot"));
  CHECK(fallback.message.find("apt-get install graphviz") != std::string::npos);
  CHECK(fallback.message.find("dot -Tsvg " + (dir / "fallback.dot").string()) != std::string::npos);
  std::ifstream f(dir / "fallback.dot");
  CHECK(std::string(std::istreambuf_iterator<char>(f), {}) == dot);

  const ad::Picture pic = ad::write_picture(tape, dir / "tape", {.select = {.prefix = "layer1."}});
  CHECK(pic.dot == dir / "tape.dot");
  if (ad::find_dot().empty()) {
    MESSAGE("Graphviz dot is not installed: rendering not tested");
    CHECK(!pic.rendered);
  } else {
    CHECK(pic.rendered);
    std::ifstream s(pic.svg);
    const std::string svg(std::istreambuf_iterator<char>(s), {});
    CHECK(svg.find("<svg") != std::string::npos);
    CHECK(svg.find("layer1.z[3]") != std::string::npos);
  }
  CHECK_THROWS_AS(ad::write_picture(tape, dir / "no_such_dir" / "x.svg"), ad::PictureError);

  // Without Graphviz on PATH the .dot file is written and the message says how to render it.
  const char* saved = std::getenv("PATH");
  const std::string path = saved ? saved : "";
  ::setenv("PATH", dir.c_str(), 1);  // a directory without dot
  CHECK(ad::find_dot().empty());
  const ad::Picture plain = ad::write_picture(tape, dir / "plain.svg");
  ::setenv("PATH", path.c_str(), 1);
  CHECK(!plain.rendered);
  CHECK(std::filesystem::exists(dir / "plain.dot"));
  CHECK(!std::filesystem::exists(dir / "plain.svg"));
  CHECK(plain.message.find("not on PATH") != std::string::npos);
  CHECK(plain.message.find("apt-get install graphviz; dot -Tsvg") != std::string::npos);
  std::filesystem::remove_all(dir);
}
