// nn/linear, nn/activation, nn/sequential: the seed's orientation and names, shapes, values and
// gradients against hand loops, validation before recording.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/nn.hpp"

namespace {

ad::Array<double> ramp(const ad::Shape& s, double start, double step) {
  ad::Array<double> a(s);
  for (std::int64_t i = 0; i < a.size(); ++i) a[i] = start + step * static_cast<double>(i % 7) - 0.01 * static_cast<double>(i);
  return a;
}

}  // namespace

TEST_CASE("nn: Linear computes z = x·Wᵀ + b with W [out,in], and its gradients are δᵀx and Σ δ") {
  nn::Rng rng(3);
  nn::Linear layer(3, 2, rng, {.dtype = ad::DType::f64, .layer = 2});
  CHECK(layer.weight().name() == "layer2.W");
  CHECK(layer.bias().name() == "layer2.b");
  CHECK(layer.weight().shape() == ad::Shape{2, 3});
  CHECK(layer.bias().shape() == ad::Shape{2});
  CHECK(!layer.bias().decay());
  CHECK(layer.weight().decay());
  auto& b = layer.bias().array<double>();
  b[0] = 0.5;
  b[1] = -0.25;
  const auto& W = layer.weight().array<double>();

  const ad::Array<double> x = ramp({4, 3}, -0.6, 0.3);
  const ad::Array<double> c = ramp({4, 2}, 1.0, -0.4);  // J = Σ c ⊙ z, so δ = ∂J/∂z = c
  ad::Tape tape;
  ad::Tensor z = layer(tape, x);
  REQUIRE(z.shape() == ad::Shape{4, 2});
  ad::Tensor J = ad::sum(z * tape.constant(c));
  auto g = tape.gradient(J);
  for (std::int64_t r = 0; r < 4; ++r)
    for (std::int64_t i = 0; i < 2; ++i) {
      double want = b[i];
      for (std::int64_t j = 0; j < 3; ++j) want += W(i, j) * x(r, j);
      CHECK(z.value().at({r, i}) == doctest::Approx(want).epsilon(1e-15));
    }
  const ad::View dz = g["layer2.z"];
  const ad::View dW = g["layer2.W"];
  const ad::View db = g["layer2.b"];
  for (std::int64_t i = 0; i < 2; ++i) {
    double sum_delta = 0;
    for (std::int64_t r = 0; r < 4; ++r) {
      CHECK(dz.at({r, i}) == c(r, i));
      sum_delta += c(r, i);
    }
    CHECK(db.at({i}) == doctest::Approx(sum_delta).epsilon(1e-15));
    for (std::int64_t j = 0; j < 3; ++j) {
      double want = 0;  // (δᵀ x)_ij: 9.21 summed over the batch
      for (std::int64_t r = 0; r < 4; ++r) want += c(r, i) * x(r, j);
      CHECK(dW.at({i, j}) == doctest::Approx(want).epsilon(1e-14));
    }
  }
}

TEST_CASE("nn: Linear refuses a wrong input shape or dtype before recording anything") {
  nn::Rng rng(1);
  nn::Linear layer(3, 2, rng);
  ad::Tape tape;
  ad::Tensor bad = tape.constant(ad::Array<float>(ad::Shape{4, 5}));
  ad::Tensor f64 = tape.constant(ad::Array<double>(ad::Shape{4, 3}));
  const std::size_t before = tape.entries();
  try {
    layer(bad);
    FAIL("no error");
  } catch (const ad::ShapeError& e) {
    const std::string m = e.what();
    CHECK(m.find("layer1") != std::string::npos);
    CHECK(m.find("f32[4,5]") != std::string::npos);
    CHECK(m.find("[B,3]") != std::string::npos);
  }
  CHECK_THROWS_AS(layer(f64), ad::DTypeError);
  CHECK(tape.entries() == before);
  CHECK_THROWS_AS(nn::Linear(0, 2, rng), ad::InvalidArgument);
}

