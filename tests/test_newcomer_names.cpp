// What nn records is listed under the names the README promises: every z^(l) as layer<l>.z (the
// output layer's too), every a^(l) as layer<l>.a, the loss as "loss", and the fused
// softmax_cross_entropy as one entry with its own rule.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "nn/nn.hpp"

namespace {

/// (name, op) of every entry after the sink, in recording order.
std::vector<std::pair<std::string, std::string>> entries(const ad::Tape& tape) {
  std::vector<std::pair<std::string, std::string>> r;
  for (std::uint32_t i = 1; i < tape.size(); ++i) {
    const ad::Node* n = tape.node(i);
    r.emplace_back(std::string(tape.name_of(i)), n ? n->op->name : ad::op_name(tape.op(i)));
  }
  return r;
}

const std::int32_t labels[] = {1, 0};

ad::Array<double> batch() { return ad::Array<double>(ad::make_shape({2, 3}), {0.5, -1.0, 2.0, 0.25, 0.75, -1.5}); }

}  // namespace

TEST_CASE("newcomer: names in the listing for an MLP with an identity output and softmax_cross_entropy") {
  nn::Rng rng(7);
  nn::MLP net({3, 4, 3}, nn::sigmoid, rng, {.dtype = ad::DType::f64});
  ad::Tape tape;
  const ad::Tensor logits = net(tape, batch());
  const ad::Tensor loss = nn::softmax_cross_entropy(logits, labels);
  using E = std::pair<std::string, std::string>;
  const std::vector<E> want = {{"input", "const"},    {"layer1.W", "leaf"}, {"layer1.b", "leaf"},
                               {"layer1.z", "linear"}, {"layer1.a", "sigmoid"}, {"layer2.W", "leaf"},
                               {"layer2.b", "leaf"},   {"layer2.z", "linear"},  {"loss", "softmax_cross_entropy"}};
  CHECK(entries(tape) == want);
  // The identity output records nothing: its a^(2) is the entry z^(2), found by both names.
  CHECK(tape.find("layer2.z") == logits.index());
  CHECK(tape.find("layer2.a") == logits.index());
  CHECK(tape.find("loss") == loss.index());
  // The listing's lines for the last two entries.
  const std::string listing = ad::listing(tape);
  const auto line = [&](const std::string& start) {
    const auto at = listing.find("\n" + start);
    return at == std::string::npos ? std::string() : listing.substr(at + 1, listing.find('\n', at + 1) - at - 1);
  };
  const std::string z2 = line("#8 "), j = line("#9 ");
  CHECK(z2.find("layer2.z") != std::string::npos);
  CHECK(z2.find("linear") != std::string::npos);
  CHECK(j.find("loss") != std::string::npos);
  CHECK(j.find("softmax_cross_entropy") != std::string::npos);
  CHECK(j.find("2 labels") != std::string::npos);
  CHECK(listing.find("#10") == std::string::npos);

  // Renaming the loss shows the new name.
  tape.name(loss, "J");
  CHECK(entries(tape).back() == E{"J", "softmax_cross_entropy"});
}

TEST_CASE("newcomer: names in the listing with a softmax output layer and squared error") {
  nn::Rng rng(8);
  nn::MLP net({3, 2, 2}, nn::tanh, nn::softmax, rng, {.dtype = ad::DType::f64});
  ad::Tape tape;
  const ad::Tensor a = net(tape, batch());
  const ad::Array<double> y(ad::make_shape({2, 2}), {0.0, 1.0, 1.0, 0.0});
  (void)nn::squared_error(a, y);
  const auto e = entries(tape);
  const auto named = [&](const std::string& n) {
    for (const auto& [name, op] : e)
      if (name == n) return op;
    return std::string("(absent)");
  };
  CHECK(named("layer1.z") == "linear");
  CHECK(named("layer1.a") == "tanh");
  CHECK(named("layer2.z") == "linear");
  CHECK(named("layer2.a") == "softmax");
  CHECK(e.back().first == "loss");
  CHECK(tape.find("layer2.a") == a.index());
}

TEST_CASE("newcomer: the fused softmax_cross_entropy matches the composed ops, value and gradient") {
  // Logits far apart in scale, labels on the smallest and largest entries, a row with ties.
  const ad::Array<double> Z(ad::make_shape({3, 4}), {2.0, -1.0, 0.5, 30.0, -700.0, 3.0, 3.0, 1.0, 0.0, 0.0, 0.0, 0.0});
  const std::int32_t y[] = {1, 0, 3};
  ad::Tape fused, composed;
  const ad::Tensor zf = fused.leaf(Z), zc = composed.leaf(Z);
  const ad::Tensor Jf = ad::softmax_cross_entropy(zf, y);
  const ad::Tensor Jc = -ad::mean(ad::pick(ad::log_softmax(zc, -1), y));
  CHECK(Jf.rank() == 0);
  CHECK(Jf.item() == doctest::Approx(Jc.item()).epsilon(1e-14));
  CHECK(std::isfinite(Jf.item()));
  const ad::View gf = fused.gradient(Jf)[zf], gc = composed.gradient(Jc)[zc];
  for (std::int64_t i = 0; i < gf.size(); ++i) CHECK(gf.flat(i) == doctest::Approx(gc.flat(i)).epsilon(1e-12).scale(1.0));
  // (softmax − onehot)/B by hand at one element: row 2 is uniform, label 3.
  CHECK(gf.at({2, 3}) == doctest::Approx((0.25 - 1.0) / 3).epsilon(1e-15));
  CHECK(gf.at({2, 0}) == doctest::Approx(0.25 / 3).epsilon(1e-15));

  // Its gradient against central differences, through the public checker, in float64.
  ad::Array<double> small(ad::make_shape({2, 3}), {0.3, -0.2, 1.1, 0.7, 0.1, -0.9});
  ad::Tape t;
  const ad::Tensor z = t.leaf(small);
  const ad::Tensor J = ad::softmax_cross_entropy(z, std::span<const std::int32_t>(y, 2));
  const ad::View g = t.gradient(J)[z];
  for (std::int64_t i = 0; i < small.size(); ++i) {
    const double h = 1e-6, keep = small[i];
    auto value = [&](double v) {
      small[i] = v;
      ad::Tape s;
      return ad::softmax_cross_entropy(s.constant(small), std::span<const std::int32_t>(y, 2)).item();
    };
    const double fd = (value(keep + h) - value(keep - h)) / (2 * h);
    small[i] = keep;
    CHECK(g.flat(i) == doctest::Approx(fd).epsilon(1e-8));
  }
}

TEST_CASE("newcomer: softmax_cross_entropy checks its operands before recording") {
  ad::Tape tape;
  const ad::Tensor z = tape.name(tape.leaf(ad::Array<float>(ad::make_shape({2, 3}))), "z");
  const std::size_t before = tape.size();
  const std::int32_t one[] = {0}, bad[] = {0, 3};
  CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(z, one), "softmax_cross_entropy: 1 labels given for z is f32[2,3] (2 rows)",
                       ad::ShapeError);
  CHECK_THROWS_WITH_AS(ad::softmax_cross_entropy(z, bad),
                       "softmax_cross_entropy: label 3 in row 1 is outside [0, 3) for z is f32[2,3]", ad::IndexError);
  CHECK_THROWS_AS(ad::softmax_cross_entropy(tape.leaf(ad::Array<float>(ad::make_shape({3}))), one), ad::ShapeError);
  CHECK(tape.size() == before + 1);  // only the rank-1 leaf made for the last check
}
