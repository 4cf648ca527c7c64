// ad::write_explorer: what the page file holds (escaping, elided elements, non-finite numbers,
// the graph or the reason it is missing) and the errors it throws.  The page's behaviour in a
// browser is tested by tests/explorer/browser_test.py.
#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "autodiff/autodiff.hpp"
#include "examples/walkthrough_tape.hpp"
#include "nn_temp.hpp"

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// The page's JSON data: the text of the "tape-data" script element.
std::string data_of(const std::string& page) {
  const std::string open = "<script type=\"application/json\" id=\"tape-data\">";
  const auto start = page.find(open);
  REQUIRE(start != std::string::npos);
  const auto end = page.find("</script>", start);
  REQUIRE(end != std::string::npos);
  return page.substr(start + open.size(), end - start - open.size());
}

std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("explorer: the seed network's page has every entry and every step that ran") {
  nn_test::TempDir dir;
  nn::MLP mlp = walkthrough_detail::to_mlp(walkthrough_network());
  ad::Tape tape;
  const ad::Tensor J = record_walkthrough(tape, mlp);
  const ad::Explorer r = ad::write_explorer(tape, J, dir / "seed.html", {.graph = false});

  std::size_t ran = 0;
  const ad::StepLog log = ad::step_through(tape, J);
  for (const ad::Step& s : log.steps()) ran += s.skipped ? 0 : 1;
  CHECK(r.steps == ran);
  CHECK(r.steps > 0);
  CHECK(r.entries == tape.entries());
  CHECK(r.path == dir / "seed.html");
  const std::string page = read_file(r.path);
  CHECK(r.bytes == page.size());
  const std::string data = data_of(page);
  for (std::uint32_t e = 1; e < tape.size(); ++e) CHECK(count(data, fmt::format("{{\"i\":{},", e)) == 1);
  // One record per step that ran, and the seed.
  CHECK(count(data, "{\"e\":") == ran + 1);
  // layer1.z's final adjoint, element by element in shortest round-trip form.
  const ad::Gradients g = tape.gradient(J);
  const std::string name = "\"name\":\"layer1.z\"";
  const auto at = data.find(name);
  REQUIRE(at != std::string::npos);
  const auto adj = data.find("\"adj\":", at);
  REQUIRE(adj != std::string::npos);
  const ad::Array<double> d1 = ad::to_array<double>(g["layer1.z"]);
  CHECK(data.find(fmt::format("\"els\":[{}]", fmt::join(d1.values(), ",")), adj) ==
        data.find("\"els\":", adj));
  // The script and the markup are in the page, nothing refers outside it.
  CHECK(page.find("function adjointAt") != std::string::npos);
  CHECK(page.find("src=") == std::string::npos);
  CHECK(page.find("href=") == std::string::npos);
  CHECK(page.find("http://") == std::string::npos);
  CHECK(page.find("https://") == std::string::npos);
}

TEST_CASE("explorer: names and the title are escaped for JSON inside HTML") {
  nn_test::TempDir dir;
  ad::Tape tape;
  const ad::Array<double> a(ad::make_shape({2}), {1.0, 2.0});
  ad::Tensor x = tape.name(tape.leaf(a), "</script><script>alert(1)</script>");
  ad::Tensor y = tape.name(x * 3.0, "quote\"back\\slash\x01");
  ad::Tensor z = tape.name(sum(y), std::string("bad\xff") + "byte");
  const ad::Explorer r = ad::write_explorer(tape, z, dir / "names.html", {.title = "<b>&\"'"});
  const std::string page = read_file(r.path);
  // Only the page's own two script elements end; nothing from the tape opens a comment or a tag.
  CHECK(count(page, "</script") == 2);
  CHECK(count(page, "<script") == 2);
  CHECK(page.find("<!--") == std::string::npos);
  CHECK(page.find("<title>&lt;b&gt;&amp;&quot;&#39;</title>") != std::string::npos);
  const std::string data = data_of(page);
  CHECK(data.find('<') == std::string::npos);
  CHECK(data.find("\"\\u003c/script>\\u003cscript>alert(1)\\u003c/script>\"") != std::string::npos);
  CHECK(data.find("\"quote\\\"back\\\\slash\\u0001\"") != std::string::npos);
  CHECK(data.find("\"bad\\ufffdbyte\"") != std::string::npos);
  // With Graphviz, the picture (which repeats the names) is inside the data too, escaped the same way.
  if (r.graph) CHECK(data.find("\"graph\":\"\\u003csvg") != std::string::npos);
}

TEST_CASE("explorer: large tensors are summarised, small ones listed in full") {
  nn_test::TempDir dir;
  ad::Tape tape;
  ad::Array<double> a(ad::make_shape({10, 10}));
  for (std::int64_t k = 0; k < a.size(); ++k) a[k] = static_cast<double>(k);
  const ad::Tensor x = tape.name(tape.leaf(a), "x");
  const ad::Tensor loss = sum(x * 0.5);
  const auto all_elements = [&] {
    std::string s = "\"els\":[0";
    for (int k = 1; k < 100; ++k) s += fmt::format(",{}", k);
    return s + "]";
  }();
  {
    const ad::Explorer r = ad::write_explorer(tape, loss, dir / "small.html", {.graph = false, .max_elements = 100});
    const std::string data = data_of(read_file(r.path));
    CHECK(data.find(all_elements) != std::string::npos);
    CHECK(data.find("\"head\":") == std::string::npos);
  }
  {
    const ad::Explorer r = ad::write_explorer(tape, loss, dir / "large.html", {.graph = false, .max_elements = 99});
    const std::string data = data_of(read_file(r.path));
    CHECK(data.find(all_elements) == std::string::npos);
    // x's value: its statistics and the first elements only.
    CHECK(data.find("\"n\":100,\"nan\":0,\"inf\":0,\"min\":0,\"max\":99,\"mean\":49.5,\"head\":[0,1,2,3,4,5]}") !=
          std::string::npos);
  }
}

