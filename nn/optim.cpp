#include "nn/optim.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
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

void Optimizer::discard() { g_.reset(); }

std::optional<Optimizer::NonFinite> Optimizer::preview_non_finite() {
  if (!g_) throw ad::InvalidArgument("Optimizer::preview_non_finite: nothing collected (call collect(g) first)");
  if (!previews()) throw ad::InvalidArgument("Optimizer::preview_non_finite: this optimiser cannot preview its update");
  return preview();
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

// Each update is written once, as the new values of one element from the old ones, and used both by
// update() (which stores them) and by preview() (which only looks at them): so the preview sees
// bit for bit the values the update would store.

/// w − α (g + λ w): the plain step (9.14/9.15 with the regulariser's gradient λw); w − α g when the
/// parameter has no decay (a compile-time choice, so that loops over it stay branch-free).
template <class T, bool decay>
struct PlainStep {
  T lr, wd;
  T operator()(T w, T g) const {
    if constexpr (decay) return w - lr * (g + wd * w);
    else return w - lr * g;
  }
};

/// f(PlainStep<T, true>{lr, wd}) or f(PlainStep<T, false>{lr, 0}).
template <class T, class F>
decltype(auto) with_plain_step(double lr, double wd, F&& f) {
  if (wd == 0.0) return f(PlainStep<T, false>{T(lr), T(0)});
  return f(PlainStep<T, true>{T(lr), T(wd)});
}

/// v ← μ v + (g + λ w);  w ← w − α v, or w − α (g + λ w + μ v) with Nesterov.
template <class T>
struct MomentumStep {
  T lr, mu, wd;
  bool nesterov;
  void operator()(T w, T g, T v, T& w_new, T& v_new) const {
    const T d = g + wd * w;
    v_new = mu * v + d;
    w_new = w - lr * (nesterov ? d + mu * v_new : v_new);
  }
};

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
template <class T>
inline bool non_finite(T x) {
  return !std::isfinite(x);
}

/// The first i in [0, n) for which value(i) is not finite, with that value; nullopt if there is
/// none.  `value` only reads.  Ranges of at least `grain` go to the backend's threads.
template <class T, class F>
std::optional<std::pair<std::int64_t, T>> first_non_finite(std::int64_t n, std::int64_t grain, const F& value) {
  std::atomic<std::int64_t> first{n};
  ad::backend::parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
    decltype(non_finite_bit(T(0))) bits = 0;
    for (std::int64_t i = b; i < e; ++i) bits |= non_finite_bit(value(i));
    if (!(bits >> (8 * sizeof(T) - 1))) return;
    std::int64_t i = b;
    while (!non_finite(value(i))) ++i;
    for (std::int64_t f = first.load(); i < f && !first.compare_exchange_weak(f, i);) {
    }
  });
  const std::int64_t i = first.load();
  if (i == n) return std::nullopt;
  return std::pair{i, value(i)};
}

template <class T, class Step>
void sgd_plain(T* __restrict w, const T* __restrict g, std::int64_t n, Step step) {
  ad::backend::parallel_for(n, sgd_grain, [=](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) w[i] = step(w[i], g[i]);
  });
}

