// The main demo: the seed's backpropagation on a tiny network, number by number.
//
// A 3-4-4-3 network (sigmoid hidden layers, softmax output, cross-entropy, one sample, fixed
// weights) walked through in the seed's notation.  Every number the hand formulas of
// nn/backprop give is checked against the tape (✓ or ✗ with the difference), the seed's printed
// formulas are shown beside the corrected ones, and the reader's seven questions are answered.
//
//   walkthrough                  explanations in English
//   walkthrough --lang zh        explanations in Chinese, the seed's language
//   walkthrough --explorer PATH  also writes the tape explorer page of the network to PATH
#include <cmath>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "examples/walkthrough_tape.hpp"

namespace {

using nn::backprop::Act;
using nn::backprop::Loss;
using nn::backprop::Mat;
using nn::backprop::Network;
using nn::backprop::Pass;

bool zh = false;       // --lang zh
int agree = 0;         // checks of the corrected formulas that agreed with the tape
int disagree = 0;      // ... that did not (the program exits with 1 if any)
int printed_off = 0;   // the seed's printed formulas shown to disagree with the tape

void say(std::string_view en, std::string_view cn) { fmt::print("{}\n", zh ? cn : en); }

void section(int n, std::string_view en, std::string_view cn) {
  fmt::print("\n{} {}\n{}\n", n, zh ? cn : en, std::string(96, '-'));
}

/// The seed's reader asked seven questions (in red, beside the derivation); each is restated here,
/// in this program's words, where it is answered.
void question(int n) {
  struct Q {
    const char* en;
    const char* cn;
  };
  static constexpr Q questions[] = {
      {"What exactly is a \"residual\" (残差)? Explain it.", "“残差”到底指什么？请解释一下。"},
      {"In 9.21, how can x_j equal a_j ∂J/∂b_i, and why should anything there equal 1?",
       "9.21 里 x_j 怎么会等于 a_j ∂J/∂b_i？又为什么会有某个量等于 1？"},
      {"So a parameter's gradient is the next layer's residual: is that reading right?",
       "这么说，参数的梯度就是下一层的残差：这样理解对吗？"},
      {"How, concretely, are δ^(L−1), …, δ^(1) computed?", "δ^(L−1)、…、δ^(1) 具体是怎么一层层算出来的？"},
      {"Why is 9.23 the derivative? Show the steps.", "为什么 9.23 就是这个导数？请写出推导步骤。"},
      {"9.26: give the detailed steps, and skip none.", "9.26：请给出详细步骤，一步也不要省略。"},
      {"Overall the derivation reads smoothly, but it needs filling in.", "整体推导读起来很顺，但还需要补全细节。"},
  };
  const Q& q = questions[n - 1];
  if (zh) fmt::print("   读者的问题 {}：{}\n\n", n, q.cn);
  else fmt::print("   The reader's question {}: {}\n\n", n, q.en);
}

/// Row n of a matrix as "[  0.1234  -0.5678 ]".
std::string row(const Mat& v, std::int64_t n = 0, int width = 8, int digits = 4) {
  std::string s = "[";
  for (std::int64_t i = 0; i < v.dim(1); ++i) s += fmt::format(" {:{}.{}f}", v(n, i), width, digits);
  return s + " ]";
}

double max_abs_diff(const Mat& a, const Mat& b) {
  double d = 0.0;
  for (std::int64_t k = 0; k < a.size(); ++k) d = std::max(d, std::fabs(a[k] - b[k]));
  return d;
}

/// Whether hand and tape agree to rounding (1e-12 relative to the larger of 1 and the tape's
/// largest entry), counted: `corrected` says whether this is one of the project's formulas (a
/// disagreement there is a failure) or one of the seed's as printed.
bool agrees(const Mat& hand, const Mat& tape, bool corrected, double* diff = nullptr) {
  double size = 1.0;
  for (double v : tape.values()) size = std::max(size, std::fabs(v));
  const double d = max_abs_diff(hand, tape);
  if (diff) *diff = d;
  const bool ok = d <= 1e-12 * size;
  if (corrected) (ok ? agree : disagree) += 1;
  else if (!ok) ++printed_off;
  return ok;
}

/// "tape ✓ |Δ| 5.6e-17" when hand and tape agree, "tape ✗ |Δ| 2.3e-01" otherwise.
std::string versus(const Mat& hand, const Mat& tape, bool corrected = true) {
  double d = 0.0;
  const bool ok = agrees(hand, tape, corrected, &d);
  return fmt::format("tape {} |Δ| {:.1e}", ok ? "✓" : "✗", d);
}

/// 0.25 as "0.25" and -0.25 as "(−0.25)", for products written out term by term.
std::string signed_number(double v, int digits) {
  return v < 0 ? fmt::format("(−{:.{}f})", -v, digits) : fmt::format("{:.{}f}", v, digits);
}

Mat as_row(const Mat& b) { return b.reshaped({1, b.size()}); }

/// J as a function of z^(l) alone (layers above l, then the loss), for the nudge test.
double loss_from_z(const Network& net, std::int64_t l, const Mat& z, const Mat& y, Loss loss) {
  using namespace nn::backprop;
  Mat a, next;
  activation_forward(a, z, net.activation(l));
  for (std::int64_t k = l + 1; k <= net.layers(); ++k) {
    linear_forward(next, a, net.W[static_cast<std::size_t>(k - 1)], net.b[static_cast<std::size_t>(k - 1)]);
    activation_forward(a, next, net.activation(k));
  }
  return loss_forward(a, y, loss);
}

void print_matrix(std::string_view label, const Mat& W, std::string_view right = {}) {
  for (std::int64_t r = 0; r < W.dim(0); ++r)
    fmt::print("   {:<14}{}{}\n", r == 0 ? label : "", row(W, r, 6, 2), r == 0 ? right : "");
}

// ---- the sections -----------------------------------------------------------------------------------

void forward_pass(const Network& net, const Mat& x, const Pass& p, const TapeRun& t) {
  section(1, "Forward pass", "前向传播");
  fmt::print("   x^(1) = {}\n", row(x));
  for (std::int64_t l = 1; l <= 3; ++l) {
    const auto k = static_cast<std::size_t>(l - 1);
    fmt::print("\n");
    print_matrix(fmt::format("W^({}) =", l), net.W[k], fmt::format("    b^({}) = {}", l, row(as_row(net.b[k]), 0, 5, 2)));
    const std::string zl = fmt::format("z^({}) = W^({}) x^({}) + b^({})", l, l, l, l);
    const std::string al = fmt::format("a^({}) = {}(z^({}))", l, l < 3 ? "sigmoid" : "softmax", l);
    fmt::print("   {:<28}= {}   {}\n", zl, row(p.layer(l).z), versus(p.layer(l).z, t.z[k]));
    fmt::print("   {:<28}= {}   {}\n", al, row(p.layer(l).a), versus(p.layer(l).a, t.a[k]));
  }
  fmt::print("\n   J = −ln a_2^(3) = {:.6f}   (9.25)   {}\n", p.loss, versus(Mat::scalar(p.loss), Mat::scalar(t.J)));
}

void what_is_delta(const Network& net, const Mat& x, const Mat& y, const Pass& p, const TapeRun& t) {
  section(2, "What δ is, and why it is called the residual (question 1)", "δ 是什么，为什么叫“残差”（问题 1）");
  question(1);
  say("   δ_i^(l) = ∂J/∂z_i^(l): how much the loss J moves per unit change of z_i^(l), the weighted input\n"
      "   of node i in layer l. The name comes from fitting a line: with a linear output and squared\n"
      "   error, J = ½‖y − z^(L)‖² and δ^(L) = z^(L) − y, the prediction minus the target: the residual\n"
      "   of the fit. Other outputs and losses change the formula but not the role: δ_i is node i's\n"
      "   error signal.",
      "   δ_i^(l) = ∂J/∂z_i^(l)：第 l 层第 i 个节点的加权输入 z_i^(l) 每变化一个单位，损失 J 变化多少。\n"
      "   名字来自拟合：输出层是线性的、损失是平方误差时，J = ½‖y − z^(L)‖²，δ^(L) = z^(L) − y，\n"
      "   即“预测值减目标值”，正是回归里的残差。换了输出函数和损失，公式会变，但角色不变：\n"
      "   δ_i 就是节点 i 承担的误差信号。");
  {
    const Mat& z = p.layer(3).z;
    Mat delta(z.shape());
    for (std::int64_t i = 0; i < 3; ++i) delta(0, i) = z(0, i) - y(0, i);
    const TapeRun lin = tape_run(Network{net.W, net.b, Act::sigmoid, Act::identity}, x, y, Loss::squared_error);
    say("   This network's z^(3), as if the output were linear with squared error, y = (0, 1, 0):",
        "   用本网络的 z^(3)，假设输出层是线性的、损失是平方误差，y = (0, 1, 0)：");
    fmt::print("   δ^(3) = z^(3) − y = {}   {}\n", row(delta), versus(delta, lin.dz[2]));
  }
  say("\n   The residual of every node of our network (sections 3 to 5 derive these numbers). Nudging z_i\n"
      "   by ±ε, ε = 1e-5, moves J by δ_i per unit, which is what the definition says:",
      "\n   本网络每个节点的残差（第 3 至 5 节逐步推导这些数）。把 z_i 增减 ε（ε = 1e-5），\n"
      "   J 每单位变化 δ_i，这正是定义所说的：");
  fmt::print("   {:>6} {:>6} {:>11} {:>11} {:>24}   {}\n", zh ? "层 l" : "layer", zh ? "节点 i" : "node", "z_i^(l)",
             "δ_i^(l)", "(J(z+ε) − J(z−ε)) / 2ε", "");
  for (std::int64_t l = 3; l >= 1; --l)
    for (std::int64_t i = 0; i < net.width(l); ++i) {
      Mat z = p.layer(l).z;
      const double eps = 1e-5, z0 = z(0, i);
      z(0, i) = z0 + eps;
      const double up = loss_from_z(net, l, z, y, Loss::cross_entropy);
      z(0, i) = z0 - eps;
      const double down = loss_from_z(net, l, z, y, Loss::cross_entropy);
      const double d = p.layer(l).delta(0, i);
      fmt::print("   {:>6} {:>6} {:>11.6f} {:>11.6f} {:>24.6f}   {}\n", l, i + 1, z0, d, (up - down) / (2 * eps),
                 versus(Mat::scalar(d), Mat::scalar(t.dz[static_cast<std::size_t>(l - 1)](0, i))));
    }
}

void output_delta(const Pass& p, const Mat& y, const TapeRun& t) {
  section(3, "The output residual δ^(3): softmax with cross-entropy, every step (question 6)",
          "输出层残差 δ^(3)：softmax 加交叉熵，一步不跳（问题 6）");
  question(6);
  const Mat& a = p.layer(3).a;
  say("   Step 1, the loss. J = −Σ_k y_k ln a_k (9.24). y is 1 at the true class k̃ = 2 and 0 elsewhere,\n"
      "   so J = −ln a_2 (9.25).",
      "   第 1 步，损失。J = −Σ_k y_k ln a_k（9.24）。y 只在真实类别 k̃ = 2 处为 1，其余为 0，\n"
      "   所以 J = −ln a_2（9.25）。");
  say("   Step 2, its slope in a. ∂J/∂a_k = −y_k / a_k: zero for k ≠ k̃, and for k = k̃:",
      "   第 2 步，J 对 a 的导数。∂J/∂a_k = −y_k / a_k：k ≠ k̃ 时为 0；k = k̃ 时：");
  fmt::print("           ∂J/∂a_2 = −1 / a_2 = −1 / {:.4f} = {:.4f}\n", a(0, 1), -1.0 / a(0, 1));
  say("   Step 3, how softmax moves. a_k = e^{z_k} / S with S = Σ_j e^{z_j}, so a_k depends on every z_i.\n"
      "   The quotient rule gives\n"
      "           ∂a_k/∂z_i = (1[k=i] e^{z_k} S − e^{z_k} e^{z_i}) / S² = a_k (1[k=i] − a_i).\n"
      "   As a matrix, J_softmax = diag(a) − a aᵀ (row k, column i):",
      "   第 3 步，softmax 怎么变。a_k = e^{z_k} / S，S = Σ_j e^{z_j}，所以 a_k 依赖每一个 z_i。\n"
      "   由商的求导法则：\n"
      "           ∂a_k/∂z_i = (1[k=i] e^{z_k} S − e^{z_k} e^{z_i}) / S² = a_k (1[k=i] − a_i)。\n"
      "   写成矩阵：J_softmax = diag(a) − a aᵀ（第 k 行、第 i 列）：");
  Mat J({3, 3});
  for (std::int64_t k = 0; k < 3; ++k)
    for (std::int64_t i = 0; i < 3; ++i) J(k, i) = a(0, k) * ((k == i ? 1.0 : 0.0) - a(0, i));
  for (std::int64_t k = 0; k < 3; ++k) fmt::print("           {}\n", row(J, k));
  say("   Only the diagonal a_i (1 − a_i) looks like the sigmoid's derivative; the other entries are not 0.",
      "   只有对角线 a_i (1 − a_i) 与 sigmoid 的导数同形；非对角线元素并不为 0。");
  say("   Step 4, the chain rule through every a_k:\n"
      "           δ_i = Σ_k (∂J/∂a_k)(∂a_k/∂z_i) = (−1/a_k̃) · a_k̃ (1[i=k̃] − a_i) = a_i − 1[i=k̃],\n"
      "   so δ^(3) = a^(3) − y:",
      "   第 4 步，链式法则，对每个 a_k 求和：\n"
      "           δ_i = Σ_k (∂J/∂a_k)(∂a_k/∂z_i) = (−1/a_k̃) · a_k̃ (1[i=k̃] − a_i) = a_i − 1[i=k̃]，\n"
      "   所以 δ^(3) = a^(3) − y：");
  for (std::int64_t i = 0; i < 3; ++i)
    fmt::print("           δ_{} = a_{} − {} = {:.4f} − {} = {:8.4f}\n", i + 1, i + 1, y(0, i), a(0, i), y(0, i),
               p.layer(3).delta(0, i));
  fmt::print("           δ^(3) = {}   {}\n", row(p.layer(3).delta), versus(p.layer(3).delta, t.dz[2]));
  say("\n   The seed's 9.27 takes f′(x) = f(x)(1 − f(x)): that is the sigmoid's derivative, only the diagonal\n"
      "   of J_softmax. It gets a_k̃ − 1 at the true class and 0 at the others:",
      "\n   原文 9.27 取 f′(x) = f(x)(1 − f(x))：这是 sigmoid 的导数，只是 J_softmax 的对角线。\n"
      "   于是它在真实类别得到 a_k̃ − 1，在其他类别得到 0：");
  Mat printed;
  nn::backprop::seed_literal::softmax_cross_entropy_delta(printed, a, y);
  fmt::print("   {:>4} {:>14} {:>18} {:>12}\n", "i", zh ? "原文 9.27" : "seed 9.27", zh ? "修正 a − y" : "corrected a − y",
             zh ? "tape 伴随" : "tape");
  for (std::int64_t i = 0; i < 3; ++i) {
    const Mat s = Mat::scalar(printed(0, i)), c = Mat::scalar(p.layer(3).delta(0, i)), tp = Mat::scalar(t.dz[2](0, i));
    const bool seed_ok = agrees(s, tp, false), corrected_ok = agrees(c, tp, true);
    fmt::print("   {:>4} {:>14.4f} {:>18.4f} {:>12.4f}   {} {}  {} {}\n", i + 1, s[0], c[0], tp[0],
               zh ? "原文" : "seed", seed_ok ? "✓" : "✗", zh ? "修正" : "corrected", corrected_ok ? "✓" : "✗");
  }
  say("   9.26's −f′(z_k̃)/f(z_k̃) assumes a_k̃ depends on z_k̃ alone. That is true for an element-wise f\n"
      "   (sigmoid outputs, where 9.26 holds) and false for softmax, whose outputs share one denominator.",
      "   9.26 的 −f′(z_k̃)/f(z_k̃) 假设 a_k̃ 只依赖 z_k̃。逐元素的 f（如 sigmoid 输出）确实如此，\n"
      "   9.26 成立；softmax 的各输出共用一个分母，这个假设不成立。");
}

void squared_error_chain_rule(const Network& net, const Mat& x, const Mat& y, const Pass& p) {
  section(4, "Why 9.23 is the derivative of squared error (question 5)", "为什么 9.23 是平方误差的导数（问题 5）");
  question(5);
  say("   J = ½ Σ_k (y_k − a_k)² (9.22).\n"
      "   Step 1: ∂J/∂a_k = (y_k − a_k) · ∂(y_k − a_k)/∂a_k = −(y_k − a_k)   (the derivative of ½u² is u).\n"
      "   Step 2: for an element-wise f, a_k = f(z_k) depends on z_k only:\n"
      "           ∂a_k/∂z_i = f′(z_i) if k = i, and 0 otherwise.\n"
      "   Step 3: the chain-rule sum over k keeps one term:  δ_i = −(y_i − a_i) f′(z_i)   (9.23).",
      "   J = ½ Σ_k (y_k − a_k)²（9.22）。\n"
      "   第 1 步：∂J/∂a_k = (y_k − a_k) · ∂(y_k − a_k)/∂a_k = −(y_k − a_k)（½u² 的导数是 u）。\n"
      "   第 2 步：f 逐元素作用时，a_k = f(z_k) 只依赖 z_k：\n"
      "           k = i 时 ∂a_k/∂z_i = f′(z_i)，否则为 0。\n"
      "   第 3 步：链式法则对 k 的求和只剩一项：δ_i = −(y_i − a_i) f′(z_i)（9.23）。");
  say("   Numbers, if layer 3 used sigmoid with squared error (same z^(3) and y):",
      "   代入数字：假设第 3 层用 sigmoid 加平方误差（z^(3) 和 y 不变）：");
  Network sig = net;
  sig.output = Act::sigmoid;
  const Pass ps = nn::backprop::forward_backward(sig, x, y, Loss::squared_error, 0.0);
  const TapeRun ts = tape_run(sig, x, y, Loss::squared_error);
  const Mat& a = ps.layer(3).a;
  Mat minus(a.shape()), fprime(a.shape());
  for (std::int64_t i = 0; i < 3; ++i) {
    minus(0, i) = -(y(0, i) - a(0, i));
    fprime(0, i) = a(0, i) * (1.0 - a(0, i));
  }
  fmt::print("     a = σ(z^(3))      = {}\n     −(y − a)          = {}\n     f′(z) = a (1 − a) = {}\n", row(a),
             row(minus), row(fprime));
  fmt::print("     δ^(3) = {}   = {}   {}\n", zh ? "三者相乘" : "product ", row(ps.layer(3).delta),
             versus(ps.layer(3).delta, ts.dz[2]));
  say("   With softmax outputs step 2 fails (every a_k depends on every z_i): δ^(3) = J_softmaxᵀ (a − y).",
      "   输出层是 softmax 时第 2 步不成立（每个 a_k 依赖所有 z_i），δ^(3) = J_softmaxᵀ (a − y)：");
  const Pass pm = nn::backprop::forward_backward(net, x, y, Loss::squared_error, 0.0);
  const TapeRun tm = tape_run(net, x, y, Loss::squared_error);
  Mat naive(a.shape());
  for (std::int64_t i = 0; i < 3; ++i) {
    const double ai = pm.layer(3).a(0, i);
    naive(0, i) = -(y(0, i) - ai) * ai * (1.0 - ai);
  }
  fmt::print("     J_softmaxᵀ (a − y) = {}   {}\n", row(pm.layer(3).delta), versus(pm.layer(3).delta, tm.dz[2]));
  fmt::print("     {}  = {}   {}\n", zh ? "9.23 逐元素套用 " : "9.23 element-wise", row(naive),
             versus(naive, tm.dz[2], false));
  (void)p;
}

void recursion(const Network& net, const Pass& p, const TapeRun& t) {
  section(5, "From δ^(3) back to δ^(2) and δ^(1): the recursion (question 4)",
          "从 δ^(3) 递推出 δ^(2) 和 δ^(1)（问题 4）");
  question(4);
  say("   z_j^(l+1) = Σ_i W_ji^(l+1) a_i^(l) + b_j^(l+1) and a_i^(l) = f(z_i^(l)), so\n"
      "     ∂z_j^(l+1)/∂z_i^(l) = W_ji^(l+1) f′(z_i^(l))            (9.18, corrected)\n"
      "     δ_i^(l) = Σ_j δ_j^(l+1) W_ji^(l+1) f′(z_i^(l))           (9.16 with 9.18: 9.19, corrected)\n"
      "     δ^(l) = ((W^(l+1))ᵀ δ^(l+1)) ⊙ f′(z^(l))\n"
      "   Each residual is sent back along the weights that carried the signal forward, then scaled by\n"
      "   the slope of the node's activation. The seed prints W_ij^(l): the matrix that feeds layer l\n"
      "   instead of the one leaving it, and its indices the other way round.",
      "   z_j^(l+1) = Σ_i W_ji^(l+1) a_i^(l) + b_j^(l+1)，且 a_i^(l) = f(z_i^(l))，所以\n"
      "     ∂z_j^(l+1)/∂z_i^(l) = W_ji^(l+1) f′(z_i^(l))            （9.18，修正后）\n"
      "     δ_i^(l) = Σ_j δ_j^(l+1) W_ji^(l+1) f′(z_i^(l))           （9.16 代入 9.18：9.19，修正后）\n"
      "     δ^(l) = ((W^(l+1))ᵀ δ^(l+1)) ⊙ f′(z^(l))\n"
      "   每个残差沿前向传播时经过的权重传回来，再乘以该节点激活函数的斜率。\n"
      "   原文写成 W_ij^(l)：用的是进入第 l 层的矩阵，而不是离开它的矩阵，而且下标顺序也反了。");
  for (std::int64_t l = 2; l >= 1; --l) {
    const Mat& Wn = net.W[static_cast<std::size_t>(l)];
    const Mat& dn = p.layer(l + 1).delta;
    const Mat& a = p.layer(l).a;
    fmt::print("\n");
    say(fmt::format("   Layer {}, from δ^({}) through W^({}) ({}×{}); f = sigmoid, f′(z) = a (1 − a):", l, l + 1, l + 1,
                    Wn.dim(0), Wn.dim(1)),
        fmt::format("   第 {} 层：由 δ^({}) 经 W^({})（{}×{}）传回；f = sigmoid，f′(z) = a (1 − a)：", l, l + 1, l + 1,
                    Wn.dim(0), Wn.dim(1)));
    std::string terms;
    for (std::int64_t j = 0; j < Wn.dim(0); ++j)
      terms += fmt::format("{}{}·{}", j ? " + " : "", signed_number(Wn(j, 0), 2), signed_number(dn(0, j), 4));
    fmt::print("     δ_1^({}) = (Σ_j W_j1^({}) δ_j^({})) f′(z_1^({}))\n", l, l + 1, l + 1, l);
    fmt::print("             = ({}) · {:.4f} = {:.4f}\n", terms, a(0, 0) * (1 - a(0, 0)), p.layer(l).delta(0, 0));
    fmt::print("     {:>3} {:>22} {:>12} {:>12}\n", "i", "Σ_j W_ji δ_j", "f′(z_i)", "δ_i");
    for (std::int64_t i = 0; i < a.dim(1); ++i) {
      double s = 0.0;
      for (std::int64_t j = 0; j < Wn.dim(0); ++j) s += Wn(j, i) * dn(0, j);
      fmt::print("     {:>3} {:>22.6f} {:>12.6f} {:>12.6f}\n", i + 1, s, a(0, i) * (1 - a(0, i)), p.layer(l).delta(0, i));
    }
    fmt::print("     δ^({}) = {}   {}\n", l, row(p.layer(l).delta), versus(p.layer(l).delta, t.dz[static_cast<std::size_t>(l - 1)]));
  }
  say("\n   9.19 as printed, Σ_j W_ij^(l) δ_j^(l+1) f′(z_i^(l)):", "\n   照原文 9.19 字面计算，Σ_j W_ij^(l) δ_j^(l+1) f′(z_i^(l))：");
  Mat printed;
  nn::backprop::seed_literal::delta_recursion(printed, p.layer(3).delta, net.W[1], p.layer(2).z, Act::sigmoid);
  fmt::print("     {} {}   {}\n", zh ? "第 2 层（读 W^(2)，4×4）：" : "layer 2 (reads W^(2), 4×4):", row(printed),
             versus(printed, t.dz[1], false));
  try {
    nn::backprop::seed_literal::delta_recursion(printed, p.layer(2).delta, net.W[0], p.layer(1).z, Act::sigmoid);
  } catch (const ad::ShapeError&) {
    ++printed_off;
    say("     layer 1: needs W_i4^(1), but W^(1) is 4×3 (s_2 = 4 > s_0 = 3): those weights do not exist.",
        "     第 1 层：需要 W_i4^(1)，但 W^(1) 是 4×3（s_2 = 4 > s_0 = 3）：公式引用的权重根本不存在。");
  }
}

void parameter_gradients(const Network& net, const Mat& x, const Pass& p, const TapeRun& t) {
  section(6, "Gradients of the parameters (questions 2 and 3; 9.21)", "参数的梯度（问题 2、3；9.21）");
  question(2);
  question(3);
  say("   z_i^(l) = Σ_j W_ij^(l) x_j^(l) + b_i^(l), so ∂z_i/∂W_ij = x_j and ∂z_i/∂b_i = 1.\n"
      "   With δ_i = ∂J/∂z_i:\n"
      "     ∂J/∂W_ij^(l) = δ_i^(l) x_j^(l) = δ_i^(l) a_j^(l−1)      that is  ∂J/∂W^(l) = δ^(l) (x^(l))ᵀ\n"
      "     ∂J/∂b_i^(l)  = δ_i^(l)                                  that is  ∂J/∂b^(l) = δ^(l)\n"
      "   Question 2: the seed's 9.21 sets these two results in one aligned block and a line break went\n"
      "   missing, so it reads \"x_j = a_j ∂J/∂b_i\". Split after a_j^(l), it is two equations; the \"1\" the\n"
      "   reader looked for is ∂z_i/∂b_i, which is why ∂J/∂b_i = δ_i. (The block's first line also\n"
      "   writes z_j where it means z_i, the node W_ij feeds, as the δ_i on its next line shows.)\n"
      "   Question 3: yes. A layer's parameter gradient is the residual of the z those parameters feed.\n"
      "   Here W^(l) feeds z^(l), so it is δ^(l); the seed's 9.21 numbers the weights leaving layer l as\n"
      "   W^(l), which feed z^(l+1), hence its δ^(l+1). Same rule, different numbering.",
      "   z_i^(l) = Σ_j W_ij^(l) x_j^(l) + b_i^(l)，所以 ∂z_i/∂W_ij = x_j，∂z_i/∂b_i = 1。\n"
      "   由 δ_i = ∂J/∂z_i：\n"
      "     ∂J/∂W_ij^(l) = δ_i^(l) x_j^(l) = δ_i^(l) a_j^(l−1)      即  ∂J/∂W^(l) = δ^(l) (x^(l))ᵀ\n"
      "     ∂J/∂b_i^(l)  = δ_i^(l)                                  即  ∂J/∂b^(l) = δ^(l)\n"
      "   问题 2：原文 9.21 把这两个结果排进同一个对齐块，漏了一个换行，读起来成了\n"
      "   “x_j = a_j ∂J/∂b_i”。在 a_j^(l) 之后断开，就是两个式子；读者要找的“1”是 ∂z_i/∂b_i，\n"
      "   所以 ∂J/∂b_i = δ_i。（该式第一行还把 z_i 误写成了 z_j：W_ij 输入的是 z_i，下一行的 δ_i\n"
      "   也说明了这一点。）\n"
      "   问题 3：理解正确。某层参数的梯度等于这些参数所输入的 z 的残差。本程序中 W^(l) 输入\n"
      "   z^(l)，所以是 δ^(l)；原文 9.21 把离开第 l 层的权重记为 W^(l)，它输入 z^(l+1)，\n"
      "   所以写成 δ^(l+1)。规则相同，只是编号不同。");
  for (std::int64_t l = 3; l >= 1; --l) {
    const auto k = static_cast<std::size_t>(l - 1);
    const Mat& in = l == 1 ? x : p.layer(l - 1).a;
    const std::string input = l == 1 ? "x^(1)" : fmt::format("a^({})", l - 1);
    fmt::print("\n   ∂J/∂W^({}) = δ^({}) ({})ᵀ{} {} = {}\n", l, l, input, zh ? "，其中" : ", with", input, row(in));
    for (std::int64_t r = 0; r < p.layer(l).dW.dim(0); ++r)
      fmt::print("               {}{}\n", row(p.layer(l).dW, r),
                 r == 0 ? fmt::format("   {}", versus(p.layer(l).dW, t.dW[k])) : "");
    fmt::print("   ∂J/∂b^({}) = δ^({}) = {}   {}\n", l, l, row(as_row(p.layer(l).db)),
               versus(p.layer(l).db, t.db[k]));
  }
  (void)net;
}

void descent_step(const Network& net, const Mat& x, const Mat& y, const Pass& p) {
  const double alpha = 0.5;
  section(7, "One step of gradient descent (9.14, 9.15), α = 0.5", "梯度下降走一步（9.14、9.15），α = 0.5");
  say("   W^(l) ← W^(l) − α ∂J/∂W^(l),   b^(l) ← b^(l) − α ∂J/∂b^(l)   (no weight decay here, λ = 0)",
      "   W^(l) ← W^(l) − α ∂J/∂W^(l)，  b^(l) ← b^(l) − α ∂J/∂b^(l)   （这里没有权重衰减，λ = 0）");
  Network hand = net;
  nn::backprop::gradient_descent_step(hand, p, alpha);
  const Network stepped = sgd_step_on_tape(net, x, y, alpha);  // nn::SGD on the tape's gradients
  for (std::size_t k = 0; k < 3; ++k) {
    fmt::print("   {} W^({}): {}    b^({}): {}\n", zh ? "走一步后的" : "after the step,", k + 1,
               versus(hand.W[k], stepped.W[k]), k + 1, versus(hand.b[k], stepped.b[k]));
  }
  const Pass after = nn::backprop::forward(hand, x, y, Loss::cross_entropy, 0.0);
  fmt::print("   J       {:.6f} → {:.6f}\n   a_2^(3) {:.6f} → {:.6f}\n", p.loss, after.loss, p.layer(3).a(0, 1),
             after.layer(3).a(0, 1));
  say("   The loss falls and the probability of the true class rises.",
      "   损失下降，真实类别的概率上升。");
}

}  // namespace

