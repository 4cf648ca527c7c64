#include "nn/loss.hpp"

#include "autodiff/autodiff.hpp"

namespace nn {

namespace {

/// Every loss names its result "loss" on the tape (listings, g["loss"]); tape.name renames it.
ad::Tensor named(const ad::Tensor& J) { return J.tape()->name(J, "loss"); }

/// Rows of a [B, K] (or rank-1: one sample) operand; throws ShapeError for other ranks.
double batch_rows(const ad::Tensor& a, const char* what) {
  const ad::Shape& s = a.shape();
  if (s.size() == 1) return 1.0;
  if (s.size() == 2 && s[0] > 0) return static_cast<double>(s[0]);
  throw ad::ShapeError(fmt::format("{}: {} must be [B, K] with B > 0 (or one sample [K])", what,
                                   ad::describe_operand(a, "input")));
}

void check_same_shape(const ad::Tensor& a, const ad::Tensor& y, const char* what) {
  ad::tape_of(a, y, what);
  if (a.shape() != y.shape())
    throw ad::ShapeError(fmt::format("{}: prediction and target shapes differ: {}, {}", what,
                                     ad::describe_operand(a, "prediction"), ad::describe_operand(y, "target")));
}

void check_labels(const ad::Tensor& a, std::span<const std::int32_t> labels, const char* what) {
  ad::tape_of(a, what);
  const ad::Shape& s = a.shape();
  if (s.size() != 2 || static_cast<std::int64_t>(labels.size()) != s[0] || s[0] == 0)
    throw ad::ShapeError(fmt::format("{}: {} needs one label per row ([B, K] with B > 0), {} labels given", what,
                                     ad::describe_operand(a, "input"), labels.size()));
}

}  // namespace

ad::Tensor squared_error(const ad::Tensor& a, const ad::Tensor& y) {
  constexpr const char* what = "squared_error";
  check_same_shape(a, y, what);
  const double B = batch_rows(a, what);
  return named(ad::sum(ad::square(a - y)) * (0.5 / B));
}

ad::Tensor cross_entropy(const ad::Tensor& a, const ad::Tensor& y) {
  constexpr const char* what = "cross_entropy";
  check_same_shape(a, y, what);
  const double B = batch_rows(a, what);
  return named(ad::sum(y * ad::log(a)) * (-1.0 / B));
}

ad::Tensor cross_entropy(const ad::Tensor& a, std::span<const std::int32_t> labels) {
  check_labels(a, labels, "cross_entropy");
  return named(-ad::mean(ad::log(ad::pick(a, labels))));
}

ad::Tensor softmax_cross_entropy(const ad::Tensor& logits, std::span<const std::int32_t> labels) {
  check_labels(logits, labels, "softmax_cross_entropy");
  return named(ad::softmax_cross_entropy(logits, labels));
}

ad::Tensor binary_cross_entropy(const ad::Tensor& p, const ad::Tensor& y) {
  constexpr const char* what = "binary_cross_entropy";
  check_same_shape(p, y, what);
  const double B = batch_rows(p, what);
  return named(ad::sum(y * ad::log(p) + (1.0 - y) * ad::log(1.0 - p)) * (-1.0 / B));
}

}  // namespace nn
