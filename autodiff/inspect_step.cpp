// Step-through backward: the reverse sweep run entry by entry, every contribution recorded.
#include <algorithm>
#include <cmath>
#include <limits>

#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

namespace ad {

using namespace inspect_detail;

namespace inspect_detail {

std::vector<std::uint32_t> distinct_grad_args(const Tape& t, std::uint32_t i) {
  std::vector<std::uint32_t> r;
  for (auto a : t.args(i))
    if (t.requires_grad(a) && std::find(r.begin(), r.end(), a) == r.end()) r.push_back(a);
  return r;
}

}  // namespace inspect_detail

namespace {

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();

bool is_tensor_entry(const Tape& t, std::uint32_t e) {
  const Node* n = t.node(e);
  return n && !n->scalar_out;
}

/// A copy of a tensor entry's adjoint as doubles (zeros if nothing has flowed in yet).
Array<double> snapshot(const Tape& t, const GradStore& s, std::uint32_t e) {
  const Node& n = *t.node(e);
  Array<double> r(n.shape);
  if (const void* p = s.tadj[t.node_index(e)])
    dispatch(n.dtype, [&]<class T>() {
      const T* q = static_cast<const T*>(p);
      for (std::int64_t k = 0; k < r.size(); ++k) r[k] = q[k];
    });
  return r;
}

/// Hooks that record every step of a sweep into `steps`: before a step, what each argument's
/// adjoint was; after it, what the step added.
SweepHooks recorder(const Tape& t, std::vector<Step>& steps) {
  SweepHooks h;
  h.before = [&t, &steps](const SweepStep& sw) {
    const GradStore& s = sw.gradients.store();
    const std::uint32_t i = sw.entry;
    Step st;
    st.entry = i;
    st.rule = t.op(i) == Op::rule;
    st.skipped = !sw.runs;
    if (st.skipped) {
      steps.push_back(std::move(st));
      return;
    }
    const auto args = t.args(i);
    if (!st.rule) {
      const double gi = s.adj[i];
      for (std::size_t k = 0; k < args.size(); ++k) {
        Contribution c;
        c.to = args[k];
        c.slot = static_cast<int>(k);
        c.partial = t.partial(i, static_cast<int>(k));
        c.amount = c.partial * gi;  // exactly what the sweep adds
        st.contributions.push_back(std::move(c));
      }
    } else {
      for (auto a : distinct_grad_args(t, i)) {
        Contribution c;
        c.to = a;
        c.slot = static_cast<int>(std::find(args.begin(), args.end(), a) - args.begin());
        c.tensor = is_tensor_entry(t, a);
        c.partial = nan_v;
        if (c.tensor) c.before = snapshot(t, s, a);
        else c.amount = s.adj[a];
        st.contributions.push_back(std::move(c));
      }
    }
    steps.push_back(std::move(st));
  };
  h.after = [&t, &steps](const SweepStep& sw) {
    Step& st = steps.back();
    if (!st.rule || st.skipped) return;
    const GradStore& s = sw.gradients.store();
    for (auto& c : st.contributions) {
      if (c.tensor) c.after = snapshot(t, s, c.to);
      else c.amount = s.adj[c.to] - c.amount;
    }
  };
  return h;
}

}  // namespace

StepLog step_through(Tape& t, const Var& y) {
  t.check(y.tape(), y.generation(), y.index(), "step_through");
  std::vector<Step> steps;
  steps.reserve(y.index());
  Gradients g = t.gradient(y, recorder(t, steps));
  return StepLog(t, std::move(g), y.index(), std::move(steps));
}

StepLog step_through(Tape& t, const Tensor& y) {
  const std::uint32_t e = t.check_output(y, "step_through");
  std::vector<Step> steps;
  steps.reserve(e);
  Gradients g = t.gradient(y, recorder(t, steps));
  return StepLog(t, std::move(g), e, std::move(steps));
}

// ---- queries -----------------------------------------------------------------------------------------

AdjointTerms StepLog::terms(std::uint32_t e, std::int64_t element) const {
  const Tape& t = *tape_;
  check_store(t, g_.store(), "StepLog::terms");
  if (e == 0 || e > output_)
    throw InvalidArgument(fmt::format("StepLog::terms: entry #{} is not swept (the sweep covers #1..#{})", e, output_));
  const Shape shape = t.shape_of_entry(e);
  if (element < 0 || element >= numel(shape))
    throw IndexError(fmt::format("StepLog::terms: element {} out of range for {} ({})", element,
                                 index_label(t, e), describe(t.dtype_of_entry(e), shape)));
  const GradStore& s = g_.store();
  AdjointTerms r;
  r.entry = e;
  r.element = element;
  const auto adj = adjoint_of(t, s, e);
  r.adjoint = adj ? adj->flat(element) : 0.0;
  if (e == output_) r.terms.push_back({.from = 0, .amount = 1.0, .partial = nan_v, .incoming = nan_v, .note = "seed"});
  for (const Step& st : steps_) {
    for (const Contribution& c : st.contributions) {
      if (c.to != e) continue;
      Term term;
      term.from = st.entry;
      term.amount = c.tensor ? c.after[element] - c.before[element] : c.amount;
      term.partial = st.rule ? nan_v : c.partial;
      const Shape from_shape = t.shape_of_entry(st.entry);
      // A rule that is not element-wise (an element pick, a matmul) touches the whole adjoint of its
      // argument; where it added exactly nothing it is not a term of this element.
      if (c.tensor && from_shape != shape && term.amount == 0.0) continue;
      if (from_shape == shape) {
        const auto fa = adjoint_of(t, s, st.entry);
        term.incoming = fa ? fa->flat(element) : 0.0;
      } else if (from_shape.empty()) {
        term.incoming = s.adj[st.entry];
      } else {
        term.incoming = nan_v;
      }
      if (st.rule) rule_terms(t, s, st.entry, e, element, term);
      r.terms.push_back(std::move(term));
    }
  }
  return r;
}

AdjointTerms StepLog::terms(std::string_view name, std::initializer_list<std::int64_t> index) const {
  const std::uint32_t e = tape_->find(name);
  if (e == 0) throw InvalidArgument(fmt::format("StepLog::terms: no entry of the tape is named \"{}\"", name));
  const std::int64_t flat = flat_index(tape_->shape_of_entry(e), index, "StepLog::terms");
  return terms(e, flat);
}

namespace {

std::string num(double x) { return fmt::format("{:.6g}", x); }

/// " (= adj name)" for a non-empty alias, with another joiner on request.
std::string also(const std::string& alias, const char* join = nullptr) {
  if (alias.empty()) return {};
  return join ? join + alias : " (= adj " + alias + ")";
}

std::string element_label(const Tape& t, std::uint32_t e, std::int64_t element) {
  return index_label(t, e) + index_text(t.shape_of_entry(e), element);
}

}  // namespace

std::string StepLog::alias(std::uint32_t e, std::int64_t element) const {
  const Tape& t = *tape_;
  if (!t.name_of(e).empty()) return {};
  for (int hops = 0; hops < 16 && t.name_of(e).empty(); ++hops) {
    const AdjointTerms at = terms(e, element);
    // Follow an adjoint passed on unchanged by a single sum (an add with partial 1, a bias add).
    if (at.terms.size() != 1 || at.terms[0].from == 0 || at.terms[0].amount != at.adjoint) return {};
    const std::uint32_t f = at.terms[0].from;
    if (t.shape_of_entry(f) != t.shape_of_entry(e) || at.terms[0].incoming != at.adjoint) return {};
    e = f;
  }
  if (t.name_of(e).empty()) return {};
  return fmt::format("{}{}", t.name_of(e), index_text(t.shape_of_entry(e), element));
}

std::string StepLog::products_text(const Term& term, const std::string& pad) const {
  const Tape& t = *tape_;
  constexpr std::size_t shown = 16;
  double sum = 0.0;
  for (const auto& p : term.products) sum += p.factor * p.adjoint;
  std::string r = fmt::format("{}= sum of {} product{} factor x adj (total {}):\n", pad, term.products.size(),
                              term.products.size() == 1 ? "" : "s", num(sum));
  for (std::size_t k = 0; k < term.products.size() && k < shown; ++k) {
    const Product& p = term.products[k];
    r += fmt::format("{}  {:<18} {:>11} x {:>11} = {:>11}   (adj {}{})\n", pad, p.factor_label, num(p.factor),
                     num(p.adjoint), num(p.factor * p.adjoint), element_label(t, p.adjoint_entry, p.adjoint_element),
                     also(alias(p.adjoint_entry, p.adjoint_element), " = adj "));
  }
  if (term.products.size() > shown) r += fmt::format("{}  ... ({} more)\n", pad, term.products.size() - shown);
  return r;
}

std::string StepLog::explain_terms(const AdjointTerms& at, int depth) const {
  const Tape& t = *tape_;
  const std::string pad(2 * depth, ' ');
  std::string r = fmt::format("{}adj {} = {}, the sum of {} term{}:\n", pad, element_label(t, at.entry, at.element),
                              num(at.adjoint), at.terms.size(), at.terms.size() == 1 ? "" : "s");
  for (const Term& term : at.terms) {
    if (term.from == 0) {
      r += fmt::format("{}  seed                               {:>+12.6g}\n", pad, term.amount);
      continue;
    }
    const std::string from = index_label(t, term.from) + " = " + op_text(t, term.from) + args_text(t, term.from);
    std::string how;
    if (!std::isnan(term.partial)) {
      how = fmt::format("= partial {} x adj {}{}", num(term.partial), num(term.incoming),
                        also(alias(term.from, 0)));
    } else if (!std::isnan(term.incoming) && t.args(term.from).size() == 1 && term.incoming != 0.0) {
      how = fmt::format("= local {} x adj {}{}  (rule {})", num(term.amount / term.incoming), num(term.incoming),
                        also(alias(term.from, t.shape_of_entry(term.from).empty() ? 0 : at.element)),
                        op_text(t, term.from));
    } else {
      how = fmt::format("(rule {})", op_text(t, term.from));
    }
    r += fmt::format("{}  from {:<30} {:>+12.6g}  {}\n", pad, from, term.amount, how);
    if (!term.note.empty()) r += fmt::format("{}      ({})\n", pad, term.note);
    if (!term.products.empty()) r += products_text(term, pad + "      ");
  }
  // One term through an element-wise op (an activation): show how that op's adjoint was assembled.
  if (depth < 3 && at.terms.size() == 1 && at.terms[0].from != 0) {
    const std::uint32_t f = at.terms[0].from;
    if (t.shape_of_entry(f) == t.shape_of_entry(at.entry)) r += explain_terms(terms(f, at.element), depth + 1);
  }
  return r;
}

std::string StepLog::explain(std::string_view name, std::initializer_list<std::int64_t> index) const {
  return explain_terms(terms(name, index), 0);
}

std::string StepLog::format(const ListOptions& opt, bool all) const {
  const Tape& t = *tape_;
  check_store(t, g_.store(), "StepLog::format");
  const GradStore& s = g_.store();
  std::vector<char> sel(t.size(), 0);
  for (auto e : select_entries(t, opt)) sel[e] = 1;
  // A subtree shows the steps of its own entries; a layer also the steps that feed it from outside
  // (the next layer's products adding into this layer's activations).
  const bool feeders = opt.subtree.empty();
  const int k = opt.elements;
  std::string r = fmt::format("reverse sweep from {}, seed 1\n", index_label(t, output_));
  for (const Step& st : steps_) {
    bool shown = sel[st.entry] != 0;
    for (const auto& c : st.contributions) shown = shown || (feeders && sel[c.to]);
    if (!shown || (st.skipped && !all)) continue;
    const auto adj = adjoint_of(t, s, st.entry);
    r += fmt::format("{} = {}{}   adj {}{}\n", index_label(t, st.entry), op_text(t, st.entry), args_text(t, st.entry),
                     adj ? summarise(*adj, k) : std::string("0"), st.skipped ? "  (nothing to push back)" : "");
    for (const auto& c : st.contributions) {
      const std::string to = operand_text(t, c.to);
      if (!st.rule) {
        r += fmt::format("    -> {:<14} partial {} x adj {} = {}\n", to, num(c.partial), num(s.adj[st.entry]),
                         num(c.amount));
      } else if (!c.tensor) {
        r += fmt::format("    -> {:<14} rule {}: added {}\n", to, op_text(t, st.entry), num(c.amount));
      } else {
        Array<double> d(c.after.shape());
        std::int64_t changed = 0, where = 0;
        for (std::int64_t j = 0; j < d.size(); ++j) {
          d[j] = c.after[j] - c.before[j];
          if (d[j] != 0.0) ++changed, where = j;
        }
        if (changed == 0) {
          r += fmt::format("    -> {:<14} rule {}: added nothing (zeros)\n", to, op_text(t, st.entry));
          continue;
        }
        if (changed == 1 && d.size() > 1) {  // an element pick: one number
          r += fmt::format("    -> {:<14} rule {}: added {} at {}\n", to, op_text(t, st.entry), num(d[where]),
                           index_text(d.shape(), where));
          continue;
        }
        const bool from_zero = std::all_of(c.before.values().begin(), c.before.values().end(),
                                           [](double v) { return v == 0.0; });
        if (from_zero) {
          r += fmt::format("    -> {:<14} rule {}: added {}\n", to, op_text(t, st.entry), summarise(d.view(), k));
          continue;
        }
        r += fmt::format("    -> {:<14} rule {}: adj before {}\n    {:<17} after {}\n    {:<17} added {}\n", to,
                         op_text(t, st.entry), summarise(c.before.view(), k), "", summarise(c.after.view(), k), "",
                         summarise(d.view(), k));
      }
    }
  }
  return r;
}

}  // namespace ad
