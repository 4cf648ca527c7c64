#include "autodiff/tensor.hpp"

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

/// Adds the scalar output's adjoint into element params.i0 of the tensor argument.
void element_backward(BackwardContext& c) {
  dispatch(c.arg_node(0).dtype, [&]<class T>() {
    if (T* g = c.arg_grad<T>(0)) g[c.params().i0] += static_cast<T>(c.scalar_grad());
  });
}

Var record_element(const Tensor& t, std::int64_t flat, const char* op) {
  const Node& src = t.node();
  Tape& tape = *t.tape();
  Node n;
  n.dtype = DType::f64;
  n.scalar_out = true;
  n.requires_grad = src.requires_grad;
  n.args.push_back(t.index());
  n.backward = element_backward;
  n.op = op;
  n.params.i0 = flat;
  const double v = View(src.dtype, src.shape, src.data).flat(flat);
  return Var(&tape, tape.push_node(std::move(n), v), tape.generation());
}

}  // namespace

/// t[index] as a Var.  d t[index] / d t = one-hot at index: the Var's adjoint is added there.
Var element(const Tensor& t, std::initializer_list<std::int64_t> index) {
  const Node& src = t.node();
  const std::int64_t flat = flat_index(src.shape, index, "element");
  return record_element(t, flat, "element");
}

/// A one-element tensor as a Var.  The derivative is 1.
Var to_var(const Tensor& t) {
  const Node& src = t.node();
  if (numel(src.shape) != 1)
    throw ShapeError(fmt::format("to_var: expected a one-element tensor, {} is {}", t.tape()->label(t.index(), "t"),
                                 describe(src.dtype, src.shape)));
  return record_element(t, 0, "to_var");
}

}  // namespace ad
