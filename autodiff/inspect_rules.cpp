// How a rule entry's backward step made up one element of an argument's adjoint, for the rules
// whose structure is known here.  StepLog::explain uses it to show sums like Σ_j W_ji δ_j.
#include "autodiff/inspect.hpp"
#include "autodiff/inspect_detail.hpp"

namespace ad::inspect_detail {

namespace {

/// Row-major flat offset of (i, j) in the matrix number `batch` of a rank-2 or rank-3 shape (a
/// rank-2 operand is the same matrix for every batch).
std::int64_t matrix_offset(const Shape& s, std::int64_t batch, std::int64_t i, std::int64_t j) {
  const std::int64_t rows = s[s.size() - 2], cols = s[s.size() - 1];
  return (s.size() == 3 ? batch * rows * cols : 0) + i * cols + j;
}

// C = op(A)·op(B), op transposing a stored matrix when its flag (params i0 for A, i1 for B) is set;
// rank-3 operands are batches of matrices, a rank-2 operand is shared by every batch.
//   adj op(A)[r,p] = Σ_q adj C[r,q] · op(B)[p,q]        adj op(B)[p,q] = Σ_r op(A)[r,p] · adj C[r,q]
// and a shared operand sums these over the batch.  A stored element (i, j) of a transposed operand
// is element (j, i) of op(·).
void matmul_products(const Tape& t, const GradStore& s, const Node& n, std::uint32_t to, std::int64_t element,
                     Term& term) {
  const auto& args = n.args;
  const Shape &sa = t.shape_of_entry(args[0]), &sb = t.shape_of_entry(args[1]);
  const Shape& sc = n.shape;
  if (sa.size() < 2 || sb.size() < 2 || sc.size() < 2) return;
  const bool ta = n.params.i0 != 0, tb = n.params.i1 != 0;
  const std::int64_t batches = sc.size() == 3 ? sc[0] : 1;
  const std::int64_t m = sc[sc.size() - 2], nn = sc[sc.size() - 1];
  const View a = t.value_view(args[0]), b = t.value_view(args[1]);
  const auto g = adjoint_of(t, s, n.entry);
  if (!g) return;
  const std::string la = operand_text(t, args[0]), lb = operand_text(t, args[1]);
  auto op_a = [&](std::int64_t bt, std::int64_t r, std::int64_t p) {  // flat offset of op(A)_bt[r,p] in A
    return ta ? matrix_offset(sa, bt, p, r) : matrix_offset(sa, bt, r, p);
  };
  auto op_b = [&](std::int64_t bt, std::int64_t p, std::int64_t q) {
    return tb ? matrix_offset(sb, bt, q, p) : matrix_offset(sb, bt, p, q);
  };
  auto add = [&](const std::string& label, const Shape& shape, const View& v, std::int64_t off, std::int64_t goff) {
    term.products.push_back({label + index_text(shape, off), v.flat(off), n.entry, goff, g->flat(goff)});
  };
  for (int side = 0; side < 2; ++side) {
    if (args[static_cast<std::size_t>(side)] != to) continue;
    const Shape& st = side == 0 ? sa : sb;
    const std::int64_t per = st[st.size() - 2] * st[st.size() - 1];
    const std::int64_t own_batch = st.size() == 3 ? element / per : -1;  // -1: shared by every batch
    const std::int64_t i = (element % per) / st[st.size() - 1], j = element % st[st.size() - 1];
    const bool trans = side == 0 ? ta : tb;
    const std::int64_t r_or_p = trans ? j : i, p_or_q = trans ? i : j;
    for (std::int64_t bt = 0; bt < batches; ++bt) {
      if (own_batch >= 0 && bt != own_batch) continue;
      if (side == 0)  // element (r, p) of op(A): Σ_q op(B)[p,q] · adj C[r,q]
        for (std::int64_t q = 0; q < nn; ++q) add(lb, sb, b, op_b(bt, p_or_q, q), matrix_offset(sc, bt, r_or_p, q));
      else  // element (p, q) of op(B): Σ_r op(A)[r,p] · adj C[r,q]
        for (std::int64_t r = 0; r < m; ++r) add(la, sa, a, op_a(bt, r, r_or_p), matrix_offset(sc, bt, r, p_or_q));
    }
  }
}

/// Flat index of the operand element that output element `o` reads under NumPy broadcasting.
std::int64_t broadcast_source(const Shape& out, const Shape& arg, std::int64_t o) {
  std::int64_t flat = 0, stride = 1;
  const std::size_t skip = out.size() - arg.size();
  for (std::size_t d = out.size(); d-- > 0;) {
    const std::int64_t i = o % out[d];
    o /= out[d];
    if (d < skip) continue;
    const std::int64_t n = arg[d - skip];
    if (n != 1) flat += i * stride;
    stride *= n;
  }
  return flat;
}

// A broadcast operand of add, sub or mul: the element received Σ over the output elements that
// read it of ∂out/∂operand · adj out, with ∂out/∂operand = 1 (add), ±1 (sub), the other operand (mul).
void broadcast_products(const Tape& t, const GradStore& s, const Node& n, std::uint32_t to, std::int64_t element,
                        Term& term) {
  const std::string_view op = n.op;
  const auto g = adjoint_of(t, s, n.entry);
  if (!g || n.shape.size() > max_rank) return;
  for (std::size_t side = 0; side < 2; ++side) {
    if (n.args[side] != to) continue;
    const Shape arg = t.shape_of_entry(to);
    if (arg.size() > n.shape.size()) return;
    const std::uint32_t other = n.args[1 - side];
    const Shape other_shape = t.shape_of_entry(other);
    const View ov = t.value_view(other);
    for (std::int64_t o = 0, m = numel(n.shape); o < m; ++o) {
      if (broadcast_source(n.shape, arg, o) != element) continue;
      Product p{.factor_label = "1", .factor = 1.0, .adjoint_entry = n.entry, .adjoint_element = o, .adjoint = g->flat(o)};
      if (op == "sub" && side == 1) p.factor_label = "-1", p.factor = -1.0;
      if (op == "mul") {
        const std::int64_t k = broadcast_source(n.shape, other_shape, o);
        p.factor_label = operand_text(t, other) + index_text(other_shape, k);
        p.factor = ov.flat(k);
      }
      term.products.push_back(std::move(p));
    }
  }
}

}  // namespace

void rule_terms(const Tape& t, const GradStore& s, std::uint32_t from, std::uint32_t to, std::int64_t element,
                Term& term) {
  const Node* n = t.node(from);
  if (!n) return;
  const std::string_view op = n->op;
  if ((op == "element" || op == "to_var") && n->args.size() == 1 && n->args[0] == to) {
    // d t[i] / d t is one-hot at i: only the picked element receives the Var's adjoint.
    term.note = element == n->params.i0
                    ? fmt::format("the picked element: receives adj {} = {:.6g}", index_label(t, from), s.adj[from])
                    : std::string("not the picked element: nothing added");
  } else if (op == "matmul" && n->args.size() == 2 && !n->scalar_out) {
    matmul_products(t, s, *n, to, element, term);
  } else if (op == "linear" && n->args.size() == 3) {
    // z = x·Wᵀ + b: x and W as in a matmul with W transposed; b[j] received Σ_r adj z[r,j].
    if (to != n->args[2]) {
      matmul_products(t, s, *n, to, element, term);
    } else if (const auto g = adjoint_of(t, s, n->entry)) {
      const std::int64_t cols = n->shape[1];
      for (std::int64_t r = 0; r < n->shape[0]; ++r)
        term.products.push_back({.factor_label = "1", .factor = 1.0, .adjoint_entry = n->entry,
                                 .adjoint_element = r * cols + element, .adjoint = g->flat(r * cols + element)});
    }
  } else if ((op == "add" || op == "sub" || op == "mul") && n->args.size() == 2 && !n->scalar_out &&
             t.shape_of_entry(to) != n->shape) {
    broadcast_products(t, s, *n, to, element, term);
  }
}

}  // namespace ad::inspect_detail
