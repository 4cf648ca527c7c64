// Forward mode and second order: every op's tangent rule against central differences and against
// reverse mode, every op's curvature rule through Hessian-vector products against differences of
// gradients, Hessians (symmetry, closed forms), Jacobians, and the errors.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "autodiff/autodiff.hpp"
#include "autodiff/custom.hpp"
#include "autodiff/forward.hpp"
#include "autodiff/ops/record.hpp"
#include "autodiff/second_order.hpp"
#include "nn/nn.hpp"
#include "second_order.hpp"

using namespace ad;
using jacobian::random;
using second_order::Build;
using second_order::Inputs;

namespace {

struct OpCase {
  const char* name;  ///< the ops it records, for messages
  Build build;
  Inputs inputs;
};

const std::int32_t labels3[] = {2, 0, 1};

/// One case per op and per operand form (tensor ⊗ tensor, broadcast, with a Var, with a constant,
/// transposed and batched products...): together they record every tensor op descriptor.
std::vector<OpCase> op_cases() {
  using S = std::span<const Tensor>;
  const auto pos = [](std::initializer_list<std::int64_t> s, unsigned seed) { return random(s, seed, 0.5, 2.0); };
  return {
      {"add", [](Tape&, S x) { return x[0] + x[1]; }, {random({2, 3}, 1), random({2, 3}, 2)}},
      {"add broadcast", [](Tape&, S x) { return x[0] + x[1]; }, {random({2, 3}, 1), random({3}, 2)}},
      {"sub broadcast", [](Tape&, S x) { return x[0] - x[1]; }, {random({2, 1}, 3), random({1, 3}, 4)}},
      {"mul", [](Tape&, S x) { return x[0] * x[1]; }, {random({2, 3}, 5), random({2, 3}, 6)}},
      {"mul broadcast", [](Tape&, S x) { return x[0] * x[1]; }, {random({2, 3}, 5), random({2, 1}, 6)}},
      {"div", [](Tape&, S x) { return x[0] / x[1]; }, {random({2, 3}, 7), pos({2, 3}, 8)}},
      {"div broadcast", [](Tape&, S x) { return x[0] / x[1]; }, {random({2, 3}, 7), pos({3}, 8)}},
      {"add var", [](Tape&, S x) { return x[0] + to_var(x[1]); }, {random({2, 3}, 9), random({}, 10)}},
      {"var sub", [](Tape&, S x) { return to_var(x[1]) - x[0]; }, {random({2, 3}, 9), random({}, 10)}},
      {"mul var", [](Tape&, S x) { return x[0] * to_var(x[1]); }, {random({2, 3}, 11), random({}, 12)}},
      {"var mul", [](Tape&, S x) { return to_var(x[1]) * x[0]; }, {random({2, 3}, 11), random({}, 12)}},
      {"div var", [](Tape&, S x) { return x[0] / to_var(x[1]); }, {random({2, 3}, 13), pos({}, 14)}},
      {"var div", [](Tape&, S x) { return to_var(x[1]) / x[0]; }, {pos({2, 3}, 13), random({}, 14)}},
      {"constants", [](Tape&, S x) { return (2.0 - ((x[0] + 1.5) * 3.0 - 0.5) / 4.0) * 0.5 + 1.0; },
       {random({2, 3}, 15)}},
      {"constant over", [](Tape&, S x) { return 2.0 / x[0]; }, {pos({2, 3}, 16)}},
      {"neg", [](Tape&, S x) { return -x[0]; }, {random({4}, 17)}},
      {"exp", [](Tape&, S x) { return exp(x[0]); }, {random({4}, 18)}},
      {"log", [](Tape&, S x) { return log(x[0]); }, {pos({4}, 19)}},
      {"sqrt", [](Tape&, S x) { return sqrt(x[0]); }, {pos({4}, 20)}},
      {"tanh", [](Tape&, S x) { return tanh(x[0]); }, {random({4}, 21)}},
      {"sigmoid", [](Tape&, S x) { return sigmoid(x[0]); }, {random({4}, 22, -3.0, 3.0)}},
      {"relu", [](Tape&, S x) { return relu(x[0]); }, {random({6}, 23)}},
      {"leaky_relu", [](Tape&, S x) { return leaky_relu(x[0], 0.1); }, {random({6}, 24)}},
      {"softplus", [](Tape&, S x) { return softplus(x[0]); }, {random({4}, 25, -3.0, 3.0)}},
      {"abs", [](Tape&, S x) { return abs(x[0]); }, {random({6}, 26)}},
      {"square", [](Tape&, S x) { return square(x[0]); }, {random({4}, 27)}},
      {"pow", [](Tape&, S x) { return pow(x[0], 2.5); }, {pos({4}, 28)}},
      {"matmul", [](Tape&, S x) { return matmul(x[0], x[1]); }, {random({2, 3}, 29), random({3, 4}, 30)}},
      {"matmul transposed", [](Tape&, S x) { return matmul(x[0], x[1], true, true); },
       {random({3, 2}, 31), random({4, 3}, 32)}},
      {"matmul batched", [](Tape&, S x) { return matmul(x[0], x[1]); }, {random({2, 2, 3}, 33), random({2, 3, 2}, 34)}},
      {"matmul shared", [](Tape&, S x) { return matmul(x[0], x[1], false, true); },
       {random({2, 3}, 35), random({2, 4, 3}, 36)}},
      {"linear", [](Tape&, S x) { return linear(x[0], x[1], x[2]); },
       {random({3, 4}, 37), random({2, 4}, 38), random({2}, 39)}},
      {"transpose", [](Tape&, S x) { return transpose(x[0]); }, {random({2, 3}, 40)}},
      {"reshape", [](Tape&, S x) { return reshape(x[0], {3, -1}); }, {random({2, 3}, 41)}},
      {"sum", [](Tape&, S x) { return sum(x[0]); }, {random({2, 3}, 42)}},
      {"sum axis", [](Tape&, S x) { return sum(x[0], 0); }, {random({2, 3}, 43)}},
      {"mean", [](Tape&, S x) { return mean(x[0]); }, {random({2, 3}, 44)}},
      {"mean axis", [](Tape&, S x) { return mean(x[0], -1, true); }, {random({2, 3}, 45)}},
      {"max axis", [](Tape&, S x) { return max(x[0], 1); }, {random({3, 4}, 46)}},
      {"softmax", [](Tape&, S x) { return softmax(x[0]); }, {random({2, 4}, 47, -2.0, 2.0)}},
      {"softmax axis 0", [](Tape&, S x) { return softmax(x[0], 0); }, {random({3, 2}, 48, -2.0, 2.0)}},
      {"log_softmax", [](Tape&, S x) { return log_softmax(x[0]); }, {random({2, 4}, 49, -2.0, 2.0)}},
      {"pick", [](Tape&, S x) { return pick(x[0], labels3); }, {random({3, 4}, 50)}},
      {"softmax_cross_entropy", [](Tape&, S x) { return softmax_cross_entropy(x[0], labels3); },
       {random({3, 4}, 53, -2.0, 2.0)}},
      {"element", [](Tape&, S x) { return x[1] * element(x[0], {1, 2}); }, {random({2, 3}, 51), random({2}, 52)}},
  };
}

/// loss = Σ c ⊙ y + Σ y ⊙ y: the second term's adjoint moves along v, so both the op's backward
/// rule applied to R(adjoint) and its curvature rule are exercised.
Build loss_of(const Build& op) {
  return [op](Tape& tape, std::span<const Tensor> x) {
    const Tensor y = op(tape, x);
    const Tensor c = tape.constant(random({}, 99, 0.5, 1.0));
    return sum(y * c) + sum(y * y);
  };
}

}  // namespace

