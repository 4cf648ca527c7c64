// nn/init and nn/optim: initialiser statistics and reproducibility; one SGD step against the seed's
// eqs. 9.14/9.15 with weight decay, worked by hand; momentum and Adam against hand-written loops.
// The loss here is built from scalar Vars reading tensor elements, so only the tape core is used
// (except in the apply_checked test, whose parameter is too large for that).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "autodiff/autodiff.hpp"
#include "nn/init.hpp"
#include "nn/optim.hpp"

namespace {

struct Stats {
  double mean = 0, var = 0, max_abs = 0;
};

template <class T>
Stats stats(const ad::Array<T>& a) {
  Stats s;
  for (T v : a.values()) {
    s.mean += v;
    s.max_abs = std::max(s.max_abs, std::abs(static_cast<double>(v)));
  }
  s.mean /= static_cast<double>(a.size());
  for (T v : a.values()) s.var += (v - s.mean) * (v - s.mean);
  s.var /= static_cast<double>(a.size() - 1);
  return s;
}

/// J0 = Σ_ij (g_ij W_ij + ½ W_ij²) + Σ_i h_i b_i, so ∂J0/∂W = g + W and ∂J0/∂b = h.
/// Records W and b (as a forward pass would) and returns the gradients.
ad::Gradients quadratic_loss(ad::Tape& tape, nn::Parameter& W, nn::Parameter& b, const std::vector<double>& g,
                             const std::vector<double>& h) {
  tape.clear();
  ad::Tensor w = W.record(tape), bb = b.record(tape);
  ad::Var J = tape.variable(0.0);
  for (std::int64_t i = 0; i < W.size(); ++i) {
    ad::Var wi = ad::element(w, {i / W.shape()[1], i % W.shape()[1]});
    J = J + g[static_cast<std::size_t>(i)] * wi + 0.5 * wi * wi;
  }
  for (std::int64_t i = 0; i < b.size(); ++i) J = J + h[static_cast<std::size_t>(i)] * ad::element(bb, {i});
  return tape.gradient(J);
}

struct Problem {
  std::shared_ptr<nn::Parameter> W = std::make_shared<nn::Parameter>(
      "layer1.W", ad::Array<double>(ad::Shape{2, 3}, {0.5, -1.0, 2.0, 0.25, -0.75, 1.5}), true);
  std::shared_ptr<nn::Parameter> b =
      std::make_shared<nn::Parameter>("layer1.b", ad::Array<double>(ad::Shape{2}, {0.3, -0.2}), false);
  std::vector<double> g{1.0, -2.0, 0.5, 3.0, -0.25, 0.125};
  std::vector<double> h{-1.5, 0.75};
};

}  // namespace

TEST_CASE("nn: initialisers have the variance they promise and are reproducible") {
  const std::int64_t out = 256, in = 784;
  struct Case {
    nn::Init init;
    double var;
    double bound;  // 0: unbounded
  };
  const Case cases[] = {
      {nn::Init::xavier_uniform, 2.0 / (in + out), std::sqrt(6.0 / (in + out))},
      {nn::Init::xavier_normal, 2.0 / (in + out), 0},
      {nn::Init::he_uniform, 2.0 / in, std::sqrt(6.0 / in)},
      {nn::Init::he_normal, 2.0 / in, 0},
  };
  for (const Case& c : cases) {
    CAPTURE(nn::to_string(c.init));
    nn::Rng rng(42);
    ad::Array<float> w(ad::Shape{out, in});
    nn::initialise(w, c.init, in, out, rng);
    const Stats s = stats(w);
    const double n = static_cast<double>(w.size());
    // 200,704 samples: the mean's standard error is sqrt(var/n); the variance estimate's relative
    // standard error is about sqrt(2/n) = 0.3% (normal) or less (uniform).  Bounds are 5 sigma.
    CHECK(std::abs(s.mean) < 5 * std::sqrt(c.var / n));
    CHECK(s.var == doctest::Approx(c.var).epsilon(5 * std::sqrt(2.0 / n)));
    if (c.bound > 0) CHECK(s.max_abs <= c.bound);
    else CHECK(s.max_abs > 3 * std::sqrt(c.var));  // a normal's tails do reach past 3 sigma in 200k draws

    // The same seed gives the same weights, in float32 and float64 alike; another seed does not.
    nn::Rng again(42), other(43);
    ad::Array<double> w64(ad::Shape{out, in});
    nn::initialise(w64, c.init, in, out, again);
    ad::Array<float> w2(ad::Shape{out, in});
    nn::initialise(w2, c.init, in, out, other);
    bool same = true, differs = false;
    for (std::int64_t i = 0; i < w.size(); ++i) {
      same = same && w[i] == static_cast<float>(w64[i]);
      differs = differs || w2[i] != w[i];
    }
    CHECK(same);
    CHECK(differs);
  }
  nn::Rng rng(1);
  ad::Array<float> w(ad::Shape{2, 2});
  CHECK_THROWS_AS(nn::initialise(w, nn::Init::he_normal, 0, 2, rng), ad::InvalidArgument);
}

