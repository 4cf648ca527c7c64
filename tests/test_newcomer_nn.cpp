// nn for the first hour: the recorded weight-decay term, networks built without a generator, and
// the Linear layer's error message.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

#include "nn/nn.hpp"
#include "nn_temp.hpp"

namespace {

const std::int32_t labels[] = {2, 0, 1, 2, 1};

ad::Array<double> batch() {
  ad::Array<double> x(ad::make_shape({5, 4}));
  for (std::int64_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.7 * static_cast<double>(i) + 0.3);
  return x;
}

double max_abs(const ad::View& v) {
  double m = 0;
  for (std::int64_t i = 0; i < v.size(); ++i) m = std::max(m, std::fabs(v.flat(i)));
  return m;
}

}  // namespace

TEST_CASE("newcomer: l2_penalty is (lambda/2) times the sum of squared weights, named, biases left out") {
  nn::Rng rng(11);
  nn::MLP net({4, 6, 3}, nn::tanh, rng, {.dtype = ad::DType::f64});
  for (const auto& p : net.parameters())  // non-zero biases, so leaving them out is visible
    for (double& v : p->array<double>().values()) v += 0.25;
  const double lambda = 0.03;
  ad::Tape tape;
  (void)net(tape, batch());
  const ad::Tensor pen = nn::l2_penalty(tape, net, lambda);

  double by_hand = 0;
  for (const auto& p : net.parameters())  // read through const: a mutable access would mark the leaves stale
    if (p->name().ends_with(".W"))
      for (double v : std::as_const(*p).array<double>().values()) by_hand += v * v;
  by_hand *= lambda / 2;
  CHECK(pen.item() == doctest::Approx(by_hand).epsilon(1e-14));
  CHECK(tape.label(pen.index(), "") == "l2_penalty");
  CHECK(ad::listing(tape).find("l2_penalty") != std::string::npos);

  const ad::Gradients g = tape.gradient(pen);
  for (int l = 1; l <= 2; ++l) {
    const auto& W = std::as_const(net.linear(l).weight()).array<double>();
    const ad::View dW = g[fmt::format("layer{}.W", l)];
    for (std::int64_t i = 0; i < W.size(); ++i) CHECK(dW.flat(i) == doctest::Approx(lambda * W[i]).epsilon(1e-14));
    CHECK(max_abs(g[fmt::format("layer{}.b", l)]) == 0.0);
  }
}

TEST_CASE("newcomer: l2_penalty gradient equals the optimiser's weight decay contribution lambda W") {
  const double lambda = 0.05, lr = 0.1;
  // Two identical networks (no generator: the same default-seeded weights).
  nn::MLP on_tape({4, 5, 5, 3}, nn::sigmoid, {.dtype = ad::DType::f64});
  nn::MLP in_optimiser({4, 5, 5, 3}, nn::sigmoid, {.dtype = ad::DType::f64});
  const ad::Array<double> x = batch();

  ad::Tape t1;  // J = data loss + (λ/2)Σ‖W‖² on the tape, SGD without weight decay
  const ad::Tensor data1 = nn::softmax_cross_entropy(on_tape(t1, x), labels);
  const ad::Tensor J = t1.name(data1 + nn::l2_penalty(t1, on_tape, lambda), "J");
  const ad::Gradients g1 = t1.gradient(J);

  ad::Tape t2;  // the data loss only; SGD adds λW
  const ad::Gradients g2 = t2.gradient(nn::softmax_cross_entropy(in_optimiser(t2, x), labels));

  // The adjoints differ by exactly λW on the weights and not at all on the biases.
  for (int l = 1; l <= 3; ++l) {
    const auto& W = std::as_const(on_tape.linear(l).weight()).array<double>();
    const std::string w = fmt::format("layer{}.W", l), b = fmt::format("layer{}.b", l);
    const ad::View d1 = g1[w], d2 = g2[w];
    for (std::int64_t i = 0; i < W.size(); ++i)
      CHECK(d1.flat(i) - d2.flat(i) == doctest::Approx(lambda * W[i]).epsilon(1e-12));
    const ad::View e1 = g1[b], e2 = g2[b];
    for (std::int64_t i = 0; i < e1.size(); ++i) CHECK(e1.flat(i) == e2.flat(i));
  }

  nn::SGD plain(on_tape.parameters(), {.lr = lr});
  nn::SGD decayed(in_optimiser.parameters(), {.lr = lr, .weight_decay = lambda});
  plain.step(g1);
  decayed.step(g2);
  const auto a = on_tape.parameters(), b = in_optimiser.parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t k = 0; k < a.size(); ++k) {
    const auto& va = a[k]->array<double>();
    const auto& vb = b[k]->array<double>();
    for (std::int64_t i = 0; i < va.size(); ++i)
      CHECK(va[i] == doctest::Approx(vb[i]).epsilon(1e-14));  // one step: the same update up to rounding
  }
}

