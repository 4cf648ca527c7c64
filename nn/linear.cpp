#include "nn/linear.hpp"

#include "autodiff/ops/record.hpp"

namespace nn {

Linear::Linear(std::int64_t in, std::int64_t out, Rng& rng, LinearOptions opt) : in_(in), out_(out) {
  if (in <= 0 || out <= 0)
    throw ad::InvalidArgument(fmt::format("Linear({} -> {}): sizes must be positive", in, out));
  ad::dispatch(opt.dtype, [&]<class T>() {
    W_ = std::make_shared<Parameter>("", ad::Array<T>(ad::Shape{out, in}), true);
    b_ = std::make_shared<Parameter>("", ad::Array<T>(ad::Shape{out}), false);
  });
  initialise(*W_, opt.init, in, out, rng);
  set_layer(opt.layer);
}

Linear::Linear(std::shared_ptr<Parameter> W, std::shared_ptr<Parameter> b, int layer)
    : layer_(layer), W_(std::move(W)), b_(std::move(b)), z_name_(fmt::format("layer{}.z", layer)) {
  if (!W_ || !b_) throw ad::InvalidArgument(fmt::format("layer{} (Linear): null parameter", layer));
  if (W_->shape().size() != 2 || b_->shape().size() != 1 || b_->shape()[0] != W_->shape()[0])
    throw ad::ShapeError(fmt::format("layer{} (Linear): expected W [out, in] and b [out]; {} is {}, {} is {}", layer,
                                     W_->name(), ad::describe(W_->dtype(), W_->shape()), b_->name(),
                                     ad::describe(b_->dtype(), b_->shape())));
  if (W_->dtype() != b_->dtype())
    throw ad::DTypeError(fmt::format("layer{} (Linear): {} is {} but {} is {}", layer, W_->name(),
                                     ad::to_string(W_->dtype()), b_->name(), ad::to_string(b_->dtype())));
  out_ = W_->shape()[0];
  in_ = W_->shape()[1];
}

void Linear::set_layer(int layer) {
  layer_ = layer;
  W_->rename(fmt::format("layer{}.W", layer));
  b_->rename(fmt::format("layer{}.b", layer));
  z_name_ = fmt::format("layer{}.z", layer);
}

std::string Linear::describe() const {
  return fmt::format("layer{}: Linear({} -> {}), W {}, b {}", layer_, in_, out_, ad::describe(W_->dtype(), W_->shape()),
                     ad::describe(b_->dtype(), b_->shape()));
}

ad::Tensor Linear::forward(const ad::Tensor& x) {
  const ad::Shape& s = x.shape();  // also checks that the handle is usable
  if (s.size() != 2 || s[1] != in_)
    throw ad::ShapeError(fmt::format("layer{} (Linear({} -> {})): {}; expected [B,{}]", layer_, in_, out_,
                                     ad::ops::describe_operand(x, "x"), in_));
  if (x.dtype() != W_->dtype())
    throw ad::DTypeError(fmt::format("layer{} (Linear({} -> {})): {} but the layer holds {}", layer_, in_, out_,
                                     ad::ops::describe_operand(x, "x"), ad::to_string(W_->dtype())));
  ad::Tape& tape = *x.tape();
  const ad::Tensor W = W_->record(tape);
  const ad::Tensor b = b_->record(tape);
  return tape.name(ad::linear(x, W, b), z_name_);
}

}  // namespace nn
