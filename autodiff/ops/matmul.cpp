// Matrix products through BLAS: C = op(A)·op(B), 2-D or batched over a leading dimension.
//
// op(X) is X or Xᵀ as the transpose flags say.  The flags go to BLAS as they are, in the forward
// product and in both backward products, so no operand is ever copied or transposed in memory.
#include <algorithm>
#include <cstdint>

#include "autodiff/backend/kernels.hpp"
#include "autodiff/blas.hpp"
#include "autodiff/forward.hpp"
#include "autodiff/ops/ops.hpp"
#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// matmul's saved state: which operands are read transposed.  linear saves {false, true}.
struct Transposes {
  bool a = false, b = false;
};

/// The sizes of one matmul: `batch` products C_b = op(A_b)·op(B_b) with op(A_b) m×k, op(B_b) k×n.
/// A shared (2-D) operand has stride 0, so the same matrix serves every product.
struct Geometry {
  bool ta = false, tb = false;
  std::int64_t batch = 1, m = 0, n = 0, k = 0;
  std::int64_t k_b = 0;            // inner dimension as read from b (equal to k for valid operands)
  std::int64_t lda = 0, ldb = 0;   // row lengths of A and B as stored
  std::int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

Geometry geometry(const Shape& a, const Shape& b, bool ta, bool tb) {
  Geometry g;
  g.ta = ta;
  g.tb = tb;
  const std::size_t ra = a.size(), rb = b.size();
  const std::int64_t a_rows = a[ra - 2], a_cols = a[ra - 1], b_rows = b[rb - 2], b_cols = b[rb - 1];
  g.m = ta ? a_cols : a_rows;
  g.k = ta ? a_rows : a_cols;
  g.k_b = tb ? b_cols : b_rows;
  g.n = tb ? b_rows : b_cols;
  g.lda = a_cols;
  g.ldb = b_cols;
  g.batch = ra == 3 ? a[0] : rb == 3 ? b[0] : 1;
  g.stride_a = ra == 3 ? a_rows * a_cols : 0;
  g.stride_b = rb == 3 ? b_rows * b_cols : 0;
  g.stride_c = g.m * g.n;
  // A batched, untransposed A against a shared B is one product: the batch's rows stacked.
  if (ra == 3 && rb == 2 && !ta) {
    g.m *= g.batch;
    g.batch = 1;
    g.stride_a = g.stride_c = 0;
  }
  return g;
}

/// dA += G·op(B)ᵀ for each product, written in A's stored orientation: with beta = 1 (rules add),
/// or beta = 0 into a fresh adjoint nothing has flowed into yet.  A shared operand's adjoint collects
/// every product's contribution.  A transposed A's adjoint is the transpose: dA += op(B)·Gᵀ.  With
/// a batch of 0 no product writes a fresh adjoint, so it is zeroed (na: A's element count).
template <Element T>
void product_grad_a(const Geometry& g, const T* dc, const T* b, T* da, bool fresh, std::int64_t na) {
  if (fresh && g.batch == 0) std::fill_n(da, na, T(0));
  for (std::int64_t i = 0; i < g.batch; ++i) {
    const T *gi = dc + i * g.stride_c, *bi = b + i * g.stride_b;
    T* dai = da + i * g.stride_a;
    const T beta = fresh && (i == 0 || g.stride_a != 0) ? T(0) : T(1);
    if (!g.ta)
      blas::gemm<T>(false, !g.tb, g.m, g.k, g.n, T(1), gi, g.n, bi, g.ldb, beta, dai, g.lda);
    else
      blas::gemm<T>(g.tb, true, g.k, g.m, g.n, T(1), bi, g.ldb, gi, g.n, beta, dai, g.lda);
  }
}

/// dB += op(A)ᵀ·G for each product, in B's stored orientation (tb: dB += Gᵀ·op(A)); as above.
template <Element T>
void product_grad_b(const Geometry& g, const T* dc, const T* a, T* db, bool fresh, std::int64_t nb) {
  if (fresh && g.batch == 0) std::fill_n(db, nb, T(0));
  for (std::int64_t i = 0; i < g.batch; ++i) {
    const T *gi = dc + i * g.stride_c, *ai = a + i * g.stride_a;
    T* dbi = db + i * g.stride_b;
    const T beta = fresh && (i == 0 || g.stride_b != 0) ? T(0) : T(1);
    if (!g.tb)
      blas::gemm<T>(!g.ta, false, g.k, g.n, g.m, T(1), ai, g.lda, gi, g.n, beta, dbi, g.ldb);
    else
      blas::gemm<T>(true, g.ta, g.n, g.k, g.m, T(1), gi, g.n, ai, g.lda, beta, dbi, g.ldb);
  }
}

/// C (+)= op(A)·op(B) product by product (beta 0 or 1).
template <Element T>
void product(const Geometry& g, const T* a, const T* b, T* c, T beta) {
  for (std::int64_t i = 0; i < g.batch; ++i)
    blas::gemm<T>(g.ta, g.tb, g.m, g.n, g.k, T(1), a + i * g.stride_a, g.lda, b + i * g.stride_b, g.ldb, beta,
                  c + i * g.stride_c, g.n);
}

/// dA += G·op(B)ᵀ and dB += op(A)ᵀ·G (see product_grad_a and product_grad_b).
void matmul_backward(BackwardContext& c) {
  const Transposes& t = c.saved<Transposes>();
  const Geometry g = geometry(c.arg_shape(0), c.arg_shape(1), t.a, t.b);
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dc = c.grad<T>();
    bool fresh = false;
    if (T* da = c.arg_grad_or_fresh<T>(0, fresh)) product_grad_a(g, dc, c.arg_value<T>(1), da, fresh, numel(c.arg_shape(0)));
    if (T* db = c.arg_grad_or_fresh<T>(1, fresh)) product_grad_b(g, dc, c.arg_value<T>(0), db, fresh, numel(c.arg_shape(1)));
  });
}