TEST_CASE("nn: one SGD step is the seed's 9.14/9.15 with weight decay on W only") {
  Problem p;
  const double alpha = 0.1, lambda = 0.01;
  const std::vector<double> W0(p.W->array<double>().values().begin(), p.W->array<double>().values().end());
  const std::vector<double> b0(p.b->array<double>().values().begin(), p.b->array<double>().values().end());
  ad::Tape tape;
  nn::SGD opt({p.W, p.b}, {.lr = alpha, .weight_decay = lambda});
  opt.step(quadratic_loss(tape, *p.W, *p.b, p.g, p.h));
  for (std::size_t i = 0; i < W0.size(); ++i) {
    // J = J0 + (λ/2)‖W‖²: ∂J/∂W_ij = g_ij + W_ij + λ W_ij;  9.14: W ← W − α ∂J/∂W.
    const double dJ = p.g[i] + W0[i] + lambda * W0[i];
    CHECK(p.W->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(W0[i] - alpha * dJ).epsilon(1e-15));
  }
  for (std::size_t i = 0; i < b0.size(); ++i)  // 9.15: b ← b − α ∂J/∂b, no decay
    CHECK(p.b->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(b0[i] - alpha * p.h[i]).epsilon(1e-15));
}

TEST_CASE("nn: SGD with momentum (and Nesterov) matches a hand-written loop over 4 steps") {
  for (bool nesterov : {false, true}) {
    CAPTURE(nesterov);
    Problem p;
    const double alpha = 0.05, mu = 0.9, lambda = 0.02;
    std::vector<double> W(p.W->array<double>().values().begin(), p.W->array<double>().values().end());
    std::vector<double> b(p.b->array<double>().values().begin(), p.b->array<double>().values().end());
    std::vector<double> vW(W.size(), 0.0), vb(b.size(), 0.0);
    ad::Tape tape;
    nn::SGD opt({p.W, p.b}, {.lr = alpha, .momentum = mu, .weight_decay = lambda, .nesterov = nesterov});
    for (int step = 0; step < 4; ++step) {
      opt.step(quadratic_loss(tape, *p.W, *p.b, p.g, p.h));
      for (std::size_t i = 0; i < W.size(); ++i) {
        const double d = p.g[i] + W[i] + lambda * W[i];
        vW[i] = mu * vW[i] + d;
        W[i] -= alpha * (nesterov ? d + mu * vW[i] : vW[i]);
      }
      for (std::size_t i = 0; i < b.size(); ++i) {
        vb[i] = mu * vb[i] + p.h[i];
        b[i] -= alpha * (nesterov ? p.h[i] + mu * vb[i] : vb[i]);
      }
    }
    for (std::size_t i = 0; i < W.size(); ++i)
      CHECK(p.W->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(W[i]).epsilon(1e-14));
    for (std::size_t i = 0; i < b.size(); ++i)
      CHECK(p.b->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(b[i]).epsilon(1e-14));
  }
}

