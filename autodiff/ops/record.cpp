#include "autodiff/ops/record.hpp"

namespace ad::ops {

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  if (a.dtype() != b.dtype())
    throw DTypeError(fmt::format("{}: element types differ: {}, {}", op, describe_operand(a, "lhs"),
                                 describe_operand(b, "rhs")));
}

Tensor record_tensor(Tape& tape, const OpDescriptor& op, DType dtype, const Shape& shape, void* data,
                     std::initializer_list<std::uint32_t> args, const void* saved) {
  Node n;
  n.dtype = dtype;
  n.shape = shape;
  n.data = data;
  n.op = &op;
  n.saved = saved;
  for (auto a : args) {
    n.args.push_back(a);
    n.requires_grad = n.requires_grad || tape.requires_grad(a);
  }
  const std::uint32_t e = tape.push_node(std::move(n));
  return Tensor(&tape, e, tape.generation());
}

}  // namespace ad::ops