TEST_CASE("second-order: every tensor op has a tangent rule and a curvature rule") {
  std::set<std::string> names;
  for (const auto& c : op_cases())
    for (const OpDescriptor* d : second_order::recorded_ops(c.build, c.inputs)) {
      INFO(c.name, ": ", d->name);
      CHECK(static_cast<bool>(d->tangent));
      CHECK(static_cast<bool>(d->curvature));
      names.insert(d->name);
    }
  // Every tensor op of autodiff/ops/ops.hpp and the scalar views of tensors.
  for (const char* op : {"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
                         "leaky_relu", "softplus", "abs", "square", "pow", "matmul", "linear", "transpose", "reshape",
                         "sum", "mean", "max", "softmax", "log_softmax", "softmax_cross_entropy", "pick", "element",
                         "to_var"})
    CHECK_MESSAGE(names.count(op) == 1, op);
}

TEST_CASE("second-order: tangent rules of element-wise ops against central differences and reverse mode") {
  for (const auto& c : op_cases()) {
    const std::string n = c.name;
    if (n.find("matmul") != std::string::npos || n == "linear" || n == "transpose" || n == "reshape" ||
        n.find("sum") == 0 || n.find("mean") == 0 || n.find("max") == 0 || n.find("softmax") != std::string::npos ||
        n == "pick" || n == "element")
      continue;  // in the next case
    INFO(c.name);
    second_order::check_tangent(c.build, c.inputs);
  }
}

TEST_CASE("second-order: tangent rules of matmul, linear, shape, reduction, softmax and index ops") {
  for (const auto& c : op_cases()) {
    const std::string n = c.name;
    if (!(n.find("matmul") != std::string::npos || n == "linear" || n == "transpose" || n == "reshape" ||
          n.find("sum") == 0 || n.find("mean") == 0 || n.find("max") == 0 || n.find("softmax") != std::string::npos ||
          n == "pick" || n == "element"))
      continue;
    INFO(c.name);
    second_order::check_tangent(c.build, c.inputs);
  }
}

TEST_CASE("second-order: curvature rules of every tensor op, Hessian-vector products against differences of gradients") {
  for (const auto& c : op_cases()) {
    INFO(c.name);
    second_order::check_hvp(loss_of(c.build), c.inputs);
  }
}

// ---- scalar op codes -----------------------------------------------------------------------------------

