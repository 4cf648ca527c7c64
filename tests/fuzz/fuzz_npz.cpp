// libFuzzer target: .npz archives, read alone and loaded into a model.  A failed load must leave
// the model exactly as it was; a successful one must leave it holding the file's values.
#include <cstdlib>
#include <cstring>

#include "fuzz_util.hpp"
#include "nn/io.hpp"

namespace {

/// The model the seed archives were saved from: "layer1.W" f64[3,2] and "layer1.b" f32[3].
class Model : public nn::Module {
 public:
  Model()
      : w_(std::make_shared<nn::Parameter>("layer1.W", ad::Array<double>(ad::Shape{3, 2}), true)),
        b_(std::make_shared<nn::Parameter>("layer1.b", ad::Array<float>(ad::Shape{3}), false)) {
    reset();
  }
  void reset() {
    for (std::int64_t i = 0; i < 6; ++i) w_->array<double>()[i] = 0.5 * static_cast<double>(i);
    for (std::int64_t i = 0; i < 3; ++i) b_->array<float>()[i] = -1.0f * static_cast<float>(i);
  }
  bool pristine() const {
    for (std::int64_t i = 0; i < 6; ++i)
      if (w_->array<double>()[i] != 0.5 * static_cast<double>(i)) return false;
    for (std::int64_t i = 0; i < 3; ++i)
      if (b_->array<float>()[i] != -1.0f * static_cast<float>(i)) return false;
    return true;
  }
  ad::Tensor forward(const ad::Tensor& x) override { return x; }
  nn::ParameterList parameters() const override { return {w_, b_}; }
  std::string describe() const override { return "fuzz model"; }

 private:
  std::shared_ptr<nn::Parameter> w_, b_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::as_file(data, size);
  try {
    for (const auto& [name, a] : nn::load_npz(path))
      if (a.bytes.size() != static_cast<std::size_t>(ad::numel(a.shape)) * ad::size_of(a.dtype)) std::abort();
  } catch (const nn::WeightsError&) {
  }
  static Model model;
  model.reset();
  try {
    nn::load(model, path);
  } catch (const nn::WeightsError&) {
    if (!model.pristine()) std::abort();  // a failed load changed the model
  }
  return 0;
}