TEST_CASE("nn: Adam matches the textbook update with bias correction over 5 steps") {
  Problem p;
  const double alpha = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, lambda = 0.1;
  std::vector<double> W(p.W->array<double>().values().begin(), p.W->array<double>().values().end());
  std::vector<double> m(W.size(), 0.0), v(W.size(), 0.0);
  std::vector<double> b(p.b->array<double>().values().begin(), p.b->array<double>().values().end());
  std::vector<double> mb(b.size(), 0.0), vb(b.size(), 0.0);
  ad::Tape tape;
  nn::Adam opt({p.W, p.b}, {.lr = alpha, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = lambda});
  auto update = [&](double& w, double& mi, double& vi, double d, int t) {
    mi = b1 * mi + (1 - b1) * d;
    vi = b2 * vi + (1 - b2) * d * d;
    const double mhat = mi / (1 - std::pow(b1, t)), vhat = vi / (1 - std::pow(b2, t));
    w -= alpha * mhat / (std::sqrt(vhat) + eps);
  };
  for (int t = 1; t <= 5; ++t) {
    opt.step(quadratic_loss(tape, *p.W, *p.b, p.g, p.h));
    for (std::size_t i = 0; i < W.size(); ++i) update(W[i], m[i], v[i], p.g[i] + W[i] + lambda * W[i], t);
    for (std::size_t i = 0; i < b.size(); ++i) update(b[i], mb[i], vb[i], p.h[i], t);
  }
  CHECK(opt.steps() == 5);
  // The implementation folds the bias corrections into α and ε (algebraically equal); the two
  // orders of rounding differ by a few ulps per step.
  for (std::size_t i = 0; i < W.size(); ++i)
    CHECK(p.W->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(W[i]).epsilon(1e-13));
  for (std::size_t i = 0; i < b.size(); ++i)
    CHECK(p.b->array<double>()[static_cast<std::int64_t>(i)] == doctest::Approx(b[i]).epsilon(1e-13));
}

TEST_CASE("nn: an optimiser refuses gradients in which a parameter was not recorded, changing nothing") {
  Problem p;
  auto lonely = std::make_shared<nn::Parameter>("layer9.W", ad::Array<float>(ad::Shape{2}), true);
  ad::Tape tape;
  nn::SGD opt({p.W, p.b, lonely}, {.lr = 0.1});
  const auto W0 = p.W->array<double>();
  try {
    opt.step(quadratic_loss(tape, *p.W, *p.b, p.g, p.h));
    FAIL("no error");
  } catch (const ad::InvalidArgument& e) {
    CHECK(std::string(e.what()).find("layer9.W") != std::string::npos);
  }
  for (std::int64_t i = 0; i < W0.size(); ++i) CHECK(p.W->array<double>()[i] == W0[i]);
  CHECK_THROWS_AS(nn::SGD({p.W}, {.lr = -1.0}), ad::InvalidArgument);
  CHECK_THROWS_AS(nn::Adam({p.W}, {.beta1 = 1.0}), ad::InvalidArgument);
  CHECK_THROWS_AS(p.W->array<float>(), ad::DTypeError);
}

namespace {

/// The first element (parameter, flat index) of `params` that is NaN or infinite, or {-1, -1}.
std::pair<int, std::int64_t> first_bad(const nn::ParameterList& params) {
  for (std::size_t k = 0; k < params.size(); ++k) {
    const ad::View v = params[k]->view();
    for (std::int64_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v.flat(i))) return {static_cast<int>(k), i};
  }
  return {-1, -1};
}

std::vector<float> values_of(const nn::Parameter& p) {
  const auto& a = p.array<float>();
  return {a.data(), a.data() + a.size()};
}

}  // namespace

