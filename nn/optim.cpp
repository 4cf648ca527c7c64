#include "nn/optim.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

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

std::optional<Optimizer::NonFinite> Optimizer::apply_checked() {
  if (!g_) throw ad::InvalidArgument("Optimizer::apply_checked: nothing collected (call collect(g) first)");
  std::optional<NonFinite> bad;
  if (const std::optional<bool> finite = update_keeping_old_values()) {
    if (!*finite) {
      bad = first_non_finite(params_);
      for (std::size_t k = 0; k < params_.size(); ++k) {  // the gradients now hold the old values
        Parameter& p = *params_[k];
        ad::dispatch(p.dtype(), [&]<class T>() {
          std::memcpy(p.array<T>().data(), grads_[k], sizeof(T) * static_cast<std::size_t>(p.size()));
        });
      }
    }
  } else {
    if (!copy_) copy_.emplace(params_);
    copy_->take();
    update();
    bad = first_non_finite(params_);
    if (bad) copy_->restore();
  }
  for (const auto& p : params_)
    ad::dispatch(p->dtype(), [&]<class T>() { p->array<T>().touch(); });
  g_.reset();
  return bad;
}

std::optional<Optimizer::NonFinite> first_non_finite(const ParameterList& params) {
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Parameter& p = *params[k];
    const auto found = ad::dispatch(p.dtype(), [&]<class T>() -> std::optional<Optimizer::NonFinite> {
      const T* x = p.array<T>().data();
      const std::int64_t n = p.size();
      // x * 0 is 0 for finite x and NaN otherwise; eight independent sums keep the scan fast.
      T acc[8] = {};
      std::int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; ++j) acc[j] += x[i + j] * T(0);
      for (; i < n; ++i) acc[0] += x[i] * T(0);
      T all = 0;
      for (T a : acc) all += a;
      if (all == T(0)) return std::nullopt;
      for (std::int64_t j = 0; j < n; ++j)
        if (!std::isfinite(x[j])) return Optimizer::NonFinite{k, j, static_cast<double>(x[j])};
      return std::nullopt;
    });
    if (found) return found;
  }
  return std::nullopt;
}

void ParameterCopy::take() {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const ad::View v = params_[i]->view();
    const auto bytes = static_cast<std::size_t>(v.size()) * ad::size_of(v.dtype());
    if (saved_[i].size() != bytes) saved_[i].resize(bytes);
    if (bytes) std::memcpy(saved_[i].data(), v.data(), bytes);
  }
}

void ParameterCopy::restore() const {
  for (std::size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = *params_[i];
    void* dst = p.dtype() == ad::DType::f32 ? static_cast<void*>(p.array<float>().data())
                                            : static_cast<void*>(p.array<double>().data());
    if (!saved_[i].empty()) std::memcpy(dst, saved_[i].data(), saved_[i].size());
  }
}

// ---- SGD ---------------------------------------------------------------------------------------------

namespace {

// The updates are element by element, so they are spread over the backend's threads in ranges
// (every element gets the same arithmetic whatever the thread count).  Below the grain a second
// thread costs more than it saves: about 20 µs of work on one core.
constexpr std::int64_t sgd_grain = 32768;
constexpr std::int64_t adam_grain = 8192;

// Each update is one loop over the elements, in two versions from one template: `keep` = false is
// the plain update; `keep` = true also stores each old parameter value over the gradient element
// (read just before, so the cache line is at hand: no extra pass over memory) and ORs together a
// bit that is set for a non-finite new value.  Both compute the same values.

/// The bits of x with the sign bit set when x is NaN or infinite (its exponent all ones) and clear
/// otherwise: integer arithmetic only, so a loop can OR these together in vector registers.
template <class T>
inline auto non_finite_bit(T x) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr int mantissa = std::numeric_limits<T>::digits - 1;  // 23 or 52 bits below the exponent
  constexpr U exponent = (~U{0} >> 1) & ~((U{1} << mantissa) - 1);
  // Adding the exponent's lowest bit carries into the sign bit only when the exponent is all ones.
  return (std::bit_cast<U>(x) & exponent) + (U{1} << mantissa);
}

/// Runs body(begin, end, bits) over [0, n) in ranges on the backend's threads; `bits` collects
/// non_finite_bit of the new values.  Returns whether no range saw a non-finite one.  One fixed
/// range per thread: the weight gradient's product is cut by rows of the weight matrix in the
/// same proportions, so each thread updates the rows whose gradient it has just written, and its
/// momentum rows stay in its own cache from step to step (6% faster than ranges claimed in turn).
template <class T, class Body>
bool for_ranges(std::int64_t n, std::int64_t grain, const Body& body) {
  std::atomic<bool> finite{true};
  ad::backend::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
    decltype(non_finite_bit(T(0))) bits = 0;
    body(b, e, bits);
    if (bits >> (8 * sizeof(T) - 1)) finite.store(false, std::memory_order_relaxed);
  });
  return finite.load();
}