/// Ċ = op(Ȧ)·op(B) + op(A)·op(Ḃ) into a fresh (unwritten) dc: the first product that runs writes
/// it (beta = 0), the second adds (a zero tangent's product is skipped).  The pass calls a rule
/// only when an argument's tangent is non-zero, so a product normally runs and writes every
/// element; were neither to move, Ċ is written as zero.
template <Element T>
void product_tangent(const Geometry& g, TangentContext& c, T* dc) {
  bool written = false;
  if (const T* da = c.arg_tangent<T>(0)) {
    product(g, da, c.arg_value<T>(1), dc, T(0));
    written = true;
  }
  if (const T* db = c.arg_tangent<T>(1)) {
    product(g, c.arg_value<T>(0), db, dc, written ? T(1) : T(0));
    written = true;
  }
  if (!written) std::fill_n(dc, g.batch * g.m * g.n, T(0));
}

/// Tangent of C = op(A)·op(B): Ċ = op(Ȧ)·op(B) + op(A)·op(Ḃ).
void matmul_tangent(TangentContext& c) {
  const Transposes& t = c.saved<Transposes>();
  const Geometry g = geometry(c.arg_shape(0), c.arg_shape(1), t.a, t.b);
  dispatch(c.node().dtype, [&]<class T>() {
    product_tangent(g, c, c.fresh_tangent<T>());
  });
}

/// Curvature: the backward products are bilinear, so with G fixed they move by dA += G·op(Ḃ)ᵀ and
/// dB += op(Ȧ)ᵀ·G: the backward rule itself with the tangents in place of the values.
void matmul_curvature(CurvatureContext& c) {
  const Transposes& t = c.saved<Transposes>();
  const Geometry g = geometry(c.arg_shape(0), c.arg_shape(1), t.a, t.b);
  dispatch(c.node().dtype, [&]<class T>() {
    const T* dc = c.grad<T>();
    const T* ta = c.arg_tangent<T>(0);
    const T* tb = c.arg_tangent<T>(1);
    if (T* ra = c.arg_rgrad<T>(0); ra && tb) product_grad_a(g, dc, tb, ra, false, numel(c.arg_shape(0)));
    if (T* rb = c.arg_rgrad<T>(1); rb && ta) product_grad_b(g, dc, ta, rb, false, numel(c.arg_shape(1)));
  });
}

