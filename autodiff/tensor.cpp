#include "autodiff/tensor.hpp"

#include "autodiff/forward.hpp"
#include "autodiff/tape.hpp"

namespace ad {

const Node& Tensor::node() const {
  if (empty()) throw InvalidArgument("Tensor: empty handle (default-constructed)");
  tape_->check(tape_, gen_, index_, "Tensor");
  const Node* n = tape_->node(index_);
  if (n == nullptr || n->scalar_out)
    throw InvalidArgument(fmt::format("Tensor: entry #{} is a scalar entry, not a tensor", index_));
  return *n;
}

DType Tensor::dtype() const { return node().dtype; }
const Shape& Tensor::shape() const { return node().shape; }

std::int64_t Tensor::dim(int k) const {
  const Shape& s = shape();
  const int r = static_cast<int>(s.size());
  if (k < -r || k >= r) throw IndexError(fmt::format("Tensor::dim: no dimension {} in shape {}", k, to_string(s)));
  return s[static_cast<std::size_t>(k < 0 ? k + r : k)];
}

View Tensor::value() const {
  const Node& n = node();
  return View(n.dtype, n.shape, n.data);
}

double Tensor::item() const {
  const View v = value();
  if (v.size() != 1)
    throw ShapeError(fmt::format("Tensor::item: the tensor has {} elements ({}), not one", v.size(),
                                 describe(v.dtype(), v.shape())));
  return v.flat(0);
}

namespace {

/// element's saved state: the flat index of the picked element.
struct Picked {
  std::int64_t flat = 0;
};

/// Adds the scalar output's adjoint into the picked element of the tensor argument.
void element_backward(BackwardContext& c) {
  dispatch(c.arg_node(0).dtype, [&]<class T>() {
    if (T* g = c.arg_grad<T>(0)) g[c.saved<Picked>().flat] += static_cast<T>(c.scalar_grad());
  });
}

/// "[1,2]": the picked element's multi-index in its argument.
ParamText element_params(const Tape& t, const Node& n) {
  return {index_text(t.shape_of_entry(n.args[0]), static_cast<const Picked*>(n.saved)->flat)};
}

/// Step-through: d t[i] / d t is one-hot at i, so only the picked element receives the Var's adjoint.
void element_explain(const ExplainQuery& q, Explanation& ex) {
  if (q.node.args.size() != 1 || q.node.args[0] != q.to) return;
  const std::uint32_t e = q.node.entry;
  const auto name = q.tape.name_of(e);
  ex.note = q.element == static_cast<const Picked*>(q.node.saved)->flat
                ? fmt::format("the picked element: receives adj #{}{}{} = {:.6g}", e, name.empty() ? "" : " ", name,
                              q.adjoint.flat(0))
                : std::string("not the picked element: nothing added");
}

/// The picked element's tangent, as the Var's.
void element_tangent(TangentContext& c) {
  dispatch(c.arg_node(0).dtype, [&]<class T>() {
    c.set_scalar_tangent(static_cast<double>(c.arg_tangent<T>(0)[c.saved<Picked>().flat]));
  });
}

}  // namespace

const OpDescriptor element_op{.name = "element", .backward = element_backward, .tangent = element_tangent,
                              .curvature = no_curvature, .explain = element_explain, .params = element_params,
                              .element_of_argument = true};
const OpDescriptor to_var_op{.name = "to_var", .backward = element_backward, .tangent = element_tangent,
                             .curvature = no_curvature, .explain = element_explain};

namespace {

Var record_element(const Tensor& t, std::int64_t flat, const OpDescriptor& op) {
  const Node& src = t.node();
  Tape& tape = *t.tape();
  Node n;
  n.dtype = DType::f64;
  n.scalar_out = true;
  n.requires_grad = src.requires_grad;
  n.args.push_back(t.index());
  n.op = &op;
  n.saved = tape.save(Picked{flat});
  const double v = View(src.dtype, src.shape, src.data).flat(flat);
  return Var(&tape, tape.push_node(std::move(n), v), tape.generation());
}

}  // namespace

/// t[index] as a Var.  d t[index] / d t = one-hot at index: the Var's adjoint is added there.
Var element(const Tensor& t, std::initializer_list<std::int64_t> index) {
  const Node& src = t.node();
  const std::int64_t flat = flat_index(src.shape, index, "element");
  return record_element(t, flat, element_op);
}

/// A one-element tensor as a Var.  The derivative is 1.
Var to_var(const Tensor& t) {
  const Node& src = t.node();
  if (numel(src.shape) != 1)
    throw ShapeError(fmt::format("to_var: expected a one-element tensor, {} is {}", t.tape()->label(t.index(), "t"),
                                 describe(src.dtype, src.shape)));
  return record_element(t, 0, to_var_op);
}

// ---- handle checks for ops ----------------------------------------------------------------------------

Tape& tape_of(const Tensor& t, const char* op) {
  if (t.empty()) throw InvalidArgument(fmt::format("{}: empty Tensor (default-constructed handle)", op));
  t.tape()->check(t.tape(), t.generation(), t.index(), op);
  return *t.tape();
}

Tape& tape_of(const Tensor& a, const Tensor& b, const char* op) {
  Tape& t = tape_of(a, op);
  if (b.empty()) throw InvalidArgument(fmt::format("{}: empty Tensor (default-constructed handle)", op));
  t.check(b.tape(), b.generation(), b.index(), op);
  return t;
}

Tape& tape_of(const Tensor& a, const Var& b, const char* op) {
  Tape& t = tape_of(a, op);
  if (b.empty()) throw InvalidArgument(fmt::format("{}: empty Var (default-constructed handle)", op));
  t.check(b.tape(), b.generation(), b.index(), op);
  return t;
}

std::string operand(const Tensor& t, const char* fallback) { return t.tape()->label(t.index(), fallback); }

std::string describe_operand(const Tensor& t, const char* fallback) {
  return fmt::format("{} is {}", operand(t, fallback), describe(t.dtype(), t.shape()));
}


}  // namespace ad
