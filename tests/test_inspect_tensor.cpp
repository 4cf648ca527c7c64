// Inspection of tapes built with the tensor ops and with nn: the listing of a layer, δ^(l) made
// visible as Σ_j W_ji δ_j^(l+1), the products of every matmul layout, and NaN/inf origins in tensors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <set>

#include "autodiff/autodiff.hpp"
#include "inspect_fixtures.hpp"
#include "nn/nn.hpp"

using inspect_test::line_of;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The seed's 3-4-3 network on a batch of 3 samples, written with tensor ops and nn's names.
struct TensorNet {
  ad::Array<double> x{ad::make_shape({3, 3}), {0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -2.0, 0.75, 1.0}};
  ad::Array<double> W1{ad::make_shape({4, 3}), {0.1, -0.2, 0.3, 0.4, 0.1, -0.5, -0.3, 0.2, 0.2, 0.0, -0.1, 0.6}};
  ad::Array<double> b1{ad::make_shape({4}), {0.1, -0.1, 0.0, 0.05}};
  ad::Array<double> W2{ad::make_shape({3, 4}), {0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.1, 0.3, 0.2, 0.6, -0.3, -0.1}};
  ad::Array<double> b2{ad::make_shape({3}), {0.0, 0.1, -0.1}};
  std::int32_t labels[3] = {1, 0, 2};
  ad::Tensor in, w1, c1, z1, a1, w2, c2, z2, loss;

  explicit TensorNet(ad::Tape& tape) {
    in = tape.name(tape.constant(x), "x");
    w1 = tape.name(tape.leaf(W1), "layer1.W");
    c1 = tape.name(tape.leaf(b1), "layer1.b");
    z1 = tape.name(matmul(in, w1, false, true) + c1, "layer1.z");
    a1 = tape.name(sigmoid(z1), "layer1.a");
    w2 = tape.name(tape.leaf(W2), "layer2.W");
    c2 = tape.name(tape.leaf(b2), "layer2.b");
    z2 = tape.name(matmul(a1, w2, false, true) + c2, "layer2.z");
    loss = tape.name(-mean(pick(log_softmax(z2), labels)), "loss");
  }
};

double sum_of(const ad::AdjointTerms& t) {
  double s = 0.0;
  for (const auto& term : t.terms) s += term.amount;
  return s;
}

double products_sum(const ad::Term& t) {
  double s = 0.0;
  for (const auto& p : t.products) s += p.factor * p.adjoint;
  return s;
}

}  // namespace

TEST_CASE("inspect: tensor listing shows shapes, constants and axes, and the layer filter takes the layer's ops") {
  ad::Tape tape;
  TensorNet net(tape);
  const std::string l = ad::listing(tape);
  const std::string lz = line_of(l, net.z1.index());
  CHECK(has(lz, "layer1.z"));
  CHECK(has(lz, "add"));
  CHECK(has(lz, fmt::format("(#{}, layer1.b)", net.z1.index() - 1)));
  CHECK(has(lz, "f64[3,4]"));
  CHECK(has(line_of(l, net.z1.index() - 1), "matmul"));
  CHECK(has(line_of(l, net.z1.index() - 1), "(x, layer1.W)"));
  CHECK(has(l, "log_softmax (layer2.z, axis=1)"));

  const auto layer = ad::select_entries(tape, {.prefix = "layer1."});
  const std::set<std::uint32_t> got(layer.begin(), layer.end());
  const std::set<std::uint32_t> want{net.w1.index(), net.c1.index(), net.z1.index() - 1, net.z1.index(), net.a1.index()};
  CHECK(got == want);

  ad::Tensor t = tape.name(net.a1 * 2.5, "scaled");
  ad::Tensor u = tape.name(1.0 - net.a1, "flipped");
  ad::Tensor v = tape.name(net.a1 / 4.0, "quarter");
  ad::Tensor w = tape.name(2.0 / net.a1, "inverse");
  ad::Tensor p = tape.name(pow(net.a1, 3.0), "cubed");
  ad::Tensor q = tape.name(sum(net.a1, 1), "rows");
  const std::string l2 = ad::listing(tape, {.values = false});
  CHECK(has(line_of(l2, t.index()), "(layer1.a, 2.5)"));
  CHECK(has(line_of(l2, u.index()), "(1, layer1.a)"));
  CHECK(has(line_of(l2, v.index()), "(layer1.a, 4)"));
  CHECK(has(line_of(l2, w.index()), "(2, layer1.a)"));
  CHECK(has(line_of(l2, p.index()), "(layer1.a, 3)"));
  CHECK(has(line_of(l2, q.index()), "(layer1.a, axis=1)"));
  CHECK(has(line_of(l2, q.index()), "f64[3]"));
}

