// Where a NaN or an infinity first appears: in the values (creation order) or in the adjoints
// (sweep order).
#include <cmath>

#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

namespace ad {

using namespace inspect_detail;

namespace {

std::string kind(double x) { return std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"); }

std::string where(const View& v, std::int64_t at) {
  return v.rank() == 0 ? std::string() : fmt::format(" at element {}", index_text(v.shape(), at));
}

/// The listing lines of an entry and of its arguments, aligned together.
std::string context(const Tape& t, std::uint32_t e, const GradStore* g, std::uint32_t step = 0) {
  std::vector<std::uint32_t> es{e};
  const auto args = t.args(e);
  for (auto a : args) es.push_back(a);
  if (step) es.push_back(step);
  const auto ls = lines(t, es, g, ListOptions{});
  std::string r = "  " + ls[0] + "\n";
  if (args.empty()) r += "its arguments: none (a leaf: the value was given, not computed)\n";
  else r += "its arguments:\n";
  for (std::size_t k = 0; k < args.size(); ++k) r += "  " + ls[k + 1] + "\n";
  if (step) r += "the backward step that added it:\n  " + ls.back() + "\n";
  return r;
}

void check_adjoints(const Tape& t, const GradStore& s, std::uint32_t step) {
  for (auto a : distinct_grad_args(t, step)) {
    const auto adj = adjoint_of(t, s, a);
    if (!adj) continue;
    const std::int64_t at = first_non_finite(*adj);
    if (at < 0) continue;
    throw NonFiniteError(fmt::format(
        "checked_gradient: the adjoint of {} became {}{} in the backward step of {} ({}):\n{}", index_label(t, a),
        kind(adj->flat(at)), where(*adj, at), index_label(t, step), op_text(t, step), context(t, a, &s, step)));
  }
}

/// A hook that checks, after every step that ran, the adjoints it added to.
SweepHooks finiteness_check(const Tape& t) {
  SweepHooks h;
  h.after = [&t](const SweepStep& sw) {
    if (sw.runs) check_adjoints(t, sw.gradients.store(), sw.entry);
  };
  return h;
}

}  // namespace

void check_finite(const Tape& t) {
  for (std::uint32_t i = 1; i < t.size(); ++i) {
    const View v = t.value_view(i);
    const std::int64_t at = first_non_finite(v);
    if (at < 0) continue;
    const bool leaf = t.args(i).empty();
    throw NonFiniteError(fmt::format("check_finite: the value of {} is {}{}, {}:\n{}", index_label(t, i),
                                     kind(v.flat(at)), where(v, at),
                                     leaf ? "given as a leaf" : "computed by " + op_text(t, i) + " from finite arguments",
                                     context(t, i, t.last_gradient())));
  }
}

Gradients checked_gradient(Tape& t, const Var& y) {
  t.check(y.tape(), y.generation(), y.index(), "checked_gradient");
  return t.gradient(y, finiteness_check(t));
}

Gradients checked_gradient(Tape& t, const Tensor& y) {
  t.check_output(y, "checked_gradient");
  return t.gradient(y, finiteness_check(t));
}

}  // namespace ad