TEST_CASE("newcomer: l2_penalty rejects a bad lambda and weights not recorded on the tape") {
  nn::MLP net({3, 2}, nn::relu, {.dtype = ad::DType::f64});
  ad::Tape tape;
  CHECK_THROWS_WITH_AS(nn::l2_penalty(tape, net, 0.1), doctest::Contains("layer1.W (f64[2,3]) is not recorded"),
                       ad::InvalidArgument);
  (void)net(tape, ad::Array<double>(ad::make_shape({1, 3}), {1.0, 2.0, 3.0}));
  CHECK_THROWS_AS(nn::l2_penalty(tape, net, -1.0), ad::InvalidArgument);
  CHECK_THROWS_AS(nn::l2_penalty(tape, net, std::nan("")), ad::InvalidArgument);
  CHECK(nn::l2_penalty(tape, net, 0.0).item() == 0.0);
  tape.clear();  // the recorded leaves are gone
  CHECK_THROWS_AS(nn::l2_penalty(tape, net, 0.1), ad::InvalidArgument);
}

TEST_CASE("newcomer: MLP built without a generator is default-seeded and loads saved weights") {
  nn::MLP a({4, 3, 2}, nn::relu), b({4, 3, 2}, nn::relu, nn::sigmoid);
  nn::Rng default_seeded;
  nn::MLP c({4, 3, 2}, nn::relu, default_seeded);
  for (std::size_t k = 0; k < a.parameters().size(); ++k) {
    const auto& va = a.parameters()[k]->array<float>();
    CHECK(va.values().size() == c.parameters()[k]->array<float>().values().size());
    for (std::int64_t i = 0; i < va.size(); ++i) {
      CHECK(va[i] == c.parameters()[k]->array<float>()[i]);
      CHECK(va[i] == b.parameters()[k]->array<float>()[i]);
    }
  }
  CHECK(b.describe().find("sigmoid") != std::string::npos);

  nn::Rng rng(99);
  nn::MLP trained({4, 3, 2}, nn::relu, rng);
  nn_test::TempDir tmp;
  nn::save(trained, tmp / "m.npz");
  nn::MLP loaded({4, 3, 2}, nn::relu);  // load-then-use: no generator needed
  nn::load(loaded, tmp / "m.npz");
  for (std::size_t k = 0; k < trained.parameters().size(); ++k) {
    const auto& want = trained.parameters()[k]->array<float>();
    const auto& got = loaded.parameters()[k]->array<float>();
    for (std::int64_t i = 0; i < want.size(); ++i) CHECK(got[i] == want[i]);
  }
}

TEST_CASE("newcomer: Linear names its input once in a shape error") {
  nn::Rng rng(1);
  nn::MLP net({5, 3}, nn::relu, rng);
  ad::Tape tape;
  try {
    (void)net(tape, ad::Array<float>(ad::make_shape({6, 4})));
    FAIL("no ShapeError");
  } catch (const ad::ShapeError& e) {
    CHECK(std::string(e.what()) == "layer1 (Linear(5 -> 3)): input is f32[6,4]; expected [B,5]");
  }
}

TEST_CASE("newcomer: BLAS summary warns when OPENBLAS_CORETYPE selects kernels slower than the CPU has") {
  using ad::blas::Simd;
  CHECK(ad::blas::core_simd("SkylakeX") == Simd::avx512);
  CHECK(ad::blas::core_simd("HASWELL") == Simd::avx2);
  CHECK(ad::blas::core_simd("Sandybridge") == Simd::avx);
  CHECK(ad::blas::core_simd("Prescott") == Simd::sse);
  CHECK(ad::blas::core_simd("Neoversen1") == Simd::unknown);

  ad::blas::Info user;
  user.core = "Haswell";
  user.core_from = "user";
  const std::string w = ad::blas::slow_core_warning(user, Simd::avx512);
  CHECK(w.starts_with("warning: BLAS runs the Haswell kernels (AVX2) but this CPU has AVX-512"));
  CHECK(w.find("OPENBLAS_CORETYPE=Haswell is set") != std::string::npos);
  CHECK(w.find("unset OPENBLAS_CORETYPE") != std::string::npos);
  CHECK(ad::blas::slow_core_warning(user, Simd::avx2).empty());     // the right kernels for an AVX2 CPU
  CHECK(ad::blas::slow_core_warning(user, Simd::unknown).empty());
  user.core = "SkylakeX";
  CHECK(ad::blas::slow_core_warning(user, Simd::avx512).empty());
  user.core = "Prescott";
  user.core_from = "library";
  CHECK(ad::blas::slow_core_warning(user, Simd::avx2).find("OpenBLAS chose it") != std::string::npos);

  // The line for this process: it names the core in use, and warns exactly when the check above does.
  const std::string line = ad::blas::summary_line();
  const ad::blas::Info& info = ad::blas::info();
  CHECK(line.starts_with("BLAS: "));
  if (!info.core.empty()) CHECK(line.find("core " + info.core) != std::string::npos);
  CHECK((line.find("\nwarning: ") != std::string::npos) ==
        !ad::blas::slow_core_warning(info, ad::blas::cpu_simd()).empty());
}

TEST_CASE("newcomer: an expression kept in a Var is recorded, and g of it is its adjoint") {
  // The compiling counterpart of tests/compile_fail/gradient_of_expr.cpp.
  ad::Tape tape;
  ad::Var x = tape.variable(2.0);
  ad::Var y = tape.variable(3.0);
  ad::Var e = x * y + 1.0;  // recorded
  ad::Gradients g = tape.gradient(ad::Var(e * x));
  CHECK(g[e] == 2.0);            // ∂(e·x)/∂e = x
  CHECK(g[x] == 3.0 * 2 + 7.0);  // e + x·∂e/∂x = (x y + 1) + x y at x = 2, y = 3
}