namespace {

using ScalarBuild = std::function<Var(std::span<const Var>)>;

/// The same computation on ad::UnfusedVar operands: one entry per op, for Hessian-vector products.
using UnfusedBuild = std::function<UnfusedVar(std::span<const UnfusedVar>)>;
struct ScalarCase {
  Op op;  ///< the op code the case records last (on Vars)
  ScalarBuild build;
  UnfusedBuild unfused;
  std::vector<double> x;
};

/// A case from one generic computation, recorded on Vars and on UnfusedVars.
template <class F>
ScalarCase scalar_case(Op op, F f, std::vector<double> x) {
  return {op, [f](std::span<const Var> v) { return Var(f(v)); },
          [f](std::span<const UnfusedVar> v) { return UnfusedVar(f(v)); }, std::move(x)};
}

std::vector<ScalarCase> scalar_cases() {
  return {
      scalar_case(Op::add, [](auto x) { return x[0] + x[1]; }, {0.3, -0.7}),
      scalar_case(Op::sub, [](auto x) { return x[0] - x[1]; }, {0.3, -0.7}),
      scalar_case(Op::mul, [](auto x) { return x[0] * x[1]; }, {0.3, -0.7}),
      scalar_case(Op::div, [](auto x) { return x[0] / x[1]; }, {0.3, -0.7}),
      scalar_case(Op::neg, [](auto x) { return -x[0]; }, {0.3}),
      scalar_case(Op::add_c, [](auto x) { return x[0] + 2.0; }, {0.3}),
      scalar_case(Op::sub_c, [](auto x) { return x[0] - 2.0; }, {0.3}),
      scalar_case(Op::rsub_c, [](auto x) { return 2.0 - x[0]; }, {0.3}),
      scalar_case(Op::mul_c, [](auto x) { return x[0] * 3.0; }, {0.3}),
      scalar_case(Op::div_c, [](auto x) { return x[0] / 3.0; }, {0.3}),
      scalar_case(Op::rdiv_c, [](auto x) { return 3.0 / x[0]; }, {0.6}),
      scalar_case(Op::pow, [](auto x) { return pow(x[0], x[1]); }, {1.3, 1.7}),
      scalar_case(Op::pow_c, [](auto x) { return pow(x[0], 2.5); }, {1.3}),
      scalar_case(Op::rpow_c, [](auto x) { return pow(2.5, x[0]); }, {0.4}),
      scalar_case(Op::exp, [](auto x) { return exp(x[0]); }, {0.4}),
      scalar_case(Op::log, [](auto x) { return log(x[0]); }, {0.4}),
      scalar_case(Op::log1p, [](auto x) { return log1p(x[0]); }, {0.4}),
      scalar_case(Op::sqrt, [](auto x) { return sqrt(x[0]); }, {0.4}),
      scalar_case(Op::sin, [](auto x) { return sin(x[0]); }, {0.4}),
      scalar_case(Op::cos, [](auto x) { return cos(x[0]); }, {0.4}),
      scalar_case(Op::tan, [](auto x) { return tan(x[0]); }, {0.4}),
      scalar_case(Op::tanh, [](auto x) { return tanh(x[0]); }, {0.4}),
      scalar_case(Op::sigmoid, [](auto x) { return sigmoid(x[0]); }, {0.4}),
      scalar_case(Op::relu, [](auto x) { return relu(x[0]); }, {0.4}),
      scalar_case(Op::abs, [](auto x) { return abs(x[0]); }, {-0.4}),
      scalar_case(Op::softplus, [](auto x) { return softplus(x[0]); }, {-0.4}),
      scalar_case(Op::square, [](auto x) { return square(x[0]); }, {-0.4}),
      scalar_case(Op::min, [](auto x) { return min(x[0], x[1]); }, {0.3, -0.7}),
      scalar_case(Op::max, [](auto x) { return max(x[0], x[1]); }, {0.3, -0.7}),
      // Fused on Vars: one `expr` entry over two Vars.
      scalar_case(Op::expr, [](auto x) { return tanh(x[0] * x[1]) + exp(x[0]) / x[1]; }, {0.3, -0.7}),
  };
}

/// y(x + εu) for the scalar case.
double scalar_value(const ScalarBuild& f, const std::vector<double>& x, const std::vector<double>& u, double eps) {
  Tape t;
  std::vector<Var> v;
  for (std::size_t k = 0; k < x.size(); ++k) v.push_back(t.variable(x[k] + eps * u[k]));
  return f(v).value();
}

}  // namespace

TEST_CASE("second-order: every scalar op code is covered, and its tangent matches differences and reverse mode") {
  std::set<Op> covered;
  for (const auto& c : scalar_cases()) {
    INFO(op_name(c.op), " (code ", static_cast<int>(c.op), ")");
    Tape tape;
    std::vector<Var> x;
    for (double v : c.x) x.push_back(tape.variable(v));
    const Var y = c.build(x);
    CHECK(tape.op(y.index()) == c.op);
    covered.insert(c.op);
    const std::vector<double> u = {0.6, -1.1};
    std::vector<Direction> d;
    for (std::size_t k = 0; k < x.size(); ++k) d.emplace_back(x[k], u[k]);
    const double dy = jvp(tape, y, d);
    const Difference fd = central_difference([&](double e) { return scalar_value(c.build, c.x, u, e); }, 0.0,
                                             std::fabs(y.value()));
    const JacobianElement e = compare(dy, fd, DType::f64);
    CHECK_MESSAGE(e.error <= e.allowed, fmt::format("jvp {:.17g}, central difference {:.17g}", dy, fd.value));
    const Gradients g = tape.gradient(y);
    double reverse = 0.0;
    for (std::size_t k = 0; k < x.size(); ++k) reverse += g[x[k]] * u[k];
    CHECK(dy == doctest::Approx(reverse).epsilon(1e-14));
  }
  // Every op code but the structural ones (sink, leaf, rule).
  for (int k = 0; k < static_cast<int>(Op::count_); ++k) {
    const Op op = static_cast<Op>(k);
    if (op == Op::sink || op == Op::leaf || op == Op::rule) continue;
    CHECK_MESSAGE(covered.count(op) == 1, op_name(op));
  }
}

