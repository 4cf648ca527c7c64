// transpose, reshape, pick and one_hot; and the README's tensor snippet.
#include <doctest/doctest.h>

#include <string>

#include "autodiff/autodiff.hpp"
#include "jacobian.hpp"

using ad::Shape;
using ad::Tensor;
using X = std::span<const Tensor>;

TEST_CASE("ops: transpose, Jacobians and values") {
  jacobian::check([](ad::Tape&, X x) { return transpose(x[0]); }, {jacobian::random({2, 3}, 301)});
  jacobian::check([](ad::Tape&, X x) { return transpose(x[0]); }, {jacobian::random({2, 3, 4}, 302)});
  jacobian::check([](ad::Tape&, X x) { return transpose(x[0]); }, {jacobian::random({2, 1, 3, 2}, 303)});
  jacobian::check([](ad::Tape&, X x) { return transpose(x[0]) * x[1]; },
                  {jacobian::random({3, 1}, 304), jacobian::random({2, 3}, 305)});
  ad::Tape tape;
  ad::Array<double> a(Shape{2, 2, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
  const Tensor t = transpose(tape.leaf(a));
  REQUIRE(t.shape() == Shape{2, 3, 2});
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 2; ++i)
      for (std::int64_t j = 0; j < 3; ++j) CHECK(t.value().at({b, j, i}) == a(b, i, j));
}

TEST_CASE("ops: reshape, Jacobians, -1 and values") {
  jacobian::check([](ad::Tape&, X x) { return reshape(x[0], {3, 2}); }, {jacobian::random({2, 3}, 311)});
  jacobian::check([](ad::Tape&, X x) { return reshape(x[0], {-1}); }, {jacobian::random({2, 3, 2}, 312)});
  jacobian::check([](ad::Tape&, X x) { return reshape(x[0], {2, -1, 1}) * x[1]; },
                  {jacobian::random({6}, 313), jacobian::random({3, 1}, 314)});
  ad::Tape tape;
  ad::Array<float> a(Shape{2, 6});
  for (std::int64_t i = 0; i < 12; ++i) a[i] = static_cast<float>(i);
  const Tensor x = tape.leaf(a);
  CHECK(reshape(x, {3, -1}).shape() == Shape{3, 4});
  CHECK(reshape(x, {-1, 1, 2, 3}).shape() == Shape{2, 1, 2, 3});
  CHECK(reshape(x, {12}).value().flat(7) == 7.0f);
  const std::int64_t dims[] = {4, 3};
  const Tensor r = reshape(x, dims);
  CHECK(r.value().at({2, 1}) == 7.0f);
  CHECK(r.dtype() == ad::DType::f32);
  CHECK(reshape(tape.leaf(ad::Array<double>(Shape{})), {1, 1}).shape() == Shape{1, 1});
}

TEST_CASE("ops: shape errors name the op, the operand and the shapes") {
  ad::Tape tape;
  const Tensor x = tape.name(tape.leaf(ad::Array<double>(Shape{2, 6})), "x");
  const Tensor v = tape.leaf(ad::Array<double>(Shape{5}));
  const std::size_t before = tape.entries();
  CHECK_THROWS_WITH_AS(transpose(v), "transpose: needs at least 2 dimensions, x is f64[5]", ad::ShapeError);
  CHECK_THROWS_WITH_AS(reshape(x, {5, 2}), "reshape: cannot view x is f64[2,6] (12 elements) as [5,2] (10 elements)",
                       ad::ShapeError);
  CHECK_THROWS_WITH_AS(reshape(x, {5, -1}), "reshape: cannot view x is f64[2,6] as [5,-1]", ad::ShapeError);
  CHECK_THROWS_AS(reshape(x, {-1, -1}), ad::InvalidArgument);
  CHECK_THROWS_AS(reshape(x, {-2, -6}), ad::InvalidArgument);
  CHECK_THROWS_WITH_AS(reshape(x, {1, 1, 2, 3, 2}), "reshape: [1,1,2,3,2] is 5 dimensions; at most 4 are supported",
                       ad::ShapeError);
  CHECK(tape.entries() == before);
}

TEST_CASE("ops: pick, Jacobian, values and errors") {
  const std::int32_t labels[] = {2, 0, 3};
  jacobian::check([&](ad::Tape&, X x) { return pick(x[0], labels); }, {jacobian::random({3, 4}, 321)});
  jacobian::check([&](ad::Tape&, X x) { return pick(log_softmax(x[0]), labels); }, {jacobian::random({3, 4}, 322)});

  ad::Tape tape;
  ad::Array<float> a(Shape{3, 4});
  for (std::int64_t i = 0; i < 12; ++i) a[i] = static_cast<float>(i);
  const Tensor x = tape.name(tape.leaf(a), "logits");
  std::vector<std::int32_t> lab = {2, 0, 3};
  const Tensor p = pick(x, lab);
  lab[0] = 1;  // the labels were copied onto the tape: changing them now changes nothing
  CHECK(p.shape() == Shape{3});
  CHECK(p.value().flat(0) == 2.0f);
  CHECK(p.value().flat(1) == 4.0f);
  CHECK(p.value().flat(2) == 11.0f);
  const auto g = tape.gradient(sum(p));
  CHECK(g[x].at({0, 2}) == 1.0);
  CHECK(g[x].at({0, 1}) == 0.0);
  CHECK(g[x].at({2, 3}) == 1.0);

  const std::size_t before = tape.entries();
  const std::int32_t bad[] = {2, 4, 0};
  CHECK_THROWS_WITH_AS(pick(x, bad), "pick: label 4 in row 1 is outside [0, 4) for logits is f32[3,4]", ad::IndexError);
  const std::int32_t negative[] = {0, 0, -1};
  CHECK_THROWS_WITH_AS(pick(x, negative), "pick: label -1 in row 2 is outside [0, 4) for logits is f32[3,4]",
                       ad::IndexError);
  const std::int32_t two[] = {0, 1};
  CHECK_THROWS_WITH_AS(pick(x, two), "pick: 2 labels given for logits is f32[3,4] (3 rows)", ad::ShapeError);
  CHECK_THROWS_WITH_AS(pick(reshape(x, {12}), two), "pick: expected a 2-D [batch, classes] tensor, x is f32[12]",
                       ad::ShapeError);
  CHECK(tape.entries() == before + 1);  // only the reshape
}

TEST_CASE("ops: one_hot is a constant with a 1 at each label") {
  ad::Tape tape;
  const std::int32_t labels[] = {1, 0, 2, 1};
  const Tensor h = one_hot(tape, labels, 3);
  CHECK(h.dtype() == ad::DType::f32);
  REQUIRE(h.shape() == Shape{4, 3});
  for (std::int64_t b = 0; b < 4; ++b)
    for (std::int64_t c = 0; c < 3; ++c) CHECK(h.value().at({b, c}) == (c == labels[b] ? 1.0 : 0.0));
  CHECK_FALSE(tape.requires_grad(h.index()));
  // Cross-entropy written with one_hot equals the pick form, gradients included.
  ad::Array<double> z(Shape{4, 3}, {0.1, 0.5, -0.3, 1.2, 0.0, 0.3, -0.7, 0.2, 0.9, 0.4, 0.4, -0.1});
  const Tensor x = tape.leaf(z);
  const Tensor ce1 = -mean(sum(one_hot(tape, labels, 3, ad::DType::f64) * log_softmax(x), 1));
  const auto g1 = tape.gradient(ce1).array<double>(x);
  const Tensor ce2 = -mean(pick(log_softmax(x), labels));
  const auto g2 = tape.gradient(ce2).array<double>(x);
  CHECK(ce1.item() == doctest::Approx(ce2.item()).epsilon(1e-15));
  for (std::int64_t k = 0; k < 12; ++k) CHECK(g1[k] == doctest::Approx(g2[k]).epsilon(1e-14));

  const std::int32_t bad[] = {0, 3};
  CHECK_THROWS_WITH_AS(one_hot(tape, bad, 3), "one_hot: label 3 at position 1 is outside [0, 3)", ad::IndexError);
  CHECK_THROWS_AS(one_hot(tape, labels, -1), ad::InvalidArgument);
}

// The README's "Tensors on the same tape" snippet, compiled and run as written there (between the
// markers), then checked.
TEST_CASE("ops: README tensor snippet") {
  // ---- README snippet begin
  ad::Array<double> X({4, 3}), W({2, 3}), b({2});     // data and parameters live off the tape
  const std::int32_t labels[] = {0, 1, 1, 0};
  for (std::int64_t i = 0; i < X.size(); ++i) X[i] = 0.1 * static_cast<double>(i % 5) - 0.2;
  W(0, 1) = 0.5; W(1, 2) = -0.3; b(1) = 0.1;

  ad::Tape tape;
  ad::Tensor x = tape.name(tape.constant(X), "x");    // data: no gradient, no cost in the sweep
  ad::Tensor w = tape.name(tape.leaf(W), "W");        // parameters: leaves reading the Arrays
  ad::Tensor bias = tape.name(tape.leaf(b), "b");
  ad::Var temperature = tape.variable(2.0);           // a scalar on the same tape

  // z[i,k] = Σ_j W[k,j] x[i,j] + b[k]: [4,1,3] * [1,2,3] broadcasts to [4,2,3], summed over j;
  // the [2] bias broadcasts over the 4 rows.
  ad::Tensor z = tape.name(sum(reshape(x, {4, 1, 3}) * reshape(w, {1, 2, 3}), -1) + bias, "z");
  ad::Tensor loss = -mean(pick(log_softmax(z / temperature), labels));

  ad::Gradients g = tape.gradient(loss);              // one sweep: every adjoint
  ad::View dW = g[w];                                 // shaped like W: f64[2,3]
  ad::View db = g["b"];                               // by name
  double dt = g[temperature];                         // a Var's adjoint is a double
  ad::View delta = g["z"];                            // any recorded value: δ = ∂loss/∂z
  fmt::print("loss {:.4f}  dW(0,1) {:.4f}  db(1) {:.4f}  dT {:.4f}  delta(0,0) {:.4f}\n", loss.item(),
             dW.at({0, 1}), db.at({1}), dt, delta.at({0, 0}));

  try {
    x + w;                                            // [4,3] and [2,3] do not broadcast
  } catch (const ad::ShapeError& e) {
    fmt::print("{}\n", e.what());  // add: shapes cannot be broadcast: x is f64[4,3], W is f64[2,3]
  }
  // ---- README snippet end

  CHECK_THROWS_WITH_AS(x + w, "add: shapes cannot be broadcast: x is f64[4,3], W is f64[2,3]", ad::ShapeError);
  REQUIRE(dW.shape() == W.shape());
  // δ = (softmax(z/T) - onehot) / (4T), and db = Σ_i δ[i, ·].
  const ad::View p = softmax(z / temperature).value();
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t k = 0; k < 2; ++k)
      CHECK(delta.at({i, k}) ==
            doctest::Approx((p.at({i, k}) - (k == labels[i] ? 1.0 : 0.0)) / (4 * 2.0)).epsilon(1e-14));
  for (std::int64_t k = 0; k < 2; ++k) {
    double s = 0;
    for (std::int64_t i = 0; i < 4; ++i) s += delta.at({i, k});
    CHECK(db.at({k}) == doctest::Approx(s).epsilon(1e-14));
  }
}
