// The core: op descriptors, the one sweep and its hooks, vector-Jacobian products, version stamps
// (a stale tape is refused), and optimiser gradients summed over every use of a parameter, checked
// against central finite differences of the loss.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <utility>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "nn/nn.hpp"
#include "nn_temp.hpp"

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

template <class T>
ad::Array<T> random_array(ad::Shape shape, unsigned seed, double lo = -1.0, double hi = 1.0) {
  ad::Array<T> a(shape);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  for (auto& v : a.values()) v = static_cast<T>(u(rng));
  return a;
}

/// Checks the gradients `opt` collected against central differences of the loss recorded by
/// `loss(tape)`, in every element of every parameter of the optimiser (float64 parameters).
ad::GradientReport check_collected(nn::Optimizer& opt, const std::function<ad::Tensor(ad::Tape&)>& loss) {
  ad::GradientReport rep;
  rep.outputs = 1;
  ad::Tape scratch;
  const double J0 = loss(scratch).item();
  for (std::size_t k = 0; k < opt.parameters().size(); ++k) {
    ad::Array<double>& a = opt.parameters()[k]->array<double>();
    const std::span<double> g = opt.gradient<double>(k);
    rep.inputs += a.size();
    for (std::int64_t i = 0; i < a.size(); ++i) {
      const double w0 = std::as_const(a)[i];
      const ad::Difference d = ad::central_difference(
          [&](double v) {
            a[i] = v;
            scratch.clear();
            const double J = loss(scratch).item();
            a[i] = w0;
            return J;
          },
          w0, J0);
      ad::JacobianElement e = ad::compare(g[static_cast<std::size_t>(i)], d, ad::DType::f64);
      e.input = k;
      e.element = i;
      e.index = ad::index_text(a.shape(), i);
      rep.add(std::move(e));
    }
  }
  return rep;
}

/// Gives a float64 parameter random values.
void randomise(nn::Parameter& p, unsigned seed) {
  ad::Array<double>& a = p.array<double>();
  a = random_array<double>(a.shape(), seed, -0.8, 0.8);
}

}  // namespace

// ---- descriptors -------------------------------------------------------------------------------------

TEST_CASE("core: every entry names its op by a descriptor, one per op, and scalar codes share the table") {
  CHECK(std::string(ad::op_name(ad::Op::add)) == "add");
  CHECK(std::string(ad::op_name(ad::Op::rsub_c)) == "sub");
  CHECK(&ad::descriptor(ad::Op::tanh) == &ad::descriptor(ad::Op::tanh));
  CHECK(ad::descriptor(ad::Op::add).commutative);
  CHECK_FALSE(ad::descriptor(ad::Op::sub).commutative);

  ad::Tape tape;
  const ad::Tensor a = tape.leaf(random_array<double>({2, 3}, 1));
  const ad::Tensor b = tape.leaf(random_array<double>({3, 2}, 2));
  const ad::Tensor c1 = matmul(a, b), c2 = matmul(b, a);
  const ad::Tensor s = sum(c1);
  REQUIRE(c1.node().op == c2.node().op);  // one descriptor for every matmul
  CHECK(std::string(c1.node().op->name) == "matmul");
  CHECK(bool(c1.node().op->backward));
  CHECK(bool(c1.node().op->explain));     // step-through explains matmul products
  CHECK(bool(c1.node().op->tangent));     // forward mode: matmul's tangent rule
  CHECK(std::string(s.node().op->name) == "sum");
  CHECK(std::string(a.node().op->name) == "leaf");
  CHECK_FALSE(bool(a.node().op->backward));
  CHECK(std::string(tape.constant(random_array<double>({2}, 3)).node().op->name) == "const");
}

TEST_CASE("core: typed saved state shows the constant of c - x on the left even where values cannot tell") {
  // x - 2 and 2 - x agree at x = 2: the order comes from the op's saved state, not from the values.
  ad::Tape tape;
  const ad::Tensor x = tape.name(tape.leaf(ad::Array<double>(ad::Shape{2}, {2.0, 2.0})), "x");
  const ad::Tensor l = tape.name(2.0 - x, "l");
  const ad::Tensor r = tape.name(x - 2.0, "r");
  const ad::Tensor m = tape.name(ad::softmax(tape.leaf(random_array<double>({2, 3}, 4)), 0), "m");
  const std::string text = ad::listing(tape);
  CHECK(has(ad::entry_line(tape, l.index()), "sub"));
  CHECK(has(ad::entry_line(tape, l.index()), "(2, x)"));
  CHECK(has(ad::entry_line(tape, r.index()), "(x, 2)"));
  CHECK(has(ad::entry_line(tape, m.index()), "axis=0"));
  CHECK(has(text, "softmax"));
}