TEST_CASE("nn: MLP names z^(l), a^(l) and parameters layer by layer, as in the seed") {
  nn::Rng rng(11);
  nn::MLP net({4, 5, 3}, nn::relu, nn::softmax, rng, {.dtype = ad::DType::f64});
  CHECK(net.layers() == 2);
  CHECK(net.size() == 4);
  const auto params = net.parameters();
  REQUIRE(params.size() == 4);
  const char* names[] = {"layer1.W", "layer1.b", "layer2.W", "layer2.b"};
  const ad::Shape shapes[] = {{5, 4}, {5}, {3, 5}, {3}};
  for (std::size_t k = 0; k < 4; ++k) {
    CHECK(params[k]->name() == names[k]);
    CHECK(params[k]->shape() == shapes[k]);
  }
  // Default initialisation: He (uniform) before relu, Xavier/Glorot (uniform) before softmax.
  const auto& W1 = net.linear(1).weight().array<double>();
  const auto& W2 = net.linear(2).weight().array<double>();
  for (double w : W1.values()) CHECK(std::abs(w) <= std::sqrt(6.0 / 4));
  for (double w : W2.values()) CHECK(std::abs(w) <= std::sqrt(6.0 / (5 + 3)));
  for (double v : net.linear(1).bias().array<double>().values()) CHECK(v == 0.0);

  ad::Tape tape;
  ad::Tensor a = net(tape, ramp({6, 4}, -1.0, 0.35));
  CHECK(a.shape() == ad::Shape{6, 3});
  for (const char* n : {"layer1.z", "layer1.a", "layer2.z", "layer2.a", "layer1.W", "layer2.b"})
    CHECK_MESSAGE(tape.find(n) != 0, n);
  CHECK(tape.find("layer2.a") == a.index());
  // a^(1) = relu(z^(1)) element by element; a^(2) rows are softmax probabilities.
  const ad::View z1 = tape.value_view(tape.find("layer1.z")), a1 = tape.value_view(tape.find("layer1.a"));
  for (std::int64_t i = 0; i < z1.size(); ++i) CHECK(a1.flat(i) == std::max(z1.flat(i), 0.0));
  for (std::int64_t r = 0; r < 6; ++r) {
    double s = 0;
    for (std::int64_t k = 0; k < 3; ++k) s += a.value().at({r, k});
    CHECK(s == doctest::Approx(1.0).epsilon(1e-15));
  }
  CHECK(net.describe().find("layer2: Linear(5 -> 3)") != std::string::npos);
  CHECK_THROWS_AS(net.linear(3), ad::IndexError);
  CHECK_THROWS_AS(nn::MLP({4}, nn::relu, rng), ad::InvalidArgument);
}

TEST_CASE("nn: an identity output layer names one entry both layer<L>.z and layer<L>.a") {
  nn::Rng rng(5);
  nn::MLP net({3, 4, 2}, nn::tanh, rng);
  ad::Tape tape;
  ad::Tensor out = net(tape, ad::Array<float>(ad::Shape{2, 3}, {0.1f, 0.2f, 0.3f, -0.4f, 0.5f, -0.6f}));
  CHECK(tape.find("layer2.z") == out.index());
  CHECK(tape.find("layer2.a") == out.index());
  const ad::View z1 = tape.value_view(tape.find("layer1.z")), a1 = tape.value_view(tape.find("layer1.a"));
  for (std::int64_t i = 0; i < z1.size(); ++i) CHECK(a1.flat(i) == doctest::Approx(std::tanh(z1.flat(i))).epsilon(1e-6));
}

TEST_CASE("nn: MLPs from the same seed are identical, and activations are found by name") {
  nn::Rng r1(9), r2(9), r3(10);
  nn::MLP a({6, 4, 2}, nn::leaky_relu.with_slope(0.2), r1), b({6, 4, 2}, nn::leaky_relu.with_slope(0.2), r2),
      c({6, 4, 2}, nn::leaky_relu, r3);
  const auto pa = a.parameters(), pb = b.parameters(), pc = c.parameters();
  bool same = true, differs = false;
  for (std::size_t k = 0; k < pa.size(); ++k)
    for (std::int64_t i = 0; i < pa[k]->size(); ++i) {
      same = same && pa[k]->view().flat(i) == pb[k]->view().flat(i);
      differs = differs || pa[k]->view().flat(i) != pc[k]->view().flat(i);
    }
  CHECK(same);
  CHECK(differs);
  CHECK(nn::leaky_relu.with_slope(0.2).name() == "leaky_relu(0.2)");
  CHECK(nn::sigmoid.name() == "sigmoid");
  ad::Tape tape;
  ad::Tensor z = tape.constant(ad::Array<double>(ad::Shape{3}, {-2.0, 0.0, 3.0}));
  CHECK(nn::leaky_relu.with_slope(0.2)(z).value().flat(0) == doctest::Approx(-0.4).epsilon(1e-15));
  CHECK(nn::identity(z).index() == z.index());
}
