// The same small MLP recorded two ways on two tapes: element by element with ad::Var (every
// z_i = Σ_j W_ij x_j + b_i written out by hand), and with tensor ops.  Every gradient, and the
// adjoint of every pre-activation z (the δ of each layer), must agree to 1e-12.  The tensor form
// of a layer is written three ways: by broadcasting, through transpose, and with matmul.
//
// Network: 4 inputs → 5 (sigmoid) → 4 (tanh) → 3 classes, softmax cross-entropy
// J = -(1/B) Σ_b log softmax(z3_b)[y_b], batch B = 3.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <vector>

#include "autodiff/autodiff.hpp"
#include "jacobian.hpp"

using ad::Shape;
using ad::Tensor;

namespace {

constexpr std::int64_t batch = 3;
constexpr std::array<std::int64_t, 4> widths = {4, 5, 4, 3};
const std::int32_t labels[batch] = {2, 0, 1};

struct Params {
  std::array<ad::Array<double>, 3> W, b;  // W[l] is [out, in], b[l] is [out]
  ad::Array<double> x;                    // [batch, in]
};

Params make_params() {
  Params p;
  for (std::size_t l = 0; l < 3; ++l) {
    p.W[l] = jacobian::random({widths[l + 1], widths[l]}, 401 + static_cast<unsigned>(l));
    p.b[l] = jacobian::random({widths[l + 1]}, 411 + static_cast<unsigned>(l), -0.5, 0.5);
  }
  p.x = jacobian::random({batch, widths[0]}, 421, -2.0, 2.0);
  return p;
}

// ---- the scalar engine -------------------------------------------------------------------------------

struct ScalarRun {
  ad::Tape tape;
  std::array<std::vector<ad::Var>, 3> W, b;  // row-major, like the Arrays
  std::array<std::vector<ad::Var>, 3> z;     // [batch * out] pre-activations
  ad::Var loss;
};

void run_scalar(const Params& p, ScalarRun& r) {
  for (std::size_t l = 0; l < 3; ++l) {
    for (double v : p.W[l].values()) r.W[l].push_back(r.tape.variable(v));
    for (double v : p.b[l].values()) r.b[l].push_back(r.tape.variable(v));
  }
  ad::Var total = r.tape.variable(0.0);
  for (std::int64_t s = 0; s < batch; ++s) {
    std::vector<ad::Var> a;
    for (std::int64_t j = 0; j < widths[0]; ++j) a.push_back(r.tape.variable(p.x(s, j)));
    for (std::size_t l = 0; l < 3; ++l) {
      const std::int64_t in = widths[l], out = widths[l + 1];
      std::vector<ad::Var> next;
      for (std::int64_t i = 0; i < out; ++i) {
        ad::Var zi = r.b[l][static_cast<std::size_t>(i)];
        for (std::int64_t j = 0; j < in; ++j) zi = zi + r.W[l][static_cast<std::size_t>(i * in + j)] * a[static_cast<std::size_t>(j)];
        r.z[l].push_back(zi);
        next.push_back(l == 0 ? sigmoid(zi) : l == 1 ? tanh(zi) : zi);
      }
      a = next;
    }
    // log softmax(z)[y] = z_y - m - log Σ_k exp(z_k - m), with m the largest logit's value (a
    // constant: the result does not depend on it).
    double m = a[0].value();
    for (const ad::Var& zk : a) m = std::max(m, zk.value());
    ad::Var se = r.tape.variable(0.0);
    for (const ad::Var& zk : a) se = se + exp(zk - m);
    total = total + (a[static_cast<std::size_t>(labels[s])] - m - log(se));
  }
  r.loss = -total / static_cast<double>(batch);
}

// ---- the tensor engine -------------------------------------------------------------------------------

/// z = a Wᵀ + b for a [B, in], W [out, in], b [out], written with broadcasting:
/// Σ_j (W reshaped [1, out, in]) ⊙ (a reshaped [B, 1, in]) over the last axis.
Tensor linear_broadcast(const Tensor& a, const Tensor& W, const Tensor& b) {
  const std::int64_t out = W.dim(0), in = W.dim(1);
  return sum(reshape(W, {1, out, in}) * reshape(a, {-1, 1, in}), -1) + b;
}

/// The same through transpose: Σ_j (aᵀ reshaped [in, B, 1]) ⊙ (Wᵀ reshaped [in, 1, out]) over
/// axis 0.
Tensor linear_transpose(const Tensor& a, const Tensor& W, const Tensor& b) {
  const std::int64_t out = W.dim(0), in = W.dim(1);
  return sum(reshape(transpose(a), {in, -1, 1}) * reshape(transpose(W), {in, 1, out}), 0) + b;
}

/// The same as a matrix product: a · Wᵀ, with W read transposed by BLAS.
Tensor linear_matmul(const Tensor& a, const Tensor& W, const Tensor& b) { return matmul(a, W, false, true) + b; }

using Linear = Tensor (*)(const Tensor&, const Tensor&, const Tensor&);

struct TensorRun {
  std::array<Tensor, 3> W, b, z;
  Tensor loss;
};

TensorRun run_tensor(ad::Tape& tape, const Params& p, Linear linear) {
  TensorRun r;
  Tensor a = tape.constant(p.x);
  for (std::size_t l = 0; l < 3; ++l) {
    r.W[l] = tape.name(tape.leaf(p.W[l]), fmt::format("W{}", l + 1));
    r.b[l] = tape.name(tape.leaf(p.b[l]), fmt::format("b{}", l + 1));
    r.z[l] = tape.name(linear(a, r.W[l], r.b[l]), fmt::format("z{}", l + 1));
    a = l == 0 ? sigmoid(r.z[l]) : l == 1 ? tanh(r.z[l]) : r.z[l];
  }
  r.loss = -mean(pick(log_softmax(a), labels));
  return r;
}

void compare(const Params& p, Linear linear) {
  ScalarRun s;
  run_scalar(p, s);
  const auto gs = s.tape.gradient(s.loss);
  ad::Tape tape;
  const TensorRun t = run_tensor(tape, p, linear);
  const auto gt = tape.gradient(t.loss);

  CHECK(t.loss.item() == doctest::Approx(s.loss.value()).epsilon(1e-12));
  auto same = [](const ad::View& tensor_adj, const std::vector<ad::Var>& vars, const ad::Gradients& g) {
    REQUIRE(tensor_adj.size() == static_cast<std::int64_t>(vars.size()));
    for (std::size_t k = 0; k < vars.size(); ++k)
      CHECK(tensor_adj.flat(static_cast<std::int64_t>(k)) == doctest::Approx(g[vars[k]]).epsilon(1e-12));
  };
  for (std::size_t l = 0; l < 3; ++l) {
    CAPTURE(l);
    same(gt[t.W[l]], s.W[l], gs);
    same(gt[fmt::format("b{}", l + 1)], s.b[l], gs);  // by name
    same(gt[t.z[l]], s.z[l], gs);                      // δ of layer l+1
    CHECK(gt[t.W[l]].shape() == p.W[l].shape());
  }
}

}  // namespace