// ---- the sweep and its hooks --------------------------------------------------------------------------

TEST_CASE("core: sweep hooks see every entry once, last first, before and after its step") {
  ad::Tape tape;
  const ad::Tensor x = tape.leaf(random_array<double>({3}, 5));
  const ad::Var v = tape.variable(0.5);
  const ad::Tensor y = sum(tanh(x) * v);
  const ad::Var unused = v * 3.0;  // after y: not swept
  (void)unused;
  std::vector<std::uint32_t> before, after;
  std::vector<bool> ran;
  ad::SweepHooks hooks;
  hooks.before = [&](const ad::SweepStep& s) { before.push_back(s.entry); };
  hooks.after = [&](const ad::SweepStep& s) {
    after.push_back(s.entry);
    ran.push_back(s.runs);
  };
  const ad::Gradients g = tape.gradient(y, hooks);
  REQUIRE(before.size() == y.index());
  CHECK(before == after);
  for (std::size_t k = 0; k < before.size(); ++k) CHECK(before[k] == y.index() - k);
  // Leaves push nothing back; every op between them and y does.
  CHECK_FALSE(ran.back());  // x, the first entry
  CHECK(ran.front());       // y
  // The hooked sweep gives what the plain one gives.
  const ad::Array<double> gx = g.array<double>(x);
  const double gv = g[v];
  const ad::Gradients plain = tape.gradient(y);
  const auto px = plain[x].as<double>();
  for (std::int64_t i = 0; i < 3; ++i) CHECK(gx[i] == px[static_cast<std::size_t>(i)]);
  CHECK(gv == plain[v]);
}

TEST_CASE("core: vjp with any cotangent equals the gradient of the cotangent-weighted sum") {
  ad::Tape tape;
  const ad::Array<double> xa = random_array<double>({2, 3}, 6);
  const ad::Array<float> c32 = random_array<float>({2, 3}, 7);  // converted to the output's type
  const ad::Tensor x = tape.leaf(xa);
  const ad::Tensor y = exp(x) * x;
  const ad::Gradients g = tape.vjp(y, c32.view());
  const ad::Array<double> gx = g.array<double>(x);
  const ad::Gradients h = tape.gradient(sum(y * tape.constant(ad::to_array<double>(c32.view()))));
  const auto hx = h[x].as<double>();
  for (std::int64_t i = 0; i < 6; ++i) CHECK(gx[i] == doctest::Approx(hx[static_cast<std::size_t>(i)]).epsilon(1e-15));
  CHECK_THROWS_AS(tape.vjp(y, ad::Array<double>(ad::Shape{3, 2}).view()), ad::ShapeError);
  try {
    (void)tape.vjp(tape.name(y, "y"), ad::Array<double>(ad::Shape{6}).view());
  } catch (const ad::ShapeError& e) {
    CHECK(has(e.what(), "f64[6]"));
    CHECK(has(e.what(), "y is f64[2,3]"));
  }
}

TEST_CASE("core: readers list every leaf of a buffer, and an after-hook knows when its gradient is final") {
  nn::Rng rng(11);
  nn::Linear lin(3, 3, rng, {.dtype = ad::DType::f64});
  ad::Tape tape;
  const ad::Array<double> x = random_array<double>({2, 3}, 12);
  const ad::Tensor J = sum(square(lin.forward(tanh(lin(tape, x)))));
  const std::vector<std::uint32_t> readers = tape.readers(lin.weight().array<double>());
  REQUIRE(readers.size() == 2);
  CHECK(readers[0] < readers[1]);
  CHECK(tape.readers(x).size() == 1);  // the input, a constant leaf
  // The pattern of data-parallel training: start reducing W's gradient once the sweep has passed
  // the first (lowest) entry that reads it; no later step can add to it.
  ad::Array<double> early(lin.weight().shape());
  bool seen = false;
  ad::SweepHooks hooks;
  hooks.after = [&](const ad::SweepStep& s) {
    if (s.entry != readers.front()) return;
    seen = true;
    for (auto e : readers) {
      const auto a = s.gradients.adjoint(e).as<double>();
      for (std::int64_t i = 0; i < early.size(); ++i) early[i] += a[static_cast<std::size_t>(i)];
    }
  };
  const ad::Gradients g = tape.gradient(J, hooks);
  REQUIRE(seen);
  nn::SGD opt(lin.parameters(), {.lr = 0.1});
  opt.collect(g);
  const std::span<double> final_w = opt.gradient<double>(0);
  for (std::int64_t i = 0; i < early.size(); ++i) CHECK(std::as_const(early)[i] == final_w[static_cast<std::size_t>(i)]);
  opt.apply();
}

