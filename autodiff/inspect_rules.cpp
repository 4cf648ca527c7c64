// How a rule entry's backward step made up one element of an argument's adjoint: asked of the op's
// descriptor (its explain hook, written beside the op's backward rule), then labelled here.
// StepLog::explain uses it to show sums like Σ_j W_ji δ_j.
#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

namespace ad::inspect_detail {

void rule_terms(const Tape& t, const GradStore& s, std::uint32_t from, std::uint32_t to, std::int64_t element,
                Term& term) {
  const Node* n = t.node(from);
  if (!n || !n->op->explain) return;
  const auto adj = adjoint_of(t, s, from);
  if (!adj) return;
  Explanation ex;
  n->op->explain(ExplainQuery{.tape = t, .node = *n, .adjoint = *adj, .to = to, .element = element}, ex);
  term.note = std::move(ex.note);
  for (const ExplainProduct& p : ex.products) {
    Product r{.factor = p.factor, .adjoint_entry = from, .adjoint_element = p.adjoint_element,
              .adjoint = adj->flat(p.adjoint_element)};
    if (p.factor_entry != 0)
      r.factor_label = operand_text(t, p.factor_entry) + index_text(t.shape_of_entry(p.factor_entry), p.factor_element);
    else
      r.factor_label = fmt::format("{:g}", p.factor);
    term.products.push_back(std::move(r));
  }
}

}  // namespace ad::inspect_detail