TEST_CASE("second-order: scalar op codes, Hessian-vector products against differences of gradients") {
  for (const auto& c : scalar_cases()) {
    INFO(op_name(c.op));
    const std::vector<double> v = {0.6, -1.1};
    // loss = y² + y·x0: the second derivative of the op enters through 2 y y''.
    // Recorded one op per entry (UnfusedVar), so that every entry has its second derivatives.
    const auto loss = [&](const std::vector<UnfusedVar>& x) {
      const UnfusedVar y = c.unfused(x);
      return Var(y * y + y * x[0]);
    };
    Tape tape;
    std::vector<UnfusedVar> x;
    for (double val : c.x) x.push_back(tape.variable(val));
    const Var l = loss(x);
    std::vector<Direction> d;
    for (std::size_t k = 0; k < x.size(); ++k) d.emplace_back(x[k], v[k]);
    const Gradients hv = hvp(tape, l, d);
    for (std::size_t k = 0; k < x.size(); ++k) {
      const auto grad_k = [&](double eps) {
        Tape t;
        std::vector<UnfusedVar> xs;
        for (std::size_t j = 0; j < c.x.size(); ++j) xs.push_back(t.variable(c.x[j] + eps * v[j]));
        return t.gradient(loss(xs))[xs[k]];
      };
      const Difference fd = central_difference(grad_k, 0.0, 10.0);
      const JacobianElement e = compare(hv[x[k]], fd, DType::f64);
      CHECK_MESSAGE(e.error <= e.allowed, fmt::format("(H v)[{}]: hvp {:.17g}, difference {:.17g}", k, hv[x[k]], fd.value));
    }
  }
}

TEST_CASE("second-order: a fused scalar expression has no second derivatives: hvp throws MissingRuleError") {
  Tape tape;
  const Var x = tape.variable(0.5), y = tape.variable(2.0);
  const Var f = tanh(x * y) + exp(x) / y;
  REQUIRE(tape.op(f.index()) == Op::expr);
  CHECK_THROWS_WITH_AS(hvp(tape, f, {{x, 1.0}}), doctest::Contains("expr"), MissingRuleError);
  CHECK_THROWS_WITH_AS(hvp(tape, f, {{x, 1.0}}), doctest::Contains("ad::UnfusedVar"), MissingRuleError);
  // Forward mode needs only the total partials: fine.
  CHECK(jvp(tape, f, {{x, 1.0}}) == doctest::Approx(tape.gradient(f)[x]).epsilon(1e-15));
}

TEST_CASE("second-order: an op without a tangent or curvature rule is named by the error") {
  static constexpr OpDescriptor no_rules{.name = "my_op", .backward = [](BackwardContext&) {}};
  Tape tape;
  const Array<double> a = random({3}, 1);
  const Tensor x = tape.leaf(a);
  void* data = tape.allocate_elements<double>(3);
  std::copy_n(a.data(), 3, static_cast<double*>(data));
  const Tensor y = ops::record_tensor(tape, no_rules, DType::f64, Shape{3}, data, {x.index()});
  const Tensor l = sum(y * y);
  CHECK_THROWS_WITH_AS(jvp(tape, l, {{x, a}}), doctest::Contains("'my_op'"), MissingRuleError);
  CHECK_THROWS_WITH_AS(jvp(tape, l, {{x, a}}), doctest::Contains("no tangent rule"), MissingRuleError);
  // With a tangent rule but no curvature rule, hvp names the missing one.
  static constexpr OpDescriptor tangent_only{
      .name = "my_identity", .backward = [](BackwardContext& c) {
        double* dx = c.arg_grad<double>(0);
        for (int i = 0; i < 3; ++i) dx[i] += c.grad<double>()[i];
      },
      .tangent = [](TangentContext& c) {
        for (int i = 0; i < 3; ++i) c.tangent<double>()[i] = c.arg_tangent<double>(0)[i];
      }};
  Tape t2;
  const Tensor x2 = t2.leaf(a);
  void* d2 = t2.allocate_elements<double>(3);
  std::copy_n(a.data(), 3, static_cast<double*>(d2));
  const Tensor y2 = ops::record_tensor(t2, tangent_only, DType::f64, Shape{3}, d2, {x2.index()});
  const Tensor l2 = sum(y2 * y2);
  CHECK(jvp(t2, l2, {{x2, a}})[0] == doctest::Approx(2 * (a[0] * a[0] + a[1] * a[1] + a[2] * a[2])));
  CHECK_THROWS_WITH_AS(hvp(t2, l2, {{x2, a}}), doctest::Contains("'my_identity'"), MissingRuleError);
  CHECK_THROWS_WITH_AS(hvp(t2, l2, {{x2, a}}), doctest::Contains("no curvature rule"), MissingRuleError);
}