int main(int argc, char** argv) {
  const char* explorer = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string_view lang = std::strcmp(argv[i], "--lang") == 0 && i + 1 < argc ? argv[i + 1] : "";
    if (lang == "en" || lang == "zh") {
      zh = lang == "zh";
      ++i;
    } else if (std::strcmp(argv[i], "--explorer") == 0 && i + 1 < argc) {
      explorer = argv[++i];
    } else {
      if (std::strcmp(argv[i], "--lang") == 0)
        fmt::print(stderr, "walkthrough: no explanations in '{}' (en or zh)\n", i + 1 < argc ? argv[i + 1] : "");
      else
        fmt::print(stderr, "walkthrough: unknown argument '{}'\n", argv[i]);
      fmt::print(stderr, "usage: walkthrough [--lang en|zh] [--explorer PATH]\n");
      return 2;
    }
  }
  const Network net = walkthrough_network();
  const Mat x = walkthrough_x();
  const Mat y = walkthrough_y();
  say("deltagrad walkthrough: the seed's backpropagation on a 3-4-4-3 network, every number checked\n"
      "against the tape (one reverse sweep of ad::Tape). Notation as in the seed:\n"
      "  z^(l) = W^(l) x^(l) + b^(l),  a^(l) = f(z^(l)),  x^(l+1) = a^(l),  W^(l) is s_l × s_(l−1),\n"
      "  δ_i^(l) = ∂J/∂z_i^(l).  Indices count from 1. Layers 1 and 2 use sigmoid; layer 3 (L = 3) uses\n"
      "  softmax; the loss is cross-entropy; one sample, true class k̃ = 2.",
      "deltagrad 演示：在 3-4-4-3 网络上逐个数字地走一遍原文的反向传播，每个数都与计算带\n"
      "（ad::Tape 的一次反向扫描）核对。记号与原文相同：\n"
      "  z^(l) = W^(l) x^(l) + b^(l)，a^(l) = f(z^(l))，x^(l+1) = a^(l)，W^(l) 是 s_l × s_(l−1)，\n"
      "  δ_i^(l) = ∂J/∂z_i^(l)。下标从 1 开始。第 1、2 层用 sigmoid；第 3 层（L = 3）用 softmax；\n"
      "  损失为交叉熵；一个样本，真实类别 k̃ = 2。");
  say("\nThe equation numbers 9.14–9.27 and questions 1–7 are the seed's: a derivation of backpropagation\n"
      "(in Chinese) whose reader asked seven questions beside it. Each section below restates the question\n"
      "it answers. The derivation itself, step by step, is in docs/backprop.md (Chinese: docs/backprop.zh.md).\n"
      "\n"
      "How to read the checks. Each number computed by hand (nn/backprop, plain loops) is compared with\n"
      "the same number read from the tape. \"tape ✓ |Δ| 1.1e-16\" means they agree: |Δ| is the largest\n"
      "absolute difference over the entries shown, and ✓ means |Δ| ≤ 1e-12 · max(1, largest |entry|),\n"
      "that is, equal up to float64 rounding (about 1e-16 per operation, a few operations deep).\n"
      "✗ marks a difference above that: expected beside the seed's formulas as printed, and a failure\n"
      "beside the corrected ones (the program then exits with status 1).",
      "\n公式编号 9.14–9.27 和问题 1–7 都来自原文：一份反向传播的中文推导，读者在旁边提了七个问题。\n"
      "下面每一节开头都复述它所回答的问题。逐步的完整推导见 docs/backprop.zh.md（英文版 docs/backprop.md）。\n"
      "\n"
      "怎样读核对标记。每个手算的数（nn/backprop，普通循环）都与从计算带读出的同一个数比较。\n"
      "“tape ✓ |Δ| 1.1e-16”表示两者一致：|Δ| 是所列各元素中最大的绝对差，✓ 表示\n"
      "|Δ| ≤ 1e-12 · max(1, 最大的 |元素|)，即在 float64 舍入误差之内相等（每次运算约 1e-16，累积几次）。\n"
      "✗ 表示差别超过这个界：出现在原文字面公式旁是意料之中的；出现在修正后的公式旁则是错误\n"
      "（程序以状态 1 退出）。");
  const Pass p = nn::backprop::forward_backward(net, x, y, Loss::cross_entropy, 0.0);
  const TapeRun t = tape_run(net, x, y, Loss::cross_entropy);
  forward_pass(net, x, p, t);
  what_is_delta(net, x, y, p, t);
  output_delta(p, y, t);
  squared_error_chain_rule(net, x, y, p);
  recursion(net, p, t);
  parameter_gradients(net, x, p, t);
  descent_step(net, x, y, p);
  section(8, "Summary (question 7)", "小结（问题 7）");
  question(7);
  if (zh)
    fmt::print("   修正后的公式：{} 处与计算带一致（✓），{} 处不一致。\n"
               "   原文字面的公式（9.19、9.27，以及用于 softmax 的 9.23）：{} 处与计算带不符（✗）。\n",
               agree, disagree, printed_off);
  else
    fmt::print("   Corrected formulas: {} checks agree with the tape (✓), {} disagree.\n"
               "   The seed's formulas as printed (9.19, 9.27, and 9.23 applied to softmax): {} disagree (✗).\n",
               agree, disagree, printed_off);
  say("   The seed's derivation is smooth; what it needed was the softmax Jacobian, the transpose of the\n"
      "   next layer's weights, a line break in 9.21, and the numbers above. Full derivation:\n"
      "   docs/backprop.md (Chinese: docs/backprop.zh.md); tests: ctest --test-dir build -R seed.",
      "   原文的推导思路是顺的；需要补上的是 softmax 的雅可比矩阵、下一层权重的转置、9.21 的一个\n"
      "   换行，以及上面这些数字。完整推导见 docs/backprop.zh.md（英文版 docs/backprop.md）；\n"
      "   测试：ctest --test-dir build -R seed。");
  if (explorer) {
    // The same network and sample on a tape, as a page to click through: every δ^(l) is the
    // adjoint of layer<l>.z, and the step buttons replay the sweep that filled it in.
    const ad::Explorer page = write_walkthrough_explorer(explorer);
    fmt::print("\n{}\n", page.message);
  }
  return disagree == 0 ? 0 : 1;
}