TEST_CASE("inspect: the step-through shows delta^(1) = f'(z) * sum_j W_ji delta_j^(2) for a batch") {
  ad::Tape tape;
  TensorNet net(tape);
  const ad::StepLog log = ad::step_through(tape, net.loss);
  const ad::Gradients& g = log.gradients();
  const auto ref = tape.gradient(net.loss);
  const ad::View d1 = g[net.z1], d2 = g[net.z2], a1 = net.a1.value(), x = net.in.value();
  for (std::int64_t k = 0; k < 12; ++k) CHECK(d1.flat(k) == ref[net.z1].flat(k));

  for (std::int64_t b = 0; b < 3; ++b) {
    for (std::int64_t i = 0; i < 4; ++i) {
      // adj a^(1)[b,i]: one term, from layer 2's matmul, made of W2[j,i] × δ^(2)[b,j] for each j.
      const ad::AdjointTerms ta = log.terms("layer1.a", {b, i});
      REQUIRE(ta.terms.size() == 1);
      const ad::Term& mm = ta.terms[0];
      CHECK(mm.from == net.z2.index() - 1);
      REQUIRE(mm.products.size() == 3);
      for (std::int64_t j = 0; j < 3; ++j) {
        const ad::Product& p = mm.products[static_cast<std::size_t>(j)];
        CHECK(p.factor_label == fmt::format("layer2.W[{},{}]", j, i));
        CHECK(p.factor == net.W2(j, i));
        CHECK(p.adjoint == d2.at({b, j}));  // the matmul's output adjoint is δ^(2): the bias add passes it on
      }
      CHECK(std::fabs(products_sum(mm) - mm.amount) <= 1e-12);
      CHECK(sum_of(ta) == ta.adjoint);
      // δ^(1)[b,i]: one term through the sigmoid, σ'(z) = a(1 − a) times adj a.
      const ad::AdjointTerms tz = log.terms("layer1.z", {b, i});
      REQUIRE(tz.terms.size() == 1);
      const double s = a1.at({b, i});
      CHECK(tz.terms[0].amount == doctest::Approx(s * (1.0 - s) * ta.adjoint).epsilon(1e-14));
      CHECK(tz.adjoint == d1.at({b, i}));
    }
  }
  // ∂J/∂b^(1)_i = Σ_b δ^(1)[b,i]: the broadcast add shows one product per sample.
  for (std::int64_t i = 0; i < 4; ++i) {
    const ad::AdjointTerms tb = log.terms("layer1.b", {i});
    REQUIRE(tb.terms.size() == 1);
    REQUIRE(tb.terms[0].products.size() == 3);
    for (std::int64_t b = 0; b < 3; ++b) {
      CHECK(tb.terms[0].products[static_cast<std::size_t>(b)].factor == 1.0);
      CHECK(tb.terms[0].products[static_cast<std::size_t>(b)].adjoint == d1.at({b, i}));
    }
    CHECK(std::fabs(products_sum(tb.terms[0]) - tb.adjoint) <= 1e-12);
  }
  // ∂J/∂W^(1)[i,j] = Σ_b δ^(1)[b,i] x[b,j]  (seed 9.21, over the batch)
  for (std::int64_t k = 0; k < 12; ++k) {
    const std::int64_t i = k / 3, j = k % 3;
    const ad::AdjointTerms tw = log.terms(net.w1.index(), k);
    REQUIRE(tw.terms.size() == 1);
    REQUIRE(tw.terms[0].products.size() == 3);
    for (std::int64_t b = 0; b < 3; ++b) {
      const ad::Product& p = tw.terms[0].products[static_cast<std::size_t>(b)];
      CHECK(p.factor == x.at({b, j}));
      CHECK(p.adjoint == d1.at({b, i}));
    }
    CHECK(std::fabs(products_sum(tw.terms[0]) - tw.adjoint) <= 1e-12);
  }
  // Every element of every tensor: the terms add up to the adjoint.
  for (std::uint32_t e = 1; e <= net.loss.index(); ++e) {
    if (!tape.requires_grad(e)) continue;
    const auto n = ad::numel(tape.shape_of_entry(e));
    for (std::int64_t k = 0; k < n; ++k) {
      const ad::AdjointTerms t = log.terms(e, k);
      CHECK(std::fabs(sum_of(t) - t.adjoint) <= 1e-12 * std::max(1.0, std::fabs(t.adjoint)));
    }
  }

  const std::string ex = log.explain("layer1.z", {1, 2});
  CHECK(has(ex, "adj #5 layer1.z[1,2] = "));
  CHECK(has(ex, "local "));
  CHECK(has(ex, "sum of 3 products"));
  CHECK(has(ex, "layer2.W[1,2]"));
  CHECK(has(ex, "= adj layer2.z[1,1]"));
  const std::string steps = log.format({.prefix = "layer1."});
  CHECK(has(steps, "-> layer1.a       rule matmul: added"));
  CHECK(has(steps, "-> layer1.z       rule sigmoid: added"));
}

