// How a rule entry's backward step made up one element of an argument's adjoint, for the rules
// whose structure is known here.  Used by StepLog::explain to show sums like Σ_j W_ji δ_j.
#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

namespace ad::inspect_detail {

std::string rule_detail(const Tape& t, const GradStore& s, std::uint32_t from, std::uint32_t to,
                        std::int64_t element) {
  const Node* n = t.node(from);
  if (!n) return {};
  const std::string_view op = n->op;
  if ((op == "element" || op == "to_var") && n->args.size() == 1 && n->args[0] == to) {
    // d t[i] / d t is one-hot at i: only the picked element receives the Var's adjoint.
    if (element != n->params.i0) return "      (not the picked element: nothing added)\n";
    return fmt::format("      (the picked element: receives adj {} = {:.6g})\n", index_label(t, from), s.adj[from]);
  }
  return {};
}

}  // namespace ad::inspect_detail