TEST_CASE("explorer: NaN and infinite numbers are written as strings the page reads back") {
  nn_test::TempDir dir;
  ad::Tape tape;
  const ad::Array<double> p(ad::make_shape({3}), {0.7, 0.3, 0.0});
  const ad::Array<double> target(ad::make_shape({3}), {0.0, 0.0, 1.0});
  const ad::Tensor probs = tape.name(tape.leaf(p), "probs");
  const ad::Tensor logp = tape.name(log(probs), "logp");
  const ad::Tensor nll = tape.name(-sum(logp * tape.constant(target)), "nll");
  const ad::Explorer r = ad::write_explorer(tape, nll, dir / "nan.html", {.graph = false});
  const std::string data = data_of(read_file(r.path));
  // logp's value: log(0) = -inf, counted and spelled out.
  CHECK(data.find("\"n\":3,\"nan\":0,\"inf\":1,") != std::string::npos);
  CHECK(data.find("\"-Infinity\"") != std::string::npos);
  CHECK(data.find("\"Infinity\"") != std::string::npos);  // the loss
  // JSON has no bare NaN or Infinity: every one is quoted.
  for (const char* bare : {":NaN", ",NaN", "[NaN", ":Infinity", ",Infinity", "[Infinity", ":-Infinity", ",-Infinity",
                           "[-Infinity"})
    CHECK(data.find(bare) == std::string::npos);
}

TEST_CASE("explorer: without the graph the page says why") {
  nn_test::TempDir dir;
  nn::MLP mlp = walkthrough_detail::to_mlp(walkthrough_network());
  ad::Tape tape;
  const ad::Tensor J = record_walkthrough(tape, mlp);

  const ad::Explorer off = ad::write_explorer(tape, J, dir / "off.html", {.graph = false});
  CHECK_FALSE(off.graph);
  CHECK(off.message.find("listing only") != std::string::npos);
  std::string data = data_of(read_file(off.path));
  CHECK(data.find("\"graph\":null") != std::string::npos);
  CHECK(data.find("\"graphNote\":\"the graph was turned off") != std::string::npos);

  const ad::Explorer big = ad::write_explorer(tape, J, dir / "big.html", {.max_graph = 5});
  CHECK_FALSE(big.graph);
  CHECK(data_of(read_file(big.path)).find("more than the 5 laid out as a graph") != std::string::npos);

  const ad::Explorer on = ad::write_explorer(tape, J, dir / "on.html");
  CHECK(on.graph == !ad::find_dot().empty());
  if (on.graph) {
    // Graphviz names each node's group after the DOT node n<entry>: the page finds entries by it.
    data = data_of(read_file(on.path));
    for (std::uint32_t e = 1; e < tape.size(); ++e)
      CHECK(data.find(fmt::format("\\u003ctitle>n{}\\u003c/title>", e)) != std::string::npos);
  } else {
    CHECK(data_of(read_file(on.path)).find("Graphviz's dot was not on PATH") != std::string::npos);
  }
}

TEST_CASE("explorer: bad paths and outputs throw typed errors and write nothing") {
  nn_test::TempDir dir;
  ad::Tape tape;
  const ad::Array<double> a(ad::make_shape({2}), {1.0, 2.0});
  const ad::Tensor x = tape.name(tape.leaf(a), "x");
  const ad::Tensor loss = sum(x * x);

  const auto missing = dir / "no-such-dir" / "page.html";
  CHECK_THROWS_WITH_AS(ad::write_explorer(tape, loss, missing, {.graph = false}),
                       doctest::Contains(missing.string().c_str()), ad::PictureError);
  CHECK_THROWS_AS(ad::write_explorer(tape, loss, "", {.graph = false}), ad::PictureError);
  CHECK_THROWS_WITH_AS(ad::write_explorer(tape, x * 2.0, dir / "two.html", {.graph = false}),
                       doctest::Contains("f64[2]"), ad::ShapeError);
  CHECK_FALSE(std::filesystem::exists(dir / "two.html"));
  tape.clear();
  CHECK_THROWS_AS(ad::write_explorer(tape, loss, dir / "stale.html", {.graph = false}), ad::StaleHandleError);
  CHECK_FALSE(std::filesystem::exists(dir / "stale.html"));
}

TEST_CASE("explorer: a scalar tape's page") {
  nn_test::TempDir dir;
  ad::Tape tape;
  const ad::Var u = tape.name(tape.variable(0.5), "u");
  const ad::Var v = tape.name(tape.variable(-2.0), "v");
  const ad::Var w = tape.name(u * v, "w");
  const ad::Var y = tape.name(sin(w) + u, "y");
  const ad::Explorer r = ad::write_explorer(tape, y, dir / "scalar.html", {.graph = false});
  CHECK(r.entries == tape.entries());
  const std::string data = data_of(read_file(r.path));
  // u's adjoint: two contributions (through w and directly), summed in sweep order as the tape does.
  const ad::Gradients g = tape.gradient(y);
  CHECK(data.find(fmt::format("\"name\":\"u\"")) != std::string::npos);
  CHECK(data.find(fmt::format("\"els\":[{}]", g[u])) != std::string::npos);
  CHECK(data.find(fmt::format("\"partial\":{}", v.value())) != std::string::npos);  // ∂w/∂u = v
}