TEST_CASE("inspect: matmul products sum to the contribution for every transpose flag and batching") {
  struct Layout {
    ad::Shape a, b;
    bool ta, tb;
  };
  const Layout layouts[] = {
      {ad::make_shape({2, 3}), ad::make_shape({3, 4}), false, false},
      {ad::make_shape({3, 2}), ad::make_shape({3, 4}), true, false},
      {ad::make_shape({2, 3}), ad::make_shape({4, 3}), false, true},
      {ad::make_shape({3, 2}), ad::make_shape({4, 3}), true, true},
      {ad::make_shape({2, 2, 3}), ad::make_shape({2, 3, 4}), false, false},
      {ad::make_shape({2, 2, 3}), ad::make_shape({3, 4}), false, false},  // shared b
      {ad::make_shape({2, 3}), ad::make_shape({2, 3, 4}), false, false},  // shared a
      {ad::make_shape({2, 3, 2}), ad::make_shape({4, 3}), true, true},
  };
  for (const auto& lay : layouts) {
    CAPTURE(ad::to_string(lay.a));
    CAPTURE(ad::to_string(lay.b));
    CAPTURE(lay.ta);
    CAPTURE(lay.tb);
    ad::Tape tape;
    ad::Array<double> A(lay.a), B(lay.b);
    for (std::int64_t k = 0; k < A.size(); ++k) A[k] = 0.3 * static_cast<double>(k % 7) - 0.8;
    for (std::int64_t k = 0; k < B.size(); ++k) B[k] = 0.25 * static_cast<double>(k % 5) - 0.4;
    ad::Tensor ta = tape.name(tape.leaf(A), "A"), tb = tape.name(tape.leaf(B), "B");
    ad::Tensor c = matmul(ta, tb, lay.ta, lay.tb);
    ad::Tensor y = sum(square(c) * 0.5 + c);  // adj c = c + 1: a different number everywhere
    const ad::StepLog log = ad::step_through(tape, y);
    for (ad::Tensor arg : {ta, tb}) {
      for (std::int64_t k = 0; k < arg.size(); ++k) {
        const ad::AdjointTerms t = log.terms(arg.index(), k);
        REQUIRE(t.terms.size() == 1);
        // a shared (2-D) operand against a batched one collects the products of every batch
        const bool is_a = arg.index() == ta.index();
        const std::size_t shared = (is_a ? lay.a.size() == 2 && lay.b.size() == 3 : lay.b.size() == 2 && lay.a.size() == 3) ? 2 : 1;
        const std::size_t m = static_cast<std::size_t>(c.dim(-2)), n = static_cast<std::size_t>(c.dim(-1));
        CHECK(t.terms[0].products.size() == shared * (is_a ? n : m));
        CHECK(std::fabs(products_sum(t.terms[0]) - t.adjoint) <= 1e-12);
      }
    }
  }
}