/// matmul's rule for x and W (read as op(W) = Wᵀ), then db[j] += Σ_r G[r,j]: each bias element
/// was added to every row.
void linear_backward(BackwardContext& c) {
  matmul_backward(c);
  dispatch(c.node().dtype, [&]<class T>() {
    T* db = c.arg_grad<T>(2);
    if (!db) return;
    const T* g = c.grad<T>();
    const std::int64_t rows = c.node().shape[0], cols = c.node().shape[1];
    // Column ranges over the threads, each summing its columns over every row.
    // The sums are compiled per instruction set (autodiff/backend/kernels.hpp).
    backend::parallel_for(cols, std::max<std::int64_t>(1, ops::elementwise_grain / std::max<std::int64_t>(rows, 1)),
                          [&](std::int64_t j0, std::int64_t j1) {
                            backend::kernels::add_column_sums(g, rows, cols, j0, j1, db);
                          });
  });
}

/// Tangent of z = x·Wᵀ + b: ż = ẋ·Wᵀ + x·Ẇᵀ + ḃ (added to every row).  A moving bias goes into
/// the first product the way the forward pass adds b (blas::linear_forward), so it costs no pass
/// of its own.
void linear_tangent(TangentContext& c) {
  dispatch(c.node().dtype, [&]<class T>() {
    const T* db = c.arg_tangent<T>(2);
    T* dz = c.fresh_tangent<T>();
    const std::int64_t rows = c.node().shape[0], out = c.node().shape[1], in = c.arg_shape(0)[1];
    if (!db) {
      const Geometry g = geometry(c.arg_shape(0), c.arg_shape(1), false, true);
      product_tangent(g, c, dz);
      return;
    }
    const T* dx = c.arg_tangent<T>(0);
    const T* dw = c.arg_tangent<T>(1);
    const T* x = c.arg_value<T>(0);
    const T* w = c.arg_value<T>(1);
    if (dw) blas::linear_forward<T>(rows, out, in, x, dw, db, dz);       // x·Ẇᵀ + ḃ
    else if (dx) blas::linear_forward<T>(rows, out, in, dx, w, db, dz);  // ẋ·Wᵀ + ḃ
    else
      for (std::int64_t r = 0; r < rows; ++r) std::copy_n(db, out, dz + r * out);
    if (dw && dx) blas::gemm<T>(false, true, rows, out, in, T(1), dx, in, w, in, T(1), dz, out);  // + ẋ·Wᵀ
  });
}

/// Row-major flat offset of (i, j) in the matrix number `batch` of a rank-2 or rank-3 shape (a
/// rank-2 operand is the same matrix for every batch).
std::int64_t matrix_offset(const Shape& s, std::int64_t batch, std::int64_t i, std::int64_t j) {
  const std::int64_t rows = s[s.size() - 2], cols = s[s.size() - 1];
  return (s.size() == 3 ? batch * rows * cols : 0) + i * cols + j;
}

