// The README's "Getting data in and numbers out" snippet, compiled and run, with its numbers checked.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "nn/nn.hpp"

TEST_CASE("newcomer: README snippet getting data in and numbers out") {
  // ---- README snippet begin (README.md, "Getting data in and numbers out")
  // In: an Array from its shape and its values (row-major), or zeros filled in place.
  ad::Array<float> x(ad::make_shape({2, 3}), {0.5f, -1.0f, 2.0f,
                                               1.5f,  0.0f, -0.5f});
  ad::Array<float> y(ad::make_shape({2, 3}));          // zeros
  y(1, 2) = 4.0f;                                      // a(i, j): one element, bounds-checked
  for (float& v : y.values()) v += 1.0f;               // values(): every element, row-major
  const std::int32_t labels[] = {2, 0};                // class labels: one per row

  nn::MLP net({3, 4, 3}, nn::relu);                    // no Rng: default-seeded weights
  ad::Tape tape;
  ad::Tensor logits = net(tape, x);                    // x enters the tape as the constant "input"
  ad::Tensor probs = softmax(logits);
  ad::Tensor loss = nn::softmax_cross_entropy(logits, labels);
  ad::Gradients g = tape.gradient(loss);

  // Out: a one-element tensor as a double; one element by index or by row-major position.
  double J = loss.item();
  double p01 = probs.value().at({0, 1});               // View::at: row 0, column 1
  double d5 = g["layer2.z"].flat(5);                   // View::flat: the last element of [2,3]
  ad::Array<double> kept = probs.to_array<double>();   // a copy that outlives tape.clear()
  fmt::print("J = {:.4f}\nprobabilities {:.3f}\n", J, probs);  // whole tensors, NumPy-style
  fmt::print("dJ/dz {:+.2e}\n", g[logits]);

  // The model's parameters: name, value (a read-only View), and the adjoint from the sweep.
  for (const auto& p : net.parameters())
    fmt::print("{} = {}\n  dJ/d{} = {}\n", p->name(), p->view(), p->name(), g[p->name()]);
  // ---- README snippet end

  CHECK(y(1, 2) == 5.0f);
  CHECK(y(0, 0) == 1.0f);
  // The loss is the mean of −log p at the labels.
  CHECK(J == doctest::Approx(-(std::log(kept(0, 2)) + std::log(kept(1, 0))) / 2).epsilon(1e-6));
  CHECK(p01 == doctest::Approx(kept(0, 1)).epsilon(1e-7));
  CHECK(d5 == doctest::Approx(kept(1, 2) / 2).epsilon(1e-6));  // (p − y)/B at row 1, column 2 (not the label)
  CHECK(fmt::format("{:.3f}", probs).starts_with("f32[2,3]\n[[0."));
  CHECK(fmt::format("{}", g["layer2.b"]).starts_with("f32[3] ["));
  CHECK(net.parameters()[0]->name() == "layer1.W");
}
