// Inspection: the step-through backward sweep and the NaN/inf origin checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include "autodiff/autodiff.hpp"
#include "inspect_fixtures.hpp"

namespace {

/// Lines of a message that start with `head` (after leading spaces).
std::vector<std::string> lines_starting(const std::string& text, const std::string& head) {
  std::vector<std::string> r;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const auto start = line.find_first_not_of(' ');
    if (start != std::string::npos && line.compare(start, head.size(), head) == 0) r.push_back(line);
  }
  return r;
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("inspect: step-through contributions sum exactly to every scalar adjoint") {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(0.7), "x");
  ad::Var y = tape.name(tape.variable(-1.3), "y");
  ad::Var u = tape.name(x * y + sin(x), "u");
  ad::Var uu = u * u;                 // one entry reading u twice
  ad::Var v = tape.name(uu / (1.0 + exp(y)), "v");
  ad::Var u3 = pow(u, 3.0);
  ad::Var off = tape.name(x * -2.0, "off");  // relu(off) = 0 with partial 0: nothing flows into off
  ad::Var out = tape.name(tanh(v) + x * 3.0 - u3 + relu(off), "out");
  tape.name(exp(x), "unused");  // recorded after the output: not swept

  const ad::StepLog log = ad::step_through(tape, out);
  const auto ref = tape.gradient(out);
  for (std::uint32_t e = 1; e <= out.index(); ++e) {
    const ad::AdjointTerms t = log.terms(e);
    double sum = 0.0;
    for (const auto& term : t.terms) sum += term.amount;  // in sweep order, as the sweep added them
    CHECK(sum == t.adjoint);
    CHECK(t.adjoint == ref.adjoint(e).flat(0));
    for (const auto& term : t.terms)
      if (term.from != 0) CHECK(term.amount == term.partial * term.incoming);
  }
  // u is read three times (u·u twice, pow once): three terms, each partial × adjoint.
  const auto tu = log.terms("u");
  CHECK(tu.terms.size() == 3);
  CHECK(log.terms("out").terms.size() == 1);  // the seed
  CHECK(log.terms("out").terms[0].from == 0);
  CHECK(log.steps().size() == out.index());
  CHECK(log.steps().front().entry == out.index());
  CHECK_THROWS_AS(log.terms("unused"), ad::InvalidArgument);  // after the output
  CHECK_THROWS_AS(log.terms("nope"), ad::InvalidArgument);
  CHECK_THROWS_AS(log.terms("x", {0}), ad::IndexError);

  const std::string text = log.format();
  CHECK(!has(text, "nothing to push back"));
  CHECK(has(log.format({}, true), fmt::format("#{} off = mul(x, -2)   adj 0  (nothing to push back)", off.index())));
  CHECK(log.steps()[out.index() - off.index()].skipped);
  CHECK(has(text, fmt::format("reverse sweep from #{} out", out.index())));
  CHECK(has(text, fmt::format("partial {:.6g} x adj", tu.terms[0].partial)));
  const std::string ex = log.explain("u");
  CHECK(has(ex, "the sum of 3 terms"));
}

