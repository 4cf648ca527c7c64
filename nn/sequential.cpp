#include "nn/sequential.hpp"

namespace nn {

Sequential& Sequential::add(Linear layer) {
  layer.set_layer(++layers_);
  auto m = std::make_unique<Linear>(std::move(layer));
  linears_.push_back(m.get());
  modules_.push_back(std::move(m));
  return *this;
}

Sequential& Sequential::add(Activation f) {
  modules_.push_back(std::make_unique<ActivationLayer>(f, layers_));
  return *this;
}

Sequential& Sequential::add(std::unique_ptr<Module> m) {
  if (!m) throw ad::InvalidArgument("Sequential::add: null module");
  modules_.push_back(std::move(m));
  return *this;
}

ad::Tensor Sequential::forward(const ad::Tensor& x) {
  ad::Tensor h = x;
  for (auto& m : modules_) h = m->forward(h);
  return h;
}

ParameterList Sequential::parameters() const {
  ParameterList all;
  for (const auto& m : modules_)
    for (auto& p : m->parameters()) all.push_back(std::move(p));
  return all;
}

std::string Sequential::describe() const {
  std::string s;
  for (const auto& m : modules_) s += m->describe() + "\n";
  return s;
}

Linear& Sequential::linear(int l) {
  if (l < 1 || l > layers_)
    throw ad::IndexError(fmt::format("Sequential::linear: no layer {} (the network has layers 1..{})", l, layers_));
  return *linears_[static_cast<std::size_t>(l - 1)];
}

namespace {

Init default_init(Activation f) {
  return f.kind == ActivationKind::relu || f.kind == ActivationKind::leaky_relu ? Init::he_uniform : Init::xavier_uniform;
}

}  // namespace

MLP::MLP(const std::vector<std::int64_t>& sizes, Activation hidden, Activation output, Rng& rng, MLPOptions opt)
    : sizes_(sizes) {
  build(hidden, output, rng, opt);
}

MLP::MLP(const std::vector<std::int64_t>& sizes, Activation hidden, Activation output, MLPOptions opt)
    : sizes_(sizes) {
  Rng rng;  // the generator's default seed
  build(hidden, output, rng, opt);
}

void MLP::build(Activation hidden, Activation output, Rng& rng, const MLPOptions& opt) {
  const std::vector<std::int64_t>& sizes = sizes_;
  if (sizes.size() < 2)
    throw ad::InvalidArgument(fmt::format("MLP: {} sizes given; need the input size and at least one layer", sizes.size()));
  for (auto s : sizes)
    if (s <= 0) throw ad::InvalidArgument(fmt::format("MLP: layer size {} (sizes must be positive)", s));
  const std::size_t L = sizes.size() - 1;
  for (std::size_t l = 1; l <= L; ++l) {
    const Activation f = l == L ? output : hidden;
    add(Linear(sizes[l - 1], sizes[l], rng, {.init = opt.init.value_or(default_init(f)), .dtype = opt.dtype}));
    add(f);
  }
}

}  // namespace nn
