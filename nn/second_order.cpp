#include "nn/second_order.hpp"

namespace nn {

namespace {

/// The leaves of `tape` that read parameter p's buffer; InvalidArgument if there are none.
std::vector<std::uint32_t> leaves_of(const Parameter& p, const ad::Tape& tape, const char* what) {
  const std::vector<std::uint32_t> r =
      ad::dispatch(p.dtype(), [&]<class T>() { return tape.readers(p.array<T>()); });
  if (r.empty())
    throw ad::InvalidArgument(fmt::format("{}: parameter {} ({}) was not recorded on this tape", what, p.name(),
                                          ad::describe(p.dtype(), p.shape())));
  return r;
}

}  // namespace

namespace detail {

std::pair<ad::Gradients, std::vector<std::vector<std::uint32_t>>> hvp_leaves(const ParameterList& params,
                                                                             ad::Tape& tape, const ad::Tensor& loss,
                                                                             const std::vector<ad::View>& v) {
  constexpr const char* what = "nn::hvp";
  if (v.size() != params.size())
    throw ad::InvalidArgument(fmt::format("{}: {} directions for {} parameters", what, v.size(), params.size()));
  std::vector<std::vector<std::uint32_t>> readers;
  std::vector<ad::Direction> dirs;
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Parameter& p = *params[k];
    if (v[k].shape() != p.shape())
      throw ad::ShapeError(fmt::format("{}: the direction for {} is {} but the parameter is {}", what, p.name(),
                                       ad::describe(v[k].dtype(), v[k].shape()), ad::describe(p.dtype(), p.shape())));
    readers.push_back(leaves_of(p, tape, what));
    for (const std::uint32_t e : readers.back()) dirs.emplace_back(ad::Tensor(&tape, e, tape.generation()), v[k]);
  }
  return {ad::hvp(tape, loss, dirs), std::move(readers)};
}

}  // namespace detail

std::vector<ad::Array<double>> hvp_views(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss,
                                         const std::vector<ad::View>& v) {
  const auto [r, leaves] = detail::hvp_leaves(params, tape, loss, v);
  std::vector<ad::Array<double>> out;
  for (const auto& l : leaves) out.push_back(detail::sum_over<double>(r, l));
  return out;
}

ad::Array<double> hessian(const ParameterList& params, ad::Tape& tape, const ad::Tensor& loss) {
  std::int64_t n = 0;
  std::vector<ad::Array<double>> e;
  for (const auto& p : params) {
    n += p->size();
    e.emplace_back(p->shape());
  }
  ad::Array<double> H(ad::Shape{n, n});
  for (std::int64_t j = 0, k = 0, at = 0; j < n; ++j, ++at) {
    while (at == e[k].size()) {  // the next parameter
      ++k;
      at = 0;
    }
    e[k][at] = 1.0;
    std::vector<ad::View> v;
    for (const auto& a : e) v.push_back(a.view());
    const auto col = hvp_views(params, tape, loss, v);
    e[k][at] = 0.0;
    std::int64_t i = 0;
    for (const auto& c : col)
      for (std::int64_t q = 0; q < c.size(); ++q) H[i++ * n + j] = std::as_const(c)[q];
  }
  return H;
}

}  // namespace nn
