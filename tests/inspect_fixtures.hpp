// Tapes shared by the inspection tests: the seed's 3-4-3 network written with scalar arithmetic on
// elements of tensor leaves, and a small tensor op with a known rule.
#pragma once

#include <string>
#include <vector>

#include <fmt/format.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/ops/record.hpp"

namespace inspect_test {

/// The seed's network, 3 inputs, 4 sigmoid hidden units, 3 softmax outputs, cross-entropy loss
/// for class `label`: every z, a and the loss are scalar Vars named "layer<l>.z[i]", ...
struct ScalarNet {
  ad::Array<double> W1, b1, W2, b2, x;
  ad::Tensor tW1, tb1, tW2, tb2, tx;
  std::vector<ad::Var> z1, a1, z2;
  ad::Var loss;

  explicit ScalarNet(ad::Tape& tape, int label = 1)
      : W1(ad::make_shape({4, 3})), b1(ad::make_shape({4})), W2(ad::make_shape({3, 4})), b2(ad::make_shape({3})),
        x(ad::make_shape({3}), {0.5, -1.0, 2.0}) {
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 3; ++j) W1(i, j) = 0.1 * (i + 1) - 0.15 * j;
      b1(i) = 0.05 * i - 0.1;
    }
    for (int i = 0; i < 3; ++i) {
      for (int j = 0; j < 4; ++j) W2(i, j) = 0.2 * (j - i) + 0.05;
      b2(i) = -0.1 * i;
    }
    tW1 = tape.name(tape.leaf(W1), "layer1.W");
    tb1 = tape.name(tape.leaf(b1), "layer1.b");
    tW2 = tape.name(tape.leaf(W2), "layer2.W");
    tb2 = tape.name(tape.leaf(b2), "layer2.b");
    tx = tape.name(tape.constant(x), "x");
    for (int i = 0; i < 4; ++i) {
      ad::Var s = tW1(i, 0) * tx(0);
      for (int j = 1; j < 3; ++j) s = s + tW1(i, j) * tx(j);
      z1.push_back(tape.name(s + tb1(i), fmt::format("layer1.z[{}]", i)));
      a1.push_back(tape.name(sigmoid(z1.back()), fmt::format("layer1.a[{}]", i)));
    }
    for (int i = 0; i < 3; ++i) {
      ad::Var s = tW2(i, 0) * a1[0];
      for (int j = 1; j < 4; ++j) s = s + tW2(i, j) * a1[static_cast<std::size_t>(j)];
      z2.push_back(tape.name(s + tb2(i), fmt::format("layer2.z[{}]", i)));
    }
    ad::Var m = max(max(z2[0], z2[1]), z2[2]);
    // Each step is kept in a Var so that it is one entry of its own (a longer expression over at
    // most two Vars would be fused into one entry).
    std::vector<ad::Var> e;
    for (const ad::Var& z : z2) {
      const ad::Var shifted = z - m;
      e.push_back(exp(shifted));
    }
    ad::Var sum = e[0] + e[1];
    sum = sum + e[2];
    const ad::Var lse = log(sum);
    const ad::Var lse_m = lse + m;
    loss = tape.name(lse_m - z2[static_cast<std::size_t>(label)], "loss");
  }
};

/// y = 2x for a tensor x: a rule entry whose backward adds 2·adj(y) into adj(x).
inline void twice_backward(ad::BackwardContext& c) {
  ad::dispatch(c.arg_node(0).dtype, [&]<class T>() {
    T* gx = c.arg_grad<T>(0);
    const T* gy = c.grad<T>();
    for (std::int64_t i = 0, n = ad::numel(c.node().shape); i < n; ++i) gx[i] += T(2) * gy[i];
  });
}

inline constexpr ad::OpDescriptor twice_op{.name = "twice", .backward = twice_backward};

inline ad::Tensor twice(const ad::Tensor& x) {
  ad::Tape& tape = ad::ops::tape_of(x, "twice");
  return ad::dispatch(x.dtype(), [&]<class T>() {
    T* out = tape.allocate_elements<T>(x.size());
    const T* in = static_cast<const T*>(x.value().data());
    for (std::int64_t i = 0; i < x.size(); ++i) out[i] = T(2) * in[i];
    return ad::ops::record_tensor(tape, twice_op, x.dtype(), x.shape(), out, {x.index()});
  });
}

/// The listing line of entry e ("#e ..."), or empty.
inline std::string line_of(const std::string& listing, std::uint32_t e) {
  const std::string head = fmt::format("#{} ", e);
  std::size_t pos = 0;
  while (pos < listing.size()) {
    const std::size_t end = listing.find('\n', pos);
    const std::string line = listing.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (line.starts_with(head)) return line;
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  return {};
}

}  // namespace inspect_test