TEST_CASE("inspect: step-through of the 3-4-3 network shows delta^(1) = f'(z) * sum_j W_ji delta_j^(2)") {
  ad::Tape tape;
  inspect_test::ScalarNet net(tape, 2);
  const ad::StepLog log = ad::step_through(tape, net.loss);
  const ad::Gradients& g = log.gradients();
  const auto ref = tape.gradient(net.loss);
  for (std::size_t i = 0; i < 4; ++i) CHECK(g[net.z1[i]] == ref[net.z1[i]]);

  for (std::size_t i = 0; i < 4; ++i) {
    // adj a_i^(1): one term per output unit j, each W_ji (the local partial of W_ji·a_i) times the
    // adjoint of the product, which is δ_j^(2) exactly (the sums above it pass it on with partial 1).
    const ad::AdjointTerms ta = log.terms(fmt::format("layer1.a[{}]", i));
    REQUIRE(ta.terms.size() == 3);
    std::vector<std::pair<double, double>> got, want;
    for (const auto& t : ta.terms) got.emplace_back(t.partial, t.incoming);
    for (std::size_t j = 0; j < 3; ++j) want.emplace_back(net.W2(static_cast<int>(j), static_cast<int>(i)), g[net.z2[j]]);
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    CHECK(got == want);
    double sum = 0.0;
    for (const auto& t : ta.terms) sum += t.amount;
    CHECK(sum == g[net.a1[i]]);
    // δ_i^(1): one term, σ'(z_i) times adj a_i.
    const ad::AdjointTerms tz = log.terms(fmt::format("layer1.z[{}]", i));
    REQUIRE(tz.terms.size() == 1);
    const double a = net.a1[i].value();
    CHECK(tz.terms[0].partial == a * (1.0 - a));
    CHECK(tz.terms[0].incoming == g[net.a1[i]]);
    CHECK(tz.adjoint == g[net.z1[i]]);
  }
  // δ^(2) of softmax + cross-entropy is a − y (seed 9.27 corrected); here through max/exp/log.
  double s = 0.0;
  for (auto& z : net.z2) s += std::exp(z.value());
  for (std::size_t j = 0; j < 3; ++j)
    CHECK(g[net.z2[j]] == doctest::Approx(std::exp(net.z2[j].value()) / s - (j == 2 ? 1.0 : 0.0)).epsilon(1e-14));

  // The tensor leaf W2 collects one element step per use; its terms sum to its adjoint.
  const ad::View gW2 = g[net.tW2];
  for (std::int64_t k = 0; k < 12; ++k) {
    const ad::AdjointTerms t = log.terms(net.tW2.index(), k);
    REQUIRE(t.terms.size() == 1);
    CHECK(t.terms[0].amount == gW2.flat(k));
    CHECK(has(t.terms[0].note, "the picked element"));
  }

  // explain: z_1 -> through sigmoid -> a_1 with its three products, all printed
  const std::string ex = log.explain("layer1.z[1]");
  CHECK(has(ex, "adj #"));
  CHECK(has(ex, "layer1.z[1] = "));
  CHECK(has(ex, "the sum of 1 term:"));
  CHECK(has(ex, "layer1.a[1] = "));
  CHECK(has(ex, "the sum of 3 terms:"));
  CHECK(lines_starting(ex, "from #").size() == 4);
  // The step log for layer 1 shows the sigmoid steps and their partials.
  const std::string steps = log.format({.prefix = "layer1."});
  CHECK(has(steps, "sigmoid(layer1.z[3])"));
  CHECK(!has(steps, "exp("));
}

TEST_CASE("inspect: step-through of tensor rules records before/after adjoints that sum to the adjoint") {
  ad::Tape tape;
  ad::Array<double> w(ad::make_shape({2, 3}), {0.5, -1.25, 2.0, 0.1, 3.0, -0.7});
  ad::Tensor tw = tape.name(tape.leaf(w), "w");
  ad::Tensor a = tape.name(inspect_test::twice(tw), "a");
  ad::Tensor b = tape.name(inspect_test::twice(inspect_test::twice(tw)), "b");
  ad::Var out = a(0, 1) * b(1, 2) + sin(a(1, 0)) + b(0, 1) * a(0, 1);
  tape.name(out, "out");
  const ad::StepLog log = ad::step_through(tape, out);
  const auto ref = tape.gradient(out);
  const ad::View gw = log.gradients()[tw];
  for (std::int64_t k = 0; k < 6; ++k) {
    const ad::AdjointTerms t = log.terms(tw.index(), k);
    REQUIRE(t.terms.size() == 2);  // from a = twice(w) and from the inner twice(w) under b
    double sum = 0.0;
    for (const auto& term : t.terms) sum += term.amount;
    CHECK(std::fabs(sum - gw.flat(k)) <= 1e-12 * std::max(1.0, std::fabs(gw.flat(k))));
    CHECK(gw.flat(k) == ref[tw].flat(k));
    // twice is element-wise with local derivative 2: each term is 2 × the adjoint it came from (up
    // to the rounding of after − before when something was already there)
    for (const auto& term : t.terms)
      CHECK(std::fabs(term.amount - 2.0 * term.incoming) <= 1e-12 * std::max(1.0, std::fabs(gw.flat(k))));
  }
  const std::string text = log.format({.prefix = "w"});
  CHECK(has(text, "rule twice: adj before"));
  CHECK(has(text, "added ["));
  const std::string ex = log.explain("w", {0, 1});
  CHECK(has(ex, "local 2 x adj"));
}

