#include "nn/optim.hpp"

#include <algorithm>
#include <cmath>

#include "autodiff/backend/pool.hpp"

namespace nn {

Optimizer::Optimizer(ParameterList params) {
  // A parameter shared by two modules appears in the list once per module; it is updated once.
  for (auto& p : params) {
    if (!p) throw ad::InvalidArgument("Optimizer: null parameter in the list");
    if (std::find(params_.begin(), params_.end(), p) == params_.end()) params_.push_back(std::move(p));
  }
}

void Optimizer::step(const ad::Gradients& g) {
  collect(g);
  apply();
}

void Optimizer::collect(const ad::Gradients& g) {
  g_.reset();
  const ad::Tape& tape = g.tape();
  std::vector<void*> grads(params_.size());
  sums32_.resize(params_.size());
  sums64_.resize(params_.size());
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const Parameter& p = *params_[k];
    ad::dispatch(p.dtype(), [&]<class T>() {
      std::vector<std::uint32_t> readers = tape.readers(p.array<T>());
      std::erase_if(readers, [&](std::uint32_t e) { return !g.covers(e) || !tape.requires_grad(e); });
      if (readers.empty())
        throw ad::InvalidArgument(fmt::format(
            "Optimizer::collect: parameter {} ({}) was not recorded in the computation these gradients come from; run "
            "the forward pass after tape.clear() and before tape.gradient()",
            p.name(), ad::describe(p.dtype(), p.shape())));
      const auto adjoint = [&](std::uint32_t e) {
        const ad::View v = g.adjoint(e);
        if (v.dtype() != p.dtype() || v.shape() != p.shape())
          throw ad::ShapeError(fmt::format("Optimizer::collect: the adjoint of {} is {} but the parameter is {}",
                                           p.name(), ad::describe(v.dtype(), v.shape()),
                                           ad::describe(p.dtype(), p.shape())));
        return static_cast<const T*>(v.data());
      };
      if (readers.size() == 1) {  // one use: its adjoint is the gradient (the sweep's own storage)
        grads[k] = const_cast<T*>(adjoint(readers[0]));
        return;
      }
      auto& sum = [&]() -> std::vector<T>& {
        if constexpr (std::is_same_v<T, float>) return sums32_[k];
        else return sums64_[k];
      }();
      const auto n = static_cast<std::size_t>(p.size());
      const T* first = adjoint(readers[0]);
      sum.assign(first, first + n);
      for (std::size_t r = 1; r < readers.size(); ++r) {
        const T* a = adjoint(readers[r]);
        for (std::size_t i = 0; i < n; ++i) sum[i] += a[i];
      }
      grads[k] = sum.data();
    });
  }
  grads_ = std::move(grads);
  g_.emplace(g);
}

void Optimizer::apply() {
  if (!g_) throw ad::InvalidArgument("Optimizer::apply: nothing collected (call collect(g) first, or step(g))");
  update();
  for (const auto& p : params_)
    ad::dispatch(p->dtype(), [&]<class T>() { p->array<T>().touch(); });
  g_.reset();  // the sweep's storage can be reused by the next one
}

// ---- SGD ---------------------------------------------------------------------------------------------

namespace {

// The updates are element by element, so they are spread over the backend's threads in ranges
// (every element gets the same arithmetic whatever the thread count).  Below the grain a second
// thread costs more than it saves: about 20 µs of work on one core.
constexpr std::int64_t sgd_grain = 32768;
constexpr std::int64_t adam_grain = 8192;

/// w ← w − α (g + λ w): the plain step (9.14/9.15 with the regulariser's gradient λw).
template <class T>
void sgd_plain(T* __restrict w, const T* __restrict g, std::int64_t n, T lr, T wd) {
  ad::backend::parallel_for(n, sgd_grain, [=](std::int64_t b, std::int64_t e) {
    if (wd == T(0)) {
      for (std::int64_t i = b; i < e; ++i) w[i] -= lr * g[i];
    } else {
      for (std::int64_t i = b; i < e; ++i) w[i] -= lr * (g[i] + wd * w[i]);
    }
  });
}

/// v ← μ v + (g + λ w);  w ← w − α v, or w − α (g + λ w + μ v) with Nesterov.
template <class T>
void sgd_momentum(T* __restrict w, const T* __restrict g, T* __restrict v, std::int64_t n, T lr, T mu, T wd,
                  bool nesterov) {
  ad::backend::parallel_for(n, sgd_grain, [=](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const T d = g[i] + wd * w[i];
      v[i] = mu * v[i] + d;
      w[i] -= lr * (nesterov ? d + mu * v[i] : v[i]);
    }
  });
}

}  // namespace