// ---- version stamps ----------------------------------------------------------------------------------

TEST_CASE("core: Array version stamps move with writes, not with reads") {
  ad::Array<double> a(ad::Shape{2, 2});
  const std::uint64_t v0 = a.version();
  (void)std::as_const(a)[0];
  (void)std::as_const(a).data();
  (void)std::as_const(a)(1, 1);
  CHECK(a.version() == v0);
  a[0] = 1.0;
  CHECK(a.version() > v0);
  const std::uint64_t v1 = a.version();
  a(1, 0) = 2.0;
  CHECK(a.version() > v1);
  const std::uint64_t v2 = a.version();
  a.touch();
  CHECK(a.version() > v2);
  const ad::Array<double> copy = a;  // a copy is a new buffer with its own stamp
  CHECK(copy.version_stamp() != a.version_stamp());
  ad::Array<double> moved = std::move(a);
  CHECK(moved.version() > v2);
}

TEST_CASE("core: sweeping a tape after an optimiser step throws StaleTapeError naming the parameter") {
  nn::Rng rng(21);
  nn::MLP net({3, 4, 2}, nn::tanh, rng, {.dtype = ad::DType::f64});
  const ad::Array<double> x = random_array<double>({5, 3}, 22);
  const std::vector<std::int32_t> y{0, 1, 1, 0, 1};
  nn::SGD opt(net.parameters(), {.lr = 0.5});
  ad::Tape tape;
  const ad::Tensor J = nn::softmax_cross_entropy(net(tape, x), y);
  const ad::Tensor dx = tape.name(tape.leaf(x), "x2");  // another leaf, read by nothing
  (void)dx;
  opt.step(tape.gradient(J));
  try {
    (void)tape.gradient(J);
    FAIL("the stale tape was swept");
  } catch (const ad::StaleTapeError& e) {
    CHECK(has(e.what(), "layer1.W"));
    CHECK(has(e.what(), "f64[4,3]"));
  }
  CHECK_THROWS_AS(ad::step_through(tape, J), ad::StaleTapeError);
  CHECK_THROWS_AS(ad::checked_gradient(tape, J), ad::StaleTapeError);
  // Recording again is the cure.
  tape.clear();
  const ad::Tensor J2 = nn::softmax_cross_entropy(net(tape, x), y);
  CHECK_NOTHROW((void)tape.gradient(J2));
  // A user's write through the Array, and nn::load, count as changes too.
  net.linear(2).bias().array<double>()[1] += 0.25;
  CHECK_THROWS_AS((void)tape.gradient(J2), ad::StaleTapeError);
  tape.clear();
  const ad::Tensor J3 = nn::softmax_cross_entropy(net(tape, x), y);
  nn_test::TempDir dir;
  nn::save(net, dir / "w.npz");
  nn::load(net, dir / "w.npz");
  CHECK_THROWS_AS((void)tape.gradient(J3), ad::StaleTapeError);
}

// ---- gradients by parameter ---------------------------------------------------------------------------

TEST_CASE("core: one Linear used twice steps by the sum of both uses, as central differences say") {
  nn::Rng rng(31);
  nn::Linear lin(3, 3, rng, {.dtype = ad::DType::f64});
  randomise(lin.bias(), 32);
  const ad::Array<double> x = random_array<double>({4, 3}, 33);
  const std::vector<std::int32_t> y{2, 0, 1, 2};
  const auto loss = [&](ad::Tape& t) { return nn::softmax_cross_entropy(lin.forward(ad::tanh(lin(t, x))), y); };
  nn::SGD opt(lin.parameters(), {.lr = 0.25});
  ad::Tape tape;
  const ad::Tensor J = loss(tape);
  const ad::Gradients g = tape.gradient(J);
  opt.collect(g);
  // The last use alone (what an optimiser reading one handle would take) is far from the sum.
  const auto last = g[lin.weight().recorded()].as<double>();
  const ad::GradientReport rep = check_collected(opt, loss);
  CHECK_MESSAGE(rep.passed, rep.message());
  CHECK(rep.compared == 12);
  const std::span<double> sum_w = opt.gradient<double>(0);
  double diff = 0, norm = 0;
  for (std::size_t i = 0; i < sum_w.size(); ++i) diff += std::fabs(sum_w[i] - last[i]), norm += std::fabs(sum_w[i]);
  CHECK(diff > 0.1 * norm);
  // The step is W - lr * (the summed gradient).
  ad::Array<double> expected = lin.weight().array<double>();
  for (std::int64_t i = 0; i < expected.size(); ++i) expected[i] -= 0.25 * sum_w[static_cast<std::size_t>(i)];
  opt.apply();
  const ad::Array<double>& w = lin.weight().array<double>();
  for (std::int64_t i = 0; i < w.size(); ++i) CHECK(std::as_const(w)[i] == std::as_const(expected)[i]);
}