TEST_CASE("second-order: jvp and hvp reject bad directions with typed errors") {
  Tape tape;
  const Array<double> a = random({2, 3}, 1);
  const Tensor x = tape.leaf(a);
  const Tensor y = exp(x);
  const Tensor l = sum(y);
  CHECK_THROWS_AS(jvp(tape, l, {{x, random({3, 2}, 2)}}), ShapeError);
  CHECK_THROWS_WITH_AS(jvp(tape, l, {{y, a}}), doctest::Contains("not a tensor leaf"), InvalidArgument);
  CHECK_THROWS_WITH_AS(jvp(tape, l, {{x, a}, {x, a}}), doctest::Contains("twice"), InvalidArgument);
  CHECK_THROWS_AS(hvp(tape, y, {{x, a}}), ShapeError);  // the loss must have one element
  Tape other;
  const Tensor z = other.leaf(a);
  CHECK_THROWS_AS(jvp(tape, l, {{z, a}}), ForeignHandleError);
  const Var v = tape.variable(1.0);
  const Var w = Var(v * v);
  CHECK_THROWS_WITH_AS(jvp(tape, w, {{w, 1.0}}), doctest::Contains("not a leaf"), InvalidArgument);
  tape.clear();
  CHECK_THROWS_AS(jvp(tape, {{x, a}}), StaleHandleError);
}

// ---- Hessians and Jacobians ----------------------------------------------------------------------------

TEST_CASE("second-order: the Rosenbrock function's Hessian in closed form") {
  // f(x, y) = (1 - x)² + 100 (y - x²)²:
  //   f_xx = 2 - 400 (y - x²) + 800 x²,  f_xy = -400 x,  f_yy = 200.
  for (const auto& [x0, y0] : {std::pair{-1.2, 1.0}, std::pair{1.0, 1.0}, std::pair{0.3, -0.4}}) {
    Tape tape;
    const UnfusedVar x = tape.variable(x0), y = tape.variable(y0);
    const Var f = square(1.0 - x) + 100.0 * square(y - square(x));
    const Var xs[] = {x, y};
    const Array<double> H = hessian(tape, f, xs);
    CHECK(H[0] == doctest::Approx(2 - 400 * (y0 - x0 * x0) + 800 * x0 * x0).epsilon(1e-14));
    CHECK(H[1] == doctest::Approx(-400 * x0).epsilon(1e-14));
    CHECK(H[2] == doctest::Approx(-400 * x0).epsilon(1e-14));
    CHECK(H[3] == doctest::Approx(200).epsilon(1e-14));
  }
}

TEST_CASE("second-order: a quadratic's Hessian is its matrix, and Hessians are symmetric") {
  // f(x) = ½ xᵀ A x + bᵀ x with A symmetric: H = A, whatever x.
  const std::int64_t n = 5;
  Array<double> A = random({n, n}, 11);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < i; ++j) A[i * n + j] = std::as_const(A)[j * n + i];
  const Array<double> b = random({n, 1}, 12), x0 = random({n, 1}, 13);
  Tape tape;
  const Tensor x = tape.leaf(x0);
  const Tensor f = 0.5 * sum(x * matmul(tape.constant(A), x)) + sum(tape.constant(b) * x);
  const Tensor xs[] = {x};
  const Array<double> H = hessian(tape, f, xs);
  for (std::int64_t i = 0; i < n * n; ++i) CHECK(H[i] == doctest::Approx(A[i]).epsilon(1e-14));

  // A non-quadratic network loss: H is symmetric to rounding.
  Tape t2;
  const Tensor W = t2.leaf(random({3, 4}, 14)), c = t2.leaf(random({3}, 15));
  const Tensor X = t2.constant(random({5, 4}, 16));
  const Tensor loss = mean(log_softmax(tanh(linear(X, W, c))) * t2.constant(random({5, 3}, 17)));
  const Tensor params[] = {W, c};
  const Array<double> H2 = hessian(t2, loss, params);
  const std::int64_t m = H2.shape()[0];
  REQUIRE(m == 15);
  double largest = 0.0;
  for (std::int64_t i = 0; i < m * m; ++i) largest = std::max(largest, std::fabs(H2[i]));
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < i; ++j) CHECK(std::fabs(H2[i * m + j] - H2[j * m + i]) <= 1e-14 * largest);
}