TEST_CASE("ops: cross-engine MLP, scalar Vars against tensor ops with broadcasting") {
  compare(make_params(), linear_broadcast);
}

TEST_CASE("ops: cross-engine MLP, scalar Vars against tensor ops through transpose") {
  compare(make_params(), linear_transpose);
}

TEST_CASE("ops: cross-engine MLP, scalar Vars against tensor ops with matmul") {
  compare(make_params(), linear_matmul);
}

TEST_CASE("ops: 1,000 training steps on one tape do not grow its memory") {
  // Plain gradient descent on the Arrays the leaves read: the tape sees each update, the loss
  // falls, and after the first step the tape's reserved memory stays the same.
  for (Linear linear : {linear_broadcast, linear_matmul}) {
    Params p = make_params();
    ad::Tape tape;
    std::size_t reserved_after_first = 0;
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < 1000; ++step) {
      tape.clear();
      const TensorRun r = run_tensor(tape, p, linear);
      const auto g = tape.gradient(r.loss);
      for (std::size_t l = 0; l < 3; ++l) {
        const auto gW = g[r.W[l]].as<double>(), gb = g[r.b[l]].as<double>();
        for (std::int64_t k = 0; k < p.W[l].size(); ++k) p.W[l][k] -= 0.1 * gW[static_cast<std::size_t>(k)];
        for (std::int64_t k = 0; k < p.b[l].size(); ++k) p.b[l][k] -= 0.1 * gb[static_cast<std::size_t>(k)];
      }
      if (step == 0) {
        reserved_after_first = tape.bytes_reserved();
        first_loss = r.loss.item();
      }
      last_loss = r.loss.item();
      REQUIRE(tape.bytes_reserved() == reserved_after_first);
    }
    CHECK(last_loss < 0.1 * first_loss);
  }
}