// Step-through: C = op(A)·op(B), rank-3 operands being batches of matrices and a rank-2 operand
// shared by every batch, so
//   adj op(A)[r,p] = Σ_q adj C[r,q] · op(B)[p,q]        adj op(B)[p,q] = Σ_r op(A)[r,p] · adj C[r,q]
// and a shared operand sums these over the batch.  A stored element (i, j) of a transposed operand
// is element (j, i) of op(·).
void matmul_explain(const ExplainQuery& q, Explanation& ex) {
  const Node& n = q.node;
  const auto& args = n.args;
  const Shape &sa = q.tape.shape_of_entry(args[0]), &sb = q.tape.shape_of_entry(args[1]);
  const Shape& sc = n.shape;
  if (sa.size() < 2 || sb.size() < 2 || sc.size() < 2) return;
  const Transposes& tr = *static_cast<const Transposes*>(n.saved);
  const std::int64_t batches = sc.size() == 3 ? sc[0] : 1;
  const std::int64_t m = sc[sc.size() - 2], nn = sc[sc.size() - 1];
  const View a = q.tape.value_view(args[0]), b = q.tape.value_view(args[1]);
  auto op_a = [&](std::int64_t bt, std::int64_t r, std::int64_t p) {  // flat offset of op(A)_bt[r,p] in A
    return tr.a ? matrix_offset(sa, bt, p, r) : matrix_offset(sa, bt, r, p);
  };
  auto op_b = [&](std::int64_t bt, std::int64_t p, std::int64_t qq) {
    return tr.b ? matrix_offset(sb, bt, qq, p) : matrix_offset(sb, bt, p, qq);
  };
  auto add = [&](std::uint32_t entry, const View& v, std::int64_t off, std::int64_t goff) {
    ex.products.push_back({.factor_entry = entry, .factor_element = off, .factor = v.flat(off), .adjoint_element = goff});
  };
  for (int side = 0; side < 2; ++side) {
    if (args[static_cast<std::size_t>(side)] != q.to) continue;
    const Shape& st = side == 0 ? sa : sb;
    const std::int64_t per = st[st.size() - 2] * st[st.size() - 1];
    const std::int64_t own_batch = st.size() == 3 ? q.element / per : -1;  // -1: shared by every batch
    const std::int64_t i = (q.element % per) / st[st.size() - 1], j = q.element % st[st.size() - 1];
    const bool trans = side == 0 ? tr.a : tr.b;
    const std::int64_t r_or_p = trans ? j : i, p_or_q = trans ? i : j;
    for (std::int64_t bt = 0; bt < batches; ++bt) {
      if (own_batch >= 0 && bt != own_batch) continue;
      if (side == 0)  // element (r, p) of op(A): Σ_q op(B)[p,q] · adj C[r,q]
        for (std::int64_t k = 0; k < nn; ++k) add(args[1], b, op_b(bt, p_or_q, k), matrix_offset(sc, bt, r_or_p, k));
      else  // element (p, q) of op(B): Σ_r op(A)[r,p] · adj C[r,q]
        for (std::int64_t r = 0; r < m; ++r) add(args[0], a, op_a(bt, r, r_or_p), matrix_offset(sc, bt, r, p_or_q));
    }
  }
}

/// Step-through of linear: x and W as in a matmul with W transposed; b[j] received Σ_r adj z[r,j].
void linear_explain(const ExplainQuery& q, Explanation& ex) {
  const Node& n = q.node;
  if (q.to != n.args[2]) return matmul_explain(q, ex);
  const std::int64_t cols = n.shape[1];
  for (std::int64_t r = 0; r < n.shape[0]; ++r)
    ex.products.push_back({.factor = 1.0, .adjoint_element = r * cols + q.element});
}

constexpr OpDescriptor matmul_op{.name = "matmul", .backward = matmul_backward, .tangent = matmul_tangent,
                                 .curvature = matmul_curvature, .explain = matmul_explain};
// The bias term of linear's backward rule reads no value: its curvature is matmul's.
constexpr OpDescriptor linear_op{.name = "linear", .backward = linear_backward, .tangent = linear_tangent,
                                 .curvature = matmul_curvature, .explain = linear_explain};

std::string transposed(const Tensor& t, const char* fallback, bool flag) {
  return ops::operand(t, fallback) + (flag ? "^T" : "");
}

}  // namespace