/// w ← w − α (g + λ w): the plain step (9.14/9.15 with the regulariser's gradient λw); w − α g for
/// a parameter without decay (a separate loop, so that neither branches).
template <bool keep, bool decay, class T>
bool sgd_plain(T* __restrict w, T* __restrict g, std::int64_t n, T lr, T wd) {
  return for_ranges<T>(n, sgd_grain, [=](std::int64_t b, std::int64_t e, auto& bits) {
    for (std::int64_t i = b; i < e; ++i) {
      const T w0 = w[i];
      const T w1 = decay ? w0 - lr * (g[i] + wd * w0) : w0 - lr * g[i];
      w[i] = w1;
      if constexpr (keep) {
        g[i] = w0;
        bits |= non_finite_bit(w1);
      }
    }
  });
}

/// v ← μ v + (g + λ w);  w ← w − α v, or w − α (g + λ w + μ v) with Nesterov.
template <bool keep, class T>
bool sgd_momentum(T* __restrict w, T* __restrict g, T* __restrict v, std::int64_t n, T lr, T mu, T wd,
                  bool nesterov) {
  return for_ranges<T>(n, sgd_grain, [=](std::int64_t b, std::int64_t e, auto& bits) {
    for (std::int64_t i = b; i < e; ++i) {
      const T w0 = w[i];
      const T d = g[i] + wd * w0;
      v[i] = mu * v[i] + d;
      const T w1 = w0 - lr * (nesterov ? d + mu * v[i] : v[i]);
      w[i] = w1;
      if constexpr (keep) {
        g[i] = w0;
        bits |= non_finite_bit(w1);
      }
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

template <bool keep>
bool SGD::update_all() {
  bool finite = true;
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    finite &= ad::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.array<T>().data();
      T* g = static_cast<T*>(gradient_data(k));
      const std::int64_t n = p.size();
      if (options.momentum == 0.0)
        return T(wd) == T(0) ? sgd_plain<keep, false, T>(w, g, n, T(options.lr), T(0))
                             : sgd_plain<keep, true, T>(w, g, n, T(options.lr), T(wd));
      auto& v = [&]() -> std::vector<T>& {
        if constexpr (std::is_same_v<T, float>) return v32_[k];
        else return v64_[k];
      }();
      v.resize(static_cast<std::size_t>(n), T(0));
      return sgd_momentum<keep, T>(w, g, v.data(), n, T(options.lr), T(options.momentum), T(wd), options.nesterov);
    });
  }
  return finite;
}

void SGD::update() { update_all<false>(); }
std::optional<bool> SGD::update_keeping_old_values() { return update_all<true>(); }

// ---- Adam --------------------------------------------------------------------------------------------

namespace {

template <bool keep, class T>
bool adam_update(T* __restrict w, T* __restrict g, T* __restrict m, T* __restrict v, std::int64_t n, T lr_t, T b1,
                 T b2, T eps_t, T wd) {
  // lr_t = α √(1 − β2^t) / (1 − β1^t) and eps_t = ε √(1 − β2^t) fold the bias corrections in:
  // α m̂ / (√v̂ + ε) = lr_t m / (√v + eps_t).
  return for_ranges<T>(n, adam_grain, [=](std::int64_t b, std::int64_t e, auto& bits) {
    for (std::int64_t i = b; i < e; ++i) {
      const T w0 = w[i];
      const T d = g[i] + wd * w0;
      m[i] = b1 * m[i] + (T(1) - b1) * d;
      v[i] = b2 * v[i] + (T(1) - b2) * d * d;
      const T w1 = w0 - lr_t * m[i] / (std::sqrt(v[i]) + eps_t);
      w[i] = w1;
      if constexpr (keep) {
        g[i] = w0;
        bits |= non_finite_bit(w1);
      }
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

template <bool keep>
bool Adam::update_all() {
  ++t_;
  const double c1 = 1.0 - std::pow(options.beta1, static_cast<double>(t_));
  const double c2 = 1.0 - std::pow(options.beta2, static_cast<double>(t_));
  const double lr_t = options.lr * std::sqrt(c2) / c1, eps_t = options.eps * std::sqrt(c2);
  bool finite = true;
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    finite &= ad::dispatch(p.dtype(), [&]<class T>() {
      const std::int64_t n = p.size();
      auto [m, v] = [&]() -> std::pair<std::vector<T>&, std::vector<T>&> {
        if constexpr (std::is_same_v<T, float>) return {m32_[k], v32_[k]};
        else return {m64_[k], v64_[k]};
      }();
      m.resize(static_cast<std::size_t>(n), T(0));
      v.resize(static_cast<std::size_t>(n), T(0));
      return adam_update<keep, T>(p.array<T>().data(), static_cast<T*>(gradient_data(k)), m.data(), v.data(), n,
                                  T(lr_t), T(options.beta1), T(options.beta2), T(eps_t), T(wd));
    });
  }
  return finite;
}

void Adam::update() { update_all<false>(); }
std::optional<bool> Adam::update_keeping_old_values() { return update_all<true>(); }

}  // namespace nn