TEST_CASE("second-order: Jacobians by forward and by reverse sweeps agree, and match a finite difference") {
  Tape tape;
  const Array<double> a = random({2, 3}, 21), b = random({3}, 22);
  const Tensor x = tape.leaf(a), y = tape.leaf(b);
  const Tensor out = softmax(x * y) * exp(y);  // [2, 3]: 6 outputs, 9 inputs
  const Tensor in[] = {x, y};
  const Array<double> Jf = ad::jacobian(tape, out, in, Sweep::forward);
  const Array<double> Jr = ad::jacobian(tape, out, in, Sweep::reverse);
  const Array<double> Ja = ad::jacobian(tape, out, in);
  REQUIRE(Jf.shape() == Shape{6, 9});
  for (std::int64_t i = 0; i < Jf.size(); ++i) {
    CHECK(Jf[i] == doctest::Approx(Jr[i]).epsilon(1e-14));
    CHECK(Ja[i] == Jr[i]);  // 6 outputs < 9 inputs: reverse
  }
  // Column 4 (x[1,1]) against a difference.
  const Difference d = central_difference(
      [&](double e) {
        Tape t;
        Array<double> a2 = a;
        a2[4] += e;
        return (softmax(t.leaf(a2) * t.leaf(b)) * exp(t.leaf(b))).value().flat(4);
      },
      0.0, 1.0);
  CHECK(compare(Jf[4 * 9 + 4], d, DType::f64).error <= compare(Jf[4 * 9 + 4], d, DType::f64).allowed);

  // Scalars: f(x, y) = (x y, x + y², sin x): 3 outputs, 2 inputs, forward by default.
  Tape st;
  const Var sx = st.variable(0.7), sy = st.variable(-0.3);
  const Var ys[] = {Var(sx * sy), Var(sx + square(sy)), Var(sin(sx))};
  const Var xs[] = {sx, sy};
  const Array<double> J = ad::jacobian(st, ys, xs);
  const double expect[] = {-0.3, 0.7, 1.0, -0.6, std::cos(0.7), 0.0};
  for (int i = 0; i < 6; ++i) CHECK(J[i] == doctest::Approx(expect[i]).epsilon(1e-15));
  const Array<double> Jrs = ad::jacobian(st, ys, xs, Sweep::reverse);
  for (int i = 0; i < 6; ++i) CHECK(Jrs[i] == doctest::Approx(expect[i]).epsilon(1e-15));
}

TEST_CASE("second-order: an output-only jvp reuses tangent buffers without changing any result") {
  // ad::jvp(tape, y, ...) may hand a value's tangent buffer to its last reader (an element-wise op
  // then writes its tangent in place).  Cases where that must not happen or must not leak: a value
  // whose tangent a reshape shares, a value read twice, values read again only after the output,
  // a chain of element-wise ops, and an f32 network like bench/second_order's.
  using S = std::span<const Tensor>;
  const std::vector<std::pair<const char*, Build>> builds = {
      {"a reshape shares the tangent an exp reads last",
       [](Tape&, S x) {
         const Tensor a = matmul(x[0], x[1]);
         const Tensor r = reshape(a, {-1});
         const Tensor b = exp(a);
         return reshape(b, {-1}) * r;
       }},
      {"a value read by two element-wise ops",
       [](Tape&, S x) {
         const Tensor a = matmul(x[0], x[1]);
         return exp(a) + tanh(a) * a;
       }},
      {"read again after the output",
       [](Tape&, S x) {
         const Tensor a = exp(matmul(x[0], x[1]));
         const Tensor y = tanh(a);
         (void)(a * 2.0 + relu(y));  // recorded after y: the pass stops at y
         return y;
       }},
      {"a chain of element-wise ops",
       [](Tape&, S x) { return sigmoid(square(tanh(exp(relu(matmul(x[0], x[1]) * 0.5))))); }},
      {"a two-layer network to its loss",
       [](Tape&, S x) {
         static const std::int32_t labels[] = {1, 0, 2, 1};
         const Tensor h = relu(linear(x[0], x[1], x[2]));
         return softmax_cross_entropy(linear(h, x[3], x[4]), labels);
       }},
  };
  const Inputs two = {random({4, 3}, 61), random({3, 5}, 62)};
  for (const auto& entry : builds) {
    // Named members, not a structured binding: INFO captures its argument in a lambda, which
    // clang 14 does not allow for a binding.
    const auto& name = entry.first;
    const auto& build = entry.second;
    INFO(name);
    if (std::string(name).find("network") != std::string::npos)
      second_order::check_tangent(build, {random({4, 3}, 63), random({5, 3}, 64), random({5}, 65),
                                          random({3, 5}, 66), random({3}, 67)});
    else
      second_order::check_tangent(build, two);
  }
  // An empty inner dimension: the product is zeros, and so is its tangent.
  second_order::check_tangent([](Tape&, S x) { return matmul(x[0], x[1]); }, {random({2, 0}, 68), random({0, 3}, 69)});
  second_order::check_tangent([](Tape&, S x) { return linear(x[0], x[1], x[2]); },
                              {random({2, 0}, 70), random({3, 0}, 71), random({3}, 72)});
}

