#include "autodiff/ops/record.hpp"

namespace ad::ops {

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