TEST_CASE("nn: apply_checked is apply, or puts every parameter back and names the first non-finite element") {
  // A float parameter large enough to be split over the threads, and a small one after it.  The loss
  // sum(w * c) + sum(u * e) has gradients c and e: c holds a few huge entries (w - lr c overflows
  // for SGD) and maybe a NaN; e is finite.  Each optimiser runs twin copies from the same start:
  // one with apply(), one with apply_checked().
  const std::int64_t n = 300000;
  struct Config {
    const char* name;
    std::function<std::unique_ptr<nn::Optimizer>(nn::ParameterList)> make;
  };
  const Config configs[] = {
      {"sgd", [](nn::ParameterList p) { return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 100.0}); }},
      {"sgd decay", [](nn::ParameterList p) {
         return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 100.0, .weight_decay = 0.5});
       }},
      {"momentum", [](nn::ParameterList p) {
         return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 100.0, .momentum = 0.9, .weight_decay = 0.1});
       }},
      {"nesterov", [](nn::ParameterList p) {
         return std::make_unique<nn::SGD>(p, nn::SGDOptions{.lr = 100.0, .momentum = 0.9, .nesterov = true});
       }},
      {"adam", [](nn::ParameterList p) { return std::make_unique<nn::Adam>(p, nn::AdamOptions{.lr = 0.5}); }},
  };
  for (const Config& config : configs) {
    for (const std::int64_t nan_at : {std::int64_t{-1}, std::int64_t{260000}, std::int64_t{7}}) {
      for (const bool huge : {false, true}) {
        CAPTURE(config.name);
        CAPTURE(nan_at);
        CAPTURE(huge);
        ad::Array<float> c(ad::Shape{n}), e(ad::Shape{5});
        for (std::int64_t i = 0; i < n; ++i) c[i] = 0.01f * static_cast<float>(i % 7) - 0.03f;
        for (std::int64_t i = 0; i < 5; ++i) e[i] = 0.25f * static_cast<float>(i);
        if (huge) c[200000] = c[250001] = 1e38f;
        if (nan_at >= 0) c[nan_at] = std::nanf("");
        struct Twin {
          std::shared_ptr<nn::Parameter> w = std::make_shared<nn::Parameter>("big.W", ad::Array<float>(ad::Shape{n}), true);
          std::shared_ptr<nn::Parameter> u = std::make_shared<nn::Parameter>("small.b", ad::Array<float>(ad::Shape{5}), false);
          std::unique_ptr<nn::Optimizer> opt;
          ad::Tape tape;
          void collect(const ad::Array<float>& c, const ad::Array<float>& e) {
            tape.clear();
            const ad::Tensor J = ad::sum(w->record(tape) * tape.constant(c)) + ad::sum(u->record(tape) * tape.constant(e));
            opt->collect(tape.gradient(J));
          }
        } plain, checked;
        for (Twin* t : {&plain, &checked}) {
          for (std::int64_t i = 0; i < n; ++i) t->w->array<float>()[i] = 0.001f * static_cast<float>(i % 1000) - 0.5f;
          t->opt = config.make({t->w, t->u});
        }
        for (int step = 0; step < 3; ++step) {  // a few steps, so that momentum and moments are not zero
          plain.collect(c, e);
          checked.collect(c, e);
          const auto w0 = values_of(*checked.w), u0 = values_of(*checked.u);
          plain.opt->apply();
          const auto bad = checked.opt->apply_checked();
          CHECK(!checked.opt->collected());
          const auto [k, i] = first_bad(plain.opt->parameters());
          if (k < 0) {  // the same update
            CHECK(!bad);
            CHECK(values_of(*checked.w) == values_of(*plain.w));
            CHECK(values_of(*checked.u) == values_of(*plain.u));
            continue;
          }
          REQUIRE(bad);
          CHECK(bad->parameter == static_cast<std::size_t>(k));
          CHECK(bad->index == i);
          const double after = plain.opt->parameters()[static_cast<std::size_t>(k)]->view().flat(i);
          CHECK((std::isnan(after) ? std::isnan(bad->value) : bad->value == after));
          CHECK(values_of(*checked.w) == w0);  // put back exactly
          CHECK(values_of(*checked.u) == u0);
          break;
        }
        if (nan_at >= 0) CHECK(first_bad(plain.opt->parameters()).first == 0);  // the NaN always gets through
      }
    }
  }
  nn::SGD idle({std::make_shared<nn::Parameter>("p", ad::Array<float>(ad::Shape{2}), true)});
  CHECK_THROWS_AS(idle.apply_checked(), ad::InvalidArgument);  // nothing collected
}