TEST_CASE("second-order: softmax_cross_entropy tangent and H·v at extreme logits equal their closed forms") {
  // The rules read the softmax the forward pass kept.  Logits ±1000 (and a -inf) leave no room for
  // an exponential computed carelessly; the closed forms use p from the shifted exponentials:
  //   J̇ = (1/B) Σ_b (⟨p_b, ż_b⟩ − ż_{b,y_b}),   (H v)_b = (1/B) (diag p_b − p_b p_bᵀ) v_b.
  const double inf = std::numeric_limits<double>::infinity();
  const Array<double> z0(make_shape({3, 3}), {1000.0, -1000.0, 0.0, -1000.0, 999.0, 1000.0, -inf, 0.5, -0.25});
  const Array<double> v(make_shape({3, 3}), {0.3, -1.1, 0.7, 2.0, -0.4, 0.9, 1.5, -0.6, 0.2});
  const std::int32_t labels[] = {1, 2, 1};
  const auto record = [&](Tape& tape) {
    const Tensor z = tape.leaf(z0);
    return std::pair{z, softmax_cross_entropy(z, labels)};
  };
  std::vector<double> p(9);
  for (int b = 0; b < 3; ++b) {
    double m = -inf, sum = 0.0;
    for (int k = 0; k < 3; ++k) m = std::max(m, z0(b, k));
    for (int k = 0; k < 3; ++k) sum += std::exp(z0(b, k) - m);
    for (int k = 0; k < 3; ++k) p[static_cast<std::size_t>(3 * b + k)] = std::exp(z0(b, k) - m) / sum;
  }
  double jdot = 0.0;
  std::vector<double> hv(9);
  for (int b = 0; b < 3; ++b) {
    double pv = 0.0;
    for (int k = 0; k < 3; ++k) pv += p[static_cast<std::size_t>(3 * b + k)] * v(b, k);
    jdot += pv - v(b, labels[b]);
    for (int k = 0; k < 3; ++k)
      hv[static_cast<std::size_t>(3 * b + k)] = p[static_cast<std::size_t>(3 * b + k)] * (v(b, k) - pv) / 3.0;
  }
  jdot /= 3.0;
  {
    Tape tape;
    const auto [z, loss] = record(tape);
    CHECK(std::isfinite(loss.item()));
    const Array<double> got = jvp(tape, loss, {Direction(z, v)});
    CHECK(got[0] == doctest::Approx(jdot).epsilon(1e-14));
  }
  {
    Tape tape;
    const auto [z, loss] = record(tape);
    const Gradients r = hvp(tape, loss, {Direction(z, v)});
    for (std::int64_t i = 0; i < 9; ++i) {
      INFO("element " << i);
      CHECK(std::isfinite(r[z].flat(i)));
      CHECK(r[z].flat(i) == doctest::Approx(hv[static_cast<std::size_t>(i)]).epsilon(1e-14).scale(1e-300));
    }
  }
}

TEST_CASE("second-order: float32 tangents and Hessian-vector products agree with float64") {
  const Array<double> W64 = random({4, 3}, 31), b64 = random({4}, 32), X64 = random({6, 3}, 33);
  const Array<double> dW = random({4, 3}, 34), db = random({4}, 35);
  const std::int32_t labels[] = {0, 3, 1, 2, 2, 0};
  auto run = [&]<class T>() {
    Tape tape;
    const Tensor W = tape.leaf(to_array<T>(W64.view())), b = tape.leaf(to_array<T>(b64.view()));
    const Tensor X = tape.constant(to_array<T>(X64.view()));
    const Tensor z = linear(X, W, b);
    const Tensor loss = -mean(pick(log_softmax(tanh(z)), labels));
    const double dl = jvp(tape, loss, {{W, dW}, {b, db}})[0];
    const Gradients r = hvp(tape, loss, {{W, dW}, {b, db}});
    return std::pair{dl, r.array<double>(W)};
  };
  const auto [d64, h64] = run.operator()<double>();
  const auto [d32, h32] = run.operator()<float>();
  CHECK(d32 == doctest::Approx(d64).epsilon(1e-5));  // float32 rounding of the products
  for (std::int64_t i = 0; i < h64.size(); ++i) CHECK(h32[i] == doctest::Approx(h64[i]).epsilon(1e-4).scale(1e-3));
}

