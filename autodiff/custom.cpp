// User-defined ops (see custom.hpp): each recorded one carries its own descriptor, named by the user,
// whose backward rule calls the user's function.
#include "autodiff/custom.hpp"

#include "autodiff/ops/record.hpp"

namespace ad {

namespace {

/// Everything a user-defined op keeps until tape.clear(): its descriptor, its name, its rule and
/// its value.  The node's `saved` points here and its `owner` keeps it alive.
struct CustomOp {
  std::string name;
  OpDescriptor descriptor;
  CustomBackwardFn backward;
  CustomTangentFn tangent;
  std::shared_ptr<const void> value;
};

void custom_backward(BackwardContext& c) {
  const auto& op = c.saved<CustomOp>();
  CustomBackward b(c);
  op.backward(b);
}

void custom_tangent(TangentContext& c) {
  const auto& op = c.saved<CustomOp>();
  CustomTangent t(c);
  op.tangent(t);
}

}  // namespace

namespace detail {

Tensor record_custom(std::string name, std::initializer_list<Tensor> inputs, DType dtype, const Shape& shape,
                     void* data, std::shared_ptr<const void> value, CustomBackwardFn backward,
                     CustomTangentFn tangent) {
  const std::string what = "custom_op " + name;
  if (inputs.size() == 0 || inputs.size() > 3)
    throw InvalidArgument(fmt::format("{}: takes 1 to 3 input tensors, {} given", what, inputs.size()));
  if (!backward) throw InvalidArgument(fmt::format("{}: no backward rule given", what));
  if (name.empty()) throw InvalidArgument("custom_op: the op needs a name");
  Tape& tape = ops::tape_of(*inputs.begin(), what.c_str());
  for (const Tensor& x : inputs) {
    ops::tape_of(*inputs.begin(), x, what.c_str());
    if (x.dtype() != dtype)
      throw DTypeError(fmt::format("{}: the output is {} but input {}", what, describe(dtype, shape),
                                   ops::describe_operand(x, "x")));
  }
  auto op = std::make_shared<CustomOp>();
  op->name = std::move(name);
  op->descriptor = OpDescriptor{.name = op->name.c_str(), .backward = custom_backward};
  if (tangent) op->descriptor.tangent = custom_tangent;
  op->backward = std::move(backward);
  op->tangent = std::move(tangent);
  op->value = std::move(value);
  Node n;
  n.dtype = dtype;
  n.shape = shape;
  n.data = data;
  n.op = &op->descriptor;
  n.saved = op.get();
  for (const Tensor& x : inputs) {
    n.args.push_back(x.index());
    n.requires_grad = n.requires_grad || tape.requires_grad(x.index());
  }
  n.owner = std::move(op);
  const std::uint32_t e = tape.push_node(std::move(n));
  return Tensor(&tape, e, tape.generation());
}

}  // namespace detail

}  // namespace ad