TEST_CASE("core: two modules sharing one Parameter step once by both gradients, as central differences say") {
  nn::Rng rng(41);
  nn::Linear enc(3, 3, rng, {.dtype = ad::DType::f64, .layer = 1});
  auto dec_b = std::make_shared<nn::Parameter>("layer2.b", random_array<double>({3}, 42), false);
  nn::Linear dec(enc.shared_weight(), dec_b, 2);  // tied weights
  randomise(enc.bias(), 43);
  const ad::Array<double> x = random_array<double>({4, 3}, 44);
  const auto loss = [&](ad::Tape& t) {
    const ad::Tensor z = dec.forward(ad::sigmoid(enc(t, x)));
    return ad::mean(ad::square(z - t.constant(x)));
  };
  nn::ParameterList all = enc.parameters();
  for (auto& p : dec.parameters()) all.push_back(p);
  REQUIRE(all.size() == 4);
  nn::Adam opt(all, {.lr = 1e-2});
  REQUIRE(opt.parameters().size() == 3);  // W once
  ad::Tape tape;
  opt.collect(tape.gradient(loss(tape)));
  const ad::GradientReport rep = check_collected(opt, loss);
  CHECK_MESSAGE(rep.passed, rep.message());
  CHECK(rep.compared == 9 + 3 + 3);
  const ad::Array<double> before = enc.weight().array<double>();
  opt.apply();
  CHECK(opt.steps() == 1);
  // One Adam step moves every element by about lr (m̂/√v̂ = ±1 on the first step), not twice that.
  const ad::Array<double>& after = dec.weight().array<double>();
  for (std::int64_t i = 0; i < after.size(); ++i)
    CHECK(std::fabs(std::as_const(after)[i] - before[i]) == doctest::Approx(1e-2).epsilon(1e-3));
}

TEST_CASE("core: collect then apply equals step, and gradients can be changed in between") {
  nn::Rng rng(51), rng_twin(51);
  nn::MLP net({4, 5, 3}, nn::relu, rng);
  nn::MLP twin({4, 5, 3}, nn::relu, rng_twin);  // the same weights
  const ad::Array<float> x = random_array<float>({6, 4}, 52, 0.0, 1.0);
  const std::vector<std::int32_t> y{0, 1, 2, 0, 1, 2};
  nn::SGD a(net.parameters(), {.lr = 0.25});
  nn::SGD b(twin.parameters(), {.lr = 0.125});
  CHECK_THROWS_AS(a.apply(), ad::InvalidArgument);  // nothing collected
  ad::Tape ta, tb;
  a.collect(ta.gradient(nn::softmax_cross_entropy(net(ta, x), y)));
  CHECK(a.collected());
  CHECK_THROWS_AS((void)a.gradient<double>(0), ad::DTypeError);
  for (std::size_t k = 0; k < a.parameters().size(); ++k)
    for (float& v : a.gradient<float>(k)) v *= 0.5f;  // e.g. an average over two processes
  a.apply();
  CHECK_FALSE(a.collected());
  b.step(tb.gradient(nn::softmax_cross_entropy(twin(tb, x), y)));
  for (std::size_t k = 0; k < a.parameters().size(); ++k) {
    const auto pa = std::as_const(*a.parameters()[k]).array<float>().values();
    const auto pb = std::as_const(*b.parameters()[k]).array<float>().values();
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(pa[i] == pb[i]);
  }
  // A parameter that was not recorded makes collect throw, naming it.
  nn::Rng rng2(53);
  nn::Linear stranger(4, 2, rng2, {.layer = 9});
  nn::ParameterList ps = net.parameters();
  ps.push_back(stranger.shared_weight());
  nn::SGD c(ps, {.lr = 0.1});
  ta.clear();
  const ad::Tensor J = nn::softmax_cross_entropy(net(ta, x), y);
  try {
    c.collect(ta.gradient(J));
    FAIL("collect accepted an unrecorded parameter");
  } catch (const ad::InvalidArgument& e) {
    CHECK(has(e.what(), "layer9.W"));
    CHECK(has(e.what(), "not recorded"));
  }
  CHECK_FALSE(c.collected());
}