TEST_CASE("second-order: the README snippet") {
  ad::Tape tape;
  // UnfusedVar: one entry per scalar op, since a fused expression keeps no second derivatives
  ad::UnfusedVar x = tape.variable(-1.2), y = tape.variable(1.0);
  ad::Var f = square(1.0 - x) + 100.0 * square(y - square(x));  // Rosenbrock

  double df = ad::jvp(tape, f, {{x, 1.0}, {y, 0.5}});        // ∂f/∂x + ½ ∂f/∂y = -259.6, one forward pass
  ad::Gradients hv = ad::hvp(tape, f, {{x, 1.0}, {y, 0.0}});  // H·e_x: hv[x] = f_xx = 1330, hv[y] = f_xy = 480
  const ad::Var xs[] = {x, y};
  ad::Array<double> H = ad::hessian(tape, f, xs);             // [2, 2], one hvp per column
  CHECK(df == doctest::Approx(-259.6).epsilon(1e-14));
  CHECK(hv[x] == doctest::Approx(1330).epsilon(1e-14));
  CHECK(hv[y] == doctest::Approx(480).epsilon(1e-14));
  CHECK(H[0] == doctest::Approx(1330).epsilon(1e-14));
  CHECK(H[3] == doctest::Approx(200).epsilon(1e-14));

  nn::Rng rng(1);
  nn::MLP net({4, 8, 3}, nn::tanh, rng, {.dtype = ad::DType::f64});
  ad::Array<double> X({5, 4});
  X = random({5, 4}, 71);
  const std::int32_t labels[] = {0, 2, 1, 1, 0};
  ad::Tape t;
  ad::Tensor loss = nn::softmax_cross_entropy(net(t, X), labels);
  std::vector<ad::Array<double>> v;
  for (const auto& p : net.parameters()) v.emplace_back(p->shape());
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = second_order::directions_like({v[k]}, 72 + static_cast<unsigned>(k))[0];
  std::vector<ad::Array<double>> Hv = nn::hvp(net, t, loss, v);
  ad::Array<double> H2 = nn::hessian({net.linear(2).shared_weight(), net.linear(2).shared_bias()}, t, loss);
  REQUIRE(H2.shape() == Shape{27, 27});
  REQUIRE(Hv.size() == 4);

  // nn::hvp over all parameters against one ad::hvp with the leaves' handles, and H2 against the
  // last layer's part of H·v when v is zero elsewhere.
  std::vector<Direction> d;
  const auto params = net.parameters();
  for (std::size_t k = 0; k < params.size(); ++k) d.emplace_back(params[k]->recorded(), v[k]);
  const Gradients r = hvp(t, loss, d);
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Array<double> expect = r.array<double>(params[k]->recorded());
    for (std::int64_t i = 0; i < expect.size(); ++i) CHECK(Hv[k][i] == expect[i]);
  }
  std::vector<ad::Array<double>> last = {Array<double>(params[0]->shape()), Array<double>(params[1]->shape()), v[2], v[3]};
  const auto Hlast = nn::hvp(net, t, loss, last);
  for (std::int64_t i = 0; i < 27; ++i) {
    double s = 0.0;
    for (std::int64_t j = 0; j < 27; ++j) s += H2[i * 27 + j] * (j < 24 ? v[2][j] : v[3][j - 24]);
    const double got = i < 24 ? Hlast[2][i] : Hlast[3][i - 24];
    CHECK(got == doctest::Approx(s).epsilon(1e-12));
  }

  // nn::hvp against differences of the gradient along v (all parameters).
  std::vector<Array<double>> w0;
  for (const auto& p : params) w0.push_back(p->array<double>());
  const Difference dd = central_difference(
      [&](double eps) {
        for (std::size_t k = 0; k < params.size(); ++k)
          for (std::int64_t i = 0; i < v[k].size(); ++i)
            params[k]->array<double>()[i] = std::as_const(w0[k])[i] + eps * std::as_const(v[k])[i];
        ad::Tape t2;
        const ad::Tensor l2 = nn::softmax_cross_entropy(net(t2, X), labels);
        return t2.gradient(l2)[params[0]->recorded()].flat(3);
      },
      0.0, 1.0);
  for (std::size_t k = 0; k < params.size(); ++k) params[k]->array<double>() = w0[k];
  CHECK(compare(Hv[0][3], dd, DType::f64).error <= compare(Hv[0][3], dd, DType::f64).allowed);
  CHECK_THROWS_WITH_AS(nn::hvp(net, tape, loss, v), doctest::Contains("not recorded"), InvalidArgument);
}

TEST_CASE("second-order: a user-defined op with a tangent rule passes forward mode, without one it is named") {
  const Array<double> a = random({4}, 81), u = random({4}, 82);
  const auto my_square = [](const Tensor& x, bool with_tangent) {
    const auto xs = x.value().as<double>();
    Array<double> y(x.shape());
    for (std::size_t i = 0; i < xs.size(); ++i) y[static_cast<std::int64_t>(i)] = xs[i] * xs[i];
    CustomBackwardFn back = [](CustomBackward& b) {
      const auto xv = b.input<double>(0), g = b.grad<double>();
      const auto dx = b.input_grad<double>(0);
      for (std::size_t i = 0; i < dx.size(); ++i) dx[i] += 2 * xv[i] * g[i];
    };
    if (!with_tangent) return custom_op("my_square", {x}, std::move(y), back);
    return custom_op("my_square", {x}, std::move(y), back, [](CustomTangent& t) {
      const auto xv = t.input<double>(0), dx = t.input_tangent<double>(0);
      const auto dy = t.tangent<double>();
      for (std::size_t i = 0; i < dy.size(); ++i) dy[i] += 2 * xv[i] * dx[i];
    });
  };
  Tape tape;
  const Tensor x = tape.leaf(a);
  const Tensor y = sum(exp(my_square(x, true)));
  const double d = jvp(tape, y, {{x, u}})[0];
  double expect = 0.0;
  for (std::int64_t i = 0; i < 4; ++i) expect += std::exp(a[i] * a[i]) * 2 * a[i] * u[i];
  CHECK(d == doctest::Approx(expect).epsilon(1e-14));
  CHECK_THROWS_WITH_AS(hvp(tape, y, {{x, u}}), doctest::Contains("'my_square'"), MissingRuleError);
  Tape t2;
  const Tensor x2 = t2.leaf(a);
  const Tensor y2 = sum(my_square(x2, false));
  CHECK_THROWS_WITH_AS(jvp(t2, y2, {{x2, u}}), doctest::Contains("'my_square'"), MissingRuleError);
}