TEST_CASE("inspect: check_finite names the entry whose value is first NaN or infinite") {
  {
    ad::Tape tape;
    ad::Var x = tape.name(tape.variable(-1.0), "x");
    ad::Var y = tape.name(log(x), "logx");
    ad::Var z = tape.name(y * 2.0 + 1.0, "later");  // also NaN, but not the origin
    (void)z;
    try {
      ad::check_finite(tape);
      FAIL("no NonFiniteError");
    } catch (const ad::NonFiniteError& e) {
      const std::string m = e.what();
      CHECK(has(m, "the value of #2 logx is nan"));
      CHECK(has(m, "computed by log"));
      const auto own = lines_starting(m, "#2 ");
      REQUIRE(own.size() == 1);
      CHECK(has(own[0], "log"));
      CHECK(has(own[0], "= nan"));
      const auto arg = lines_starting(m, "#1 ");
      REQUIRE(arg.size() == 1);
      CHECK(has(arg[0], "x"));
      CHECK(has(arg[0], "= -1"));
      CHECK(!has(m, "later"));
    }
  }
  {
    ad::Tape tape;
    ad::Var p = tape.name(tape.variable(0.25), "p");
    ad::Var q = tape.name(tape.variable(0.0), "q");
    ad::Var ok = tape.name(log(p), "fine");
    ad::Var lq = log(q);  // its own entry (inside a longer expression it would be fused)
    ad::Var bad = tape.name(lq * ok, "prod");
    (void)bad;
    try {
      ad::check_finite(tape);
      FAIL("no NonFiniteError");
    } catch (const ad::NonFiniteError& e) {
      const std::string m = e.what();
      CHECK(has(m, "the value of #4 is -inf"));  // log(q), unnamed, before the product
      const auto arg = lines_starting(m, "#2 ");
      REQUIRE(arg.size() == 1);
      CHECK(has(arg[0], "q"));
      CHECK(has(arg[0], "= 0"));
    }
  }
  {
    ad::Tape tape;
    ad::Array<double> data(ad::make_shape({2, 2}), {1.0, 2.0, std::numeric_limits<double>::quiet_NaN(), 4.0});
    tape.name(tape.constant(data), "data");
    CHECK_THROWS_WITH_AS(ad::check_finite(tape), doctest::Contains("nan at element [1,0], given as a leaf"),
                         ad::NonFiniteError);
  }
  ad::Tape tape;
  inspect_test::ScalarNet net(tape);
  CHECK_NOTHROW(ad::check_finite(tape));
}

TEST_CASE("inspect: checked_gradient stops at the first adjoint that turns infinite") {
  ad::Tape tape;
  ad::Var x = tape.name(tape.variable(0.0), "x");
  ad::Var r = tape.name(sqrt(x), "root");  // value 0, partial 1/(2·0) = inf
  ad::Var out = tape.name(r * 3.0 + 1.0, "out");
  CHECK_NOTHROW(ad::check_finite(tape));  // every value is finite
  try {
    (void)ad::checked_gradient(tape, out);
    FAIL("no NonFiniteError");
  } catch (const ad::NonFiniteError& e) {
    const std::string m = e.what();
    CHECK(has(m, "the adjoint of #1 x became inf in the backward step of #2 root (sqrt)"));
    const auto own = lines_starting(m, "#1 ");
    REQUIRE(own.size() == 1);
    CHECK(has(own[0], "adj = inf"));
    const auto step = lines_starting(m, "#2 ");
    REQUIRE(step.size() == 1);
    CHECK(has(step[0], "sqrt"));
    CHECK(has(step[0], "adj = 3"));
  }
  // finite: the same gradient as the plain sweep
  ad::Tape t2;
  inspect_test::ScalarNet net(t2);
  const auto g = ad::checked_gradient(t2, net.loss);
  const auto ref = t2.gradient(net.loss);
  for (auto& z : net.z1) CHECK(g[z] == ref[z]);
  CHECK(ad::to_array<double>(g[net.tW1]).values()[5] == ad::to_array<double>(ref[net.tW1]).values()[5]);
}

TEST_CASE("inspect: a sweep from a tensor output needs one element, in each entry point") {
  ad::Tape tape;
  const ad::Tensor x = tape.leaf(ad::Array<double>({2}, {1.0, 2.0}));
  const ad::Tensor y = tape.name(x * 3.0, "y");
  const std::size_t entries = tape.size();
  const auto message = [](const char* what) {
    return doctest::Contains(fmt::format("{}: the output must have exactly one element; y is f64[2]", what).c_str());
  };
  CHECK_THROWS_WITH_AS(tape.gradient(y), message("gradient"), ad::ShapeError);
  CHECK_THROWS_WITH_AS(ad::step_through(tape, y), message("step_through"), ad::ShapeError);
  CHECK_THROWS_WITH_AS(ad::checked_gradient(tape, y), message("checked_gradient"), ad::ShapeError);
  CHECK(tape.size() == entries);  // nothing recorded
  const ad::Tensor s = sum(y);    // one element: all three accept it and agree
  CHECK(ad::step_through(tape, s).gradients()[x].flat(1) == tape.gradient(s)[x].flat(1));
  CHECK(ad::checked_gradient(tape, s)[x].flat(0) == 3.0);
}