/// C = op(a)·op(b), where op transposes the last two dimensions when its flag is set.
///   2-D:      a [m,k], b [k,n]            -> C [m,n]
///   batched:  a [B,m,k], b [B,k,n]        -> C [B,m,n]   (product by product)
///             a [B,m,k], b [k,n] (shared) -> C [B,m,n]   (and a [m,k] with b [B,k,n])
/// Derivative, for C = A·B with upstream adjoint G:  dA = G·Bᵀ,  dB = Aᵀ·G (summed over the batch
/// for a shared operand); the transposed cases follow by transposing these.  Empty dimensions are
/// allowed: with k = 0 the product is a matrix of zeros and nothing flows back.
/// Throws ShapeError for ranks other than 2 and 3, batch sizes or inner dimensions that differ;
/// DTypeError for f32 with f64.
Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
  constexpr const char* op = "matmul";
  Tape& tape = ops::tape_of(a, b, op);
  ops::check_same_dtype(a, b, op);
  const Shape sa = a.shape(), sb = b.shape();
  if (sa.size() < 2 || sa.size() > 3 || sb.size() < 2 || sb.size() > 3)
    throw ShapeError(fmt::format("{}: operands must be 2-D, or 3-D (batched over the first dimension): {}, {}", op,
                                 ops::describe_operand(a, "lhs"), ops::describe_operand(b, "rhs")));
  if (sa.size() == 3 && sb.size() == 3 && sa[0] != sb[0])
    throw ShapeError(fmt::format("{}: batch sizes differ: {}, {}", op, ops::describe_operand(a, "lhs"),
                                 ops::describe_operand(b, "rhs")));
  const Geometry g = geometry(sa, sb, transpose_a, transpose_b);
  if (g.k != g.k_b)
    throw ShapeError(fmt::format("{}: inner dimensions differ: {}, {} ({} columns in {}, {} rows in {})", op,
                                 ops::describe_operand(a, "lhs"), ops::describe_operand(b, "rhs"), g.k,
                                 transposed(a, "lhs", transpose_a), g.k_b, transposed(b, "rhs", transpose_b)));

  Shape out;
  if (sa.size() == 3 || sb.size() == 3) out.push_back(sa.size() == 3 ? sa[0] : sb[0]);
  out.push_back(transpose_a ? sa[sa.size() - 1] : sa[sa.size() - 2]);  // rows of op(a)
  out.push_back(g.n);
  return dispatch(a.dtype(), [&]<class T>() {
    const T* av = static_cast<const T*>(a.node().data);
    const T* bv = static_cast<const T*>(b.node().data);
    T* cv = tape.allocate_value<T>(out, op);
    product(g, av, bv, cv, T(0));
    return ops::record_tensor(tape, matmul_op, a.dtype(), out, cv, {a.index(), b.index()},
                              Transposes{transpose_a, transpose_b});
  });
}

/// z = x·Wᵀ + b in one entry: the seed's z^(l) = W^(l) x^(l) + b^(l) for a batch x [B, in] with one
/// sample a row, W [out, in] and b [out]; z is [B, out].  blas::linear_forward adds the bias inside
/// the product (oneDNN), or writes the bias rows first and adds the product onto them (OpenBLAS),
/// so z costs one pass.
/// Derivative, with upstream adjoint G = ∂J/∂z:  dx = G·W,  dW = Gᵀ·x,  db = Σ_rows G.
/// Throws ShapeError unless x is 2-D, W is 2-D with W's columns equal to x's columns, and b has
/// W's row count; DTypeError for mixed element types.
Tensor linear(const Tensor& x, const Tensor& W, const Tensor& b) {
  constexpr const char* op = "linear";
  Tape& tape = ops::tape_of(x, W, op);
  ops::tape_of(x, b, op);
  ops::check_same_dtype(x, W, op);
  ops::check_same_dtype(x, b, op);
  const Shape sx = x.shape(), sw = W.shape(), sb = b.shape();
  if (sx.size() != 2 || sw.size() != 2 || sb.size() != 1 || sx[1] != sw[1] || sb[0] != sw[0])
    throw ShapeError(fmt::format("{}: expected x [B,in], W [out,in], b [out]: {}, {}, {}", op,
                                 ops::describe_operand(x, "x"), ops::describe_operand(W, "W"),
                                 ops::describe_operand(b, "b")));
  const std::int64_t rows = sx[0], in = sx[1], out = sw[0];
  return dispatch(x.dtype(), [&]<class T>() {
    const T* xv = static_cast<const T*>(x.node().data);
    const T* wv = static_cast<const T*>(W.node().data);
    const T* bv = static_cast<const T*>(b.node().data);
    T* z = tape.allocate_value<T>(Shape{rows, out}, "linear");
    blas::linear_forward<T>(rows, out, in, xv, wv, bv, z);
    // The flags matmul_backward reads: x as stored, W transposed.
    return ops::record_tensor(tape, linear_op, x.dtype(), Shape{rows, out}, z, {x.index(), W.index(), b.index()},
                              Transposes{false, true});
  });
}

}  // namespace ad