SGD::SGD(ParameterList params, SGDOptions opt) : Optimizer(std::move(params)), options(opt) {
  if (!(opt.lr > 0) || opt.momentum < 0 || opt.momentum >= 1 || opt.weight_decay < 0)
    throw ad::InvalidArgument(fmt::format("SGD: lr {} must be > 0, momentum {} in [0, 1), weight_decay {} >= 0", opt.lr,
                                          opt.momentum, opt.weight_decay));
  v32_.resize(params_.size());
  v64_.resize(params_.size());
}

void SGD::set_learning_rate(double lr) {
  if (!(lr > 0)) throw ad::InvalidArgument(fmt::format("SGD::set_learning_rate: {} (must be > 0)", lr));
  options.lr = lr;
}

void SGD::update() {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    ad::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.array<T>().data();
      const T* d = static_cast<const T*>(gradient_data(k));
      const std::int64_t n = p.size();
      if (options.momentum == 0.0) return sgd_plain<T>(w, d, n, T(options.lr), T(wd));
      auto& v = [&]() -> std::vector<T>& {
        if constexpr (std::is_same_v<T, float>) return v32_[k];
        else return v64_[k];
      }();
      v.resize(static_cast<std::size_t>(n), T(0));
      sgd_momentum<T>(w, d, v.data(), n, T(options.lr), T(options.momentum), T(wd), options.nesterov);
    });
  }
}

// ---- Adam --------------------------------------------------------------------------------------------

namespace {

template <class T>
void adam_update(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::int64_t n, T lr_t,
                 T b1, T b2, T eps_t, T wd) {
  // lr_t = α √(1 − β2^t) / (1 − β1^t) and eps_t = ε √(1 − β2^t) fold the bias corrections in:
  // α m̂ / (√v̂ + ε) = lr_t m / (√v + eps_t).
  ad::backend::parallel_for(n, adam_grain, [=](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const T d = g[i] + wd * w[i];
      m[i] = b1 * m[i] + (T(1) - b1) * d;
      v[i] = b2 * v[i] + (T(1) - b2) * d * d;
      w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps_t);
    }
  });
}

}  // namespace

Adam::Adam(ParameterList params, AdamOptions opt) : Optimizer(std::move(params)), options(opt) {
  if (!(opt.lr > 0) || opt.beta1 < 0 || opt.beta1 >= 1 || opt.beta2 < 0 || opt.beta2 >= 1 || !(opt.eps > 0) ||
      opt.weight_decay < 0)
    throw ad::InvalidArgument(fmt::format("Adam: lr {} > 0, beta1 {} and beta2 {} in [0, 1), eps {} > 0, "
                                          "weight_decay {} >= 0 required",
                                          opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay));
  m32_.resize(params_.size());
  v32_.resize(params_.size());
  m64_.resize(params_.size());
  v64_.resize(params_.size());
}

void Adam::set_learning_rate(double lr) {
  if (!(lr > 0)) throw ad::InvalidArgument(fmt::format("Adam::set_learning_rate: {} (must be > 0)", lr));
  options.lr = lr;
}

void Adam::update() {
  ++t_;
  const double c1 = 1.0 - std::pow(options.beta1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(options.beta2, static_cast<double>(t_));
  const double lr_t = options.lr * std::sqrt(c2) / c1, eps_t = options.eps * std::sqrt(c2);
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    ad::dispatch(p.dtype(), [&]<class T>() {
      const std::int64_t n = p.size();
      auto [m, v] = [&]() -> std::pair<std::vector<T>&, std::vector<T>&> {
        if constexpr (std::is_same_v<T, float>) return {m32_[k], v32_[k]};
        else return {m64_[k], v64_[k]};
      }();
      m.resize(static_cast<std::size_t>(n), T(0));
      v.resize(static_cast<std::size_t>(n), T(0));
      adam_update<T>(p.array<T>().data(), static_cast<const T*>(gradient_data(k)), m.data(), v.data(), n, T(lr_t),
                     T(options.beta1), T(options.beta2), T(eps_t), T(wd));
    });
  }
}

}  // namespace nn