TEST_CASE("inspect: NaN and inf origins inside tensors name the entry and the element") {
  ad::Tape tape;
  ad::Array<double> v(ad::make_shape({2, 2}), {1.0, 4.0, -1.0, 0.0});
  ad::Tensor x = tape.name(tape.leaf(v), "x");
  ad::Tensor r = tape.name(sqrt(x), "root");  // sqrt(-1) = nan at [1,0]
  ad::Tensor y = tape.name(sum(r), "total");
  (void)y;
  CHECK_THROWS_WITH_AS(ad::check_finite(tape), doctest::Contains("the value of #2 root is nan at element [1,0]"),
                       ad::NonFiniteError);

  ad::Tape t2;
  ad::Array<double> w(ad::make_shape({3}), {1.0, 0.0, 4.0});
  ad::Tensor x2 = t2.name(t2.leaf(w), "w");
  ad::Tensor r2 = t2.name(sqrt(x2), "root");  // finite values; d sqrt/dx = inf at 0
  ad::Tensor y2 = t2.name(sum(r2), "total");
  CHECK_NOTHROW(ad::check_finite(t2));
  try {
    (void)ad::checked_gradient(t2, y2);
    FAIL("no NonFiniteError");
  } catch (const ad::NonFiniteError& e) {
    const std::string m = e.what();
    CHECK(has(m, "the adjoint of #1 w became inf at element [1] in the backward step of #2 root (sqrt)"));
    CHECK(has(m, "adj = [0.5, inf, 0.25]"));
  }
  ad::Tape t3;
  TensorNet net(t3);
  const auto g = ad::checked_gradient(t3, net.loss);
  const auto ref = t3.gradient(net.loss);
  for (std::int64_t k = 0; k < 12; ++k) CHECK(g[net.w1].flat(k) == ref[net.w1].flat(k));
}

TEST_CASE("inspect: an nn::MLP tape is grouped by layer and shows delta^(1) from W^(2) and delta^(2)") {
  nn::Rng rng(11);
  nn::MLP net({3, 5, 2}, nn::tanh, rng, {.dtype = ad::DType::f64});
  const ad::Array<double> x(ad::make_shape({2, 3}), {0.5, -1.0, 2.0, 1.0, 0.0, -0.5});
  const std::int32_t labels[] = {1, 0};
  ad::Tape tape;
  const ad::Tensor loss = nn::softmax_cross_entropy(net(tape, x), labels);

  // layer 1: W, b, z (one linear entry) and a; nothing of layer 2 or the loss
  const auto l1 = ad::select_entries(tape, {.prefix = "layer1."});
  REQUIRE(l1.size() == 4);
  for (auto e : l1) CHECK((tape.name_of(e).empty() ? std::string("layer1.") : std::string(tape.name_of(e))).starts_with("layer1."));
  const std::string dot = ad::to_dot(tape);
  CHECK(has(dot, "label=\"layer1\""));
  CHECK(has(dot, "label=\"layer2\""));

  const ad::StepLog log = ad::step_through(tape, loss);
  const ad::View d2 = log.gradients()["layer2.z"];
  const ad::View W2 = net.linear(2).weight().view();
  for (std::int64_t b = 0; b < 2; ++b) {
    for (std::int64_t i = 0; i < 5; ++i) {
      const ad::AdjointTerms ta = log.terms("layer1.a", {b, i});
      REQUIRE(ta.terms.size() == 1);
      REQUIRE(ta.terms[0].products.size() == 2);
      for (std::int64_t j = 0; j < 2; ++j) {
        CHECK(ta.terms[0].products[static_cast<std::size_t>(j)].factor == W2.at({j, i}));
        CHECK(ta.terms[0].products[static_cast<std::size_t>(j)].adjoint == d2.at({b, j}));
      }
      const double a = tape.value_view(tape.find("layer1.a")).at({b, i});
      const ad::AdjointTerms tz = log.terms("layer1.z", {b, i});
      REQUIRE(tz.terms.size() == 1);
      CHECK(tz.terms[0].amount == doctest::Approx((1.0 - a * a) * ta.adjoint).epsilon(1e-14));  // tanh' = 1 − a²
    }
  }
  CHECK(has(log.explain("layer1.z", {1, 4}), "layer2.W[1,4]"));
}