template <class T>
void sgd_momentum(T* __restrict w, const T* __restrict g, T* __restrict v, std::int64_t n, MomentumStep<T> step) {
  ad::backend::parallel_for(n, sgd_grain, [=](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      T w_new, v_new;
      step(w[i], g[i], v[i], w_new, v_new);
      v[i] = v_new;
      w[i] = w_new;
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

template <class T>
std::vector<T>& SGD::velocity(std::size_t k) {
  auto& v = [&]() -> std::vector<T>& {
    if constexpr (std::is_same_v<T, float>) return v32_[k];
    else return v64_[k];
  }();
  v.resize(static_cast<std::size_t>(params_[k]->size()), T(0));
  return v;
}

void SGD::update() {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    ad::dispatch(p.dtype(), [&]<class T>() {
      T* w = p.array<T>().data();
      const T* d = static_cast<const T*>(gradient_data(k));
      const std::int64_t n = p.size();
      if (options.momentum == 0.0)
        return with_plain_step<T>(options.lr, wd, [&](auto step) { sgd_plain<T>(w, d, n, step); });
      sgd_momentum<T>(w, d, velocity<T>(k).data(), n,
                      {T(options.lr), T(options.momentum), T(wd), options.nesterov});
    });
  }
}

std::optional<Optimizer::NonFinite> SGD::preview() {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    const auto bad = ad::dispatch(p.dtype(), [&]<class T>() -> std::optional<std::pair<std::int64_t, double>> {
      const T* w = p.array<T>().data();
      const T* g = static_cast<const T*>(gradient_data(k));
      std::optional<std::pair<std::int64_t, T>> r;
      if (options.momentum == 0.0) {
        r = with_plain_step<T>(options.lr, wd, [&](auto step) {
          return first_non_finite<T>(p.size(), sgd_grain, [=](std::int64_t i) { return step(w[i], g[i]); });
        });
      } else {
        const MomentumStep<T> step{T(options.lr), T(options.momentum), T(wd), options.nesterov};
        const T* v = velocity<T>(k).data();
        r = first_non_finite<T>(p.size(), sgd_grain, [=](std::int64_t i) {
          T w_new, v_new;
          step(w[i], g[i], v[i], w_new, v_new);
          return w_new;
        });
      }
      if (!r) return std::nullopt;
      return std::pair{r->first, static_cast<double>(r->second)};
    });
    if (bad) return NonFinite{k, bad->first, bad->second};
  }
  return std::nullopt;
}

// ---- Adam --------------------------------------------------------------------------------------------

namespace {

/// m ← β1 m + (1 − β1) d,  v ← β2 v + (1 − β2) d²,  w ← w − lr_t m / (√v + eps_t),  d = g + λ w.
/// lr_t = α √(1 − β2^t) / (1 − β1^t) and eps_t = ε √(1 − β2^t) fold the bias corrections in:
/// α m̂ / (√v̂ + ε) = lr_t m / (√v + eps_t).
template <class T>
struct AdamStep {
  T lr_t, b1, b2, eps_t, wd;
  void operator()(T w, T g, T m, T v, T& w_new, T& m_new, T& v_new) const {
    const T d = g + wd * w;
    m_new = b1 * m + (T(1) - b1) * d;
    v_new = b2 * v + (T(1) - b2) * d * d;
    w_new = w - lr_t * m_new / (std::sqrt(v_new) + eps_t);
  }
};

template <class T>
AdamStep<T> adam_step(const AdamOptions& o, long t, double wd) {
  const double c1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
  const double c2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
  return {T(o.lr * std::sqrt(c2) / c1), T(o.beta1), T(o.beta2), T(o.eps * std::sqrt(c2)), T(wd)};
}

template <class T>
void adam_update(T* __restrict w, const T* __restrict g, T* __restrict m, T* __restrict v, std::int64_t n,
                 AdamStep<T> step) {
  ad::backend::parallel_for(n, adam_grain, [=](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      T w_new, m_new, v_new;
      step(w[i], g[i], m[i], v[i], w_new, m_new, v_new);
      m[i] = m_new;
      v[i] = v_new;
      w[i] = w_new;
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

template <class T>
std::pair<std::vector<T>&, std::vector<T>&> Adam::moments(std::size_t k) {
  auto [m, v] = [&]() -> std::pair<std::vector<T>&, std::vector<T>&> {
    if constexpr (std::is_same_v<T, float>) return {m32_[k], v32_[k]};
    else return {m64_[k], v64_[k]};
  }();
  const auto n = static_cast<std::size_t>(params_[k]->size());
  m.resize(n, T(0));
  v.resize(n, T(0));
  return {m, v};
}

void Adam::update() {
  ++t_;
  for (std::size_t k = 0; k < params_.size(); ++k) {
    Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    ad::dispatch(p.dtype(), [&]<class T>() {
      auto [m, v] = moments<T>(k);
      adam_update<T>(p.array<T>().data(), static_cast<const T*>(gradient_data(k)), m.data(), v.data(), p.size(),
                     adam_step<T>(options, t_, wd));
    });
  }
}

std::optional<Optimizer::NonFinite> Adam::preview() {
  for (std::size_t k = 0; k < params_.size(); ++k) {
    const Parameter& p = *params_[k];
    const double wd = p.decay() ? options.weight_decay : 0.0;
    const auto bad = ad::dispatch(p.dtype(), [&]<class T>() -> std::optional<std::pair<std::int64_t, double>> {
      auto [mv, vv] = moments<T>(k);
      const T *w = p.array<T>().data(), *g = static_cast<const T*>(gradient_data(k)), *m = mv.data(), *v = vv.data();
      const AdamStep<T> step = adam_step<T>(options, t_ + 1, wd);
      const auto r = first_non_finite<T>(p.size(), adam_grain, [=](std::int64_t i) {
        T w_new, m_new, v_new;
        step(w[i], g[i], m[i], v[i], w_new, m_new, v_new);
        return w_new;
      });
      if (!r) return std::nullopt;
      return std::pair{r->first, static_cast<double>(r->second)};
    });
    if (bad) return NonFinite{k, bad->first, bad->second};
  }
  return std::nullopt;
}

}  // namespace nn
