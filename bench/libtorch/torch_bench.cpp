#include "torch_bench.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <fmt/core.h>
#include <torch/torch.h>

#include "autodiff/backend/pool.hpp"
#include "autodiff/blas.hpp"

namespace bench {

std::string torch_prepare(char** argv) {
  // The marker stops a second re-execution if exec'ing ourselves did not keep the variables.
  constexpr const char* marker = "DELTAGRAD_BENCH_REEXEC";
  const std::vector<ad::blas::Setting> settings = ad::blas::default_settings();
  if (!settings.empty() && std::getenv(marker) == nullptr) {
    for (const ad::blas::Setting& s : settings) ::setenv(s.name, s.value, 0);
    ::setenv(marker, "1", 1);
    ::execv("/proc/self/exe", argv);
    fmt::print(stderr, "could not re-execute with the OpenBLAS settings ({}); going on\n", std::strerror(errno));
  }
  ::unsetenv(marker);
  // The same intra-op threads as deltagrad's (ad::backend::threads(): DELTAGRAD_NUM_THREADS, else
  // the CPUs this process may use), so that the two are compared at one thread count.
  torch::set_num_threads(ad::backend::threads());
  return fmt::format("libtorch {} threads={} OPENBLAS_CORETYPE={} OPENBLAS_NUM_THREADS={}", TORCH_VERSION,
                     torch::get_num_threads(), std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "-",
                     std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "-");
}

struct TorchStep::Impl {
  std::vector<torch::Tensor> W, b;  // index 0 unused
  torch::Tensor x, y;
  double lr;
};

TorchStep::TorchStep(const std::vector<std::int64_t>& sizes, const std::vector<std::vector<float>>& W,
                     const std::vector<std::vector<float>>& b, const float* x, const std::int32_t* y,
                     std::int64_t B, float lr)
    : impl_(std::make_unique<Impl>()) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  // from_blob does not own the memory; clone() makes each tensor own a copy.
  impl_->x = torch::from_blob(const_cast<float*>(x), {B, sizes[0]}, f32).clone();
  impl_->y = torch::from_blob(const_cast<std::int32_t*>(y), {B}, torch::kInt32).to(torch::kInt64);
  impl_->lr = lr;
  impl_->W.resize(sizes.size());
  impl_->b.resize(sizes.size());
  for (std::size_t l = 1; l < sizes.size(); ++l) {
    auto* w = const_cast<float*>(W[l].data());
    auto* bl = const_cast<float*>(b[l].data());
    impl_->W[l] = torch::from_blob(w, {sizes[l], sizes[l - 1]}, f32).clone().requires_grad_(true);
    impl_->b[l] = torch::from_blob(bl, {sizes[l]}, f32).clone().requires_grad_(true);
  }
}

TorchStep::~TorchStep() = default;

float TorchStep::step() {
  Impl& s = *impl_;
  const std::size_t L = s.W.size() - 1;
  torch::Tensor h = s.x;
  for (std::size_t l = 1; l <= L; ++l) {
    h = torch::addmm(s.b[l], h, s.W[l].t());  // z = b + h·Wᵀ
    if (l < L) h = torch::relu(h);
  }
  torch::Tensor loss = torch::nn::functional::cross_entropy(h, s.y);
  loss.backward();
  {
    torch::NoGradGuard no_grad;
    for (std::size_t l = 1; l <= L; ++l)
      for (torch::Tensor* p : {&s.W[l], &s.b[l]}) {
        p->sub_(p->grad(), s.lr);
        p->mutable_grad() = torch::Tensor();
      }
  }
  return loss.item<float>();
}

std::vector<float> TorchStep::weight(int l) const {
  const torch::Tensor w = impl_->W[static_cast<std::size_t>(l)].detach().contiguous();
  const float* p = w.data_ptr<float>();
  return {p, p + w.numel()};
}

double torch_op_chain(int ops, double& dydx) {
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor x = torch::full({1}, 0.3f, torch::TensorOptions().dtype(torch::kFloat32).requires_grad(true));
  torch::Tensor y = x;
  for (int i = 0; i < ops; ++i) {
    switch (i % 3) {
      case 0: y = y * 1.0001; break;
      case 1: y = y + 0.5; break;
      default: y = torch::tanh(y); break;
    }
  }
  y.backward();
  dydx = x.grad().item<double>();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace bench
