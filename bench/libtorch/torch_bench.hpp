// libtorch as a contestant in the benchmarks: the MLP step of bench/mlp_step and the op chain of
// bench/tensor, written with libtorch's autograd.  Built only when CMake finds libtorch (Debian:
// libtorch-dev); bench/mlp_step.cpp calls it under DELTAGRAD_HAVE_TORCH, and bench/libtorch/
// op_chain.cpp is a program of its own.  The interface keeps torch headers out of the callers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bench {

/// Puts libtorch in its fastest configuration on this kind of machine, before anything else runs.
/// libtorch links OpenBLAS, which reads its environment only when the process starts; so when
/// ad::blas::default_settings() is not empty, this re-executes the program once with those
/// settings (a user's own settings are kept), and deltagrad's tape, which then finds OpenBLAS
/// already loaded, uses the same configuration.  It also sets torch's intra-op threads to deltagrad's
/// (ad::backend::threads()).
/// Returns a one-line description.
std::string torch_prepare(char** argv);

/// One step of an MLP with ReLU hidden layers and softmax-cross-entropy: forward, loss.backward(),
/// then p -= lr * p.grad() under NoGradGuard.  Gradients are reset to none after each update
/// (libtorch's faster mode), so backward writes them instead of accumulating.
class TorchStep {
 public:
  /// W[l] is [sizes[l], sizes[l-1]] row-major and b[l] has sizes[l] entries, for l = 1..L (index 0
  /// unused); x is [B, sizes[0]], y holds B class indices.  Everything is copied.
  TorchStep(const std::vector<std::int64_t>& sizes, const std::vector<std::vector<float>>& W,
            const std::vector<std::vector<float>>& b, const float* x, const std::int32_t* y, std::int64_t B,
            float lr);
  ~TorchStep();
  TorchStep(const TorchStep&) = delete;
  TorchStep& operator=(const TorchStep&) = delete;

  /// Runs the step; returns the mean loss before the update.
  float step();
  /// The current W^(l), row-major.
  std::vector<float> weight(int l) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// One op chain in libtorch: a one-element float tensor x = 0.3 with requires_grad, `ops` ops
/// cycling y*1.0001, y+0.5, tanh(y), then y.backward().  Returns the seconds it took and sets
/// `dydx` to x.grad().
double torch_op_chain(int ops, double& dydx);

}  // namespace bench
