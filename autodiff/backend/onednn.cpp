#include "autodiff/backend/onednn.hpp"

#ifdef DELTAGRAD_HAVE_ONEDNN

#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <tuple>
#include <vector>

#include <dlfcn.h>

#include <dnnl.hpp>

namespace ad::backend::onednn {

namespace {

using dims = dnnl::memory::dims;

#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
/// OpenMP's thread-count calls, from the OpenMP runtime oneDNN brought into the process (looked up
/// at run time, so that deltagrad itself needs no OpenMP to build or link).
struct OmpCalls {
  int (*get_max)() = nullptr;
  void (*set)(int) = nullptr;
  OmpCalls() {
    get_max = reinterpret_cast<int (*)()>(::dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    set = reinterpret_cast<void (*)(int)>(::dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    if (!get_max || !set) get_max = nullptr;
  }
};
const OmpCalls& omp() {
  static const OmpCalls c;
  return c;
}
#endif

/// Holds oneDNN's OpenMP runtime at one thread while it lives (OpenMP's thread count is a
/// per-thread setting, restored afterwards for a caller that uses OpenMP itself).
class OneThread {
 public:
#if DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP
  OneThread() : saved_(omp().get_max ? omp().get_max() : 1) {
    if (saved_ != 1) omp().set(1);
  }
  ~OneThread() {
    if (saved_ != 1) omp().set(saved_);
  }

 private:
  int saved_;
#endif
};

struct Key {
  bool ta, tb, accumulate, bias;
  std::int64_t m, n, k, lda, ldb, ldc;
  auto tie() const { return std::tie(ta, tb, accumulate, bias, m, n, k, lda, ldb, ldc); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Primitive {
  dnnl::matmul::primitive_desc pd;
  dnnl::matmul prim;
};

struct Engine {
  bool ok = false;
  dnnl::engine engine;
  std::string isa;
  std::string version;
};

// Never destroyed: the pool's threads (and their streams) may outlive other statics at exit.
const Engine& engine() {
  static const Engine& e = *new Engine([] {
    Engine e;
    try {
      OneThread one;
      e.engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
      const dnnl_version_t* v = dnnl_version();
      e.version = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
      switch (dnnl::get_effective_cpu_isa()) {
        case dnnl::cpu_isa::sse41: e.isa = "sse41"; break;
        case dnnl::cpu_isa::avx: e.isa = "avx"; break;
        case dnnl::cpu_isa::avx2: e.isa = "avx2"; break;
        case dnnl::cpu_isa::avx2_vnni: e.isa = "avx2_vnni"; break;
        case dnnl::cpu_isa::avx512_core: e.isa = "avx512_core"; break;
        case dnnl::cpu_isa::avx512_core_vnni: e.isa = "avx512_core_vnni"; break;
        case dnnl::cpu_isa::avx512_core_bf16: e.isa = "avx512_core_bf16"; break;
        case dnnl::cpu_isa::avx512_core_amx: e.isa = "avx512_core_amx"; break;
        default: e.isa = "other"; break;
      }
      e.ok = true;
    } catch (const dnnl::error&) {
      e.ok = false;
    }
    return e;
  }());
  return e;
}

// Primitives shared by all threads; nullptr marks a case oneDNN cannot do.
std::shared_mutex cache_mutex;
std::map<Key, std::shared_ptr<const Primitive>> cache;
std::string last_impl;  // guarded by cache_mutex

std::shared_ptr<const Primitive> build(const Key& key) {
  const Engine& e = engine();
  using dt = dnnl::memory::data_type;
  // A transposed operand is the same memory read with swapped strides.
  const dnnl::memory::desc a({key.m, key.k}, dt::f32, key.ta ? dims{1, key.lda} : dims{key.lda, 1});
  const dnnl::memory::desc b({key.k, key.n}, dt::f32, key.tb ? dims{1, key.ldb} : dims{key.ldb, 1});
  const dnnl::memory::desc c({key.m, key.n}, dt::f32, dims{key.ldc, 1});
  dnnl::primitive_attr attr;
  // Each thread passes its own scratchpad, so that one primitive can run on two threads at once.
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (key.accumulate) {
    dnnl::post_ops po;
    po.append_sum(1.0f);
    attr.set_post_ops(po);
  }
  try {
    OneThread one;
    const auto desc = key.bias ? dnnl::matmul::desc(a, b, dnnl::memory::desc({1, key.n}, dt::f32, dims{key.n, 1}), c)
                               : dnnl::matmul::desc(a, b, c);
    auto p = std::make_shared<Primitive>();
    p->pd = dnnl::matmul::primitive_desc(desc, attr, e.engine);
    p->prim = dnnl::matmul(p->pd);
    last_impl = p->pd.impl_info_str();
    return p;
  } catch (const dnnl::error&) {
    return nullptr;
  }
}

std::shared_ptr<const Primitive> lookup(const Key& key) {
  {
    std::shared_lock lock(cache_mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  std::unique_lock lock(cache_mutex);
  if (auto it = cache.find(key); it != cache.end()) return it->second;  // built meanwhile
  return cache.emplace(key, build(key)).first->second;
}

/// What one thread needs to run one primitive: its stream and memory objects.
struct Bound {
  std::shared_ptr<const Primitive> p;
  dnnl::memory a, b, c, bias, scratch;
  std::size_t scratch_bytes = 0;
};

struct ThreadState {
  dnnl::stream stream;
  std::map<Key, Bound> bound;
  std::vector<std::byte> scratch;  // the largest scratchpad any of this thread's primitives needs
  ThreadState() : stream(engine().engine) {}
};

}  // namespace

bool available() { return engine().ok; }
std::string version() { return engine().version; }
std::string isa() { return engine().isa; }

std::string last_implementation() {
  std::shared_lock lock(cache_mutex);
  return last_impl;
}

bool sgemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
           const float* b, std::int64_t ldb, bool accumulate, const float* bias, float* c, std::int64_t ldc) {
  if (!available()) return false;
  const Key key{ta, tb, accumulate, bias != nullptr, m, n, k, lda, ldb, ldc};
  thread_local ThreadState ts;
  auto it = ts.bound.find(key);
  if (it == ts.bound.end()) {
    auto p = lookup(key);
    if (!p) return false;
    const dnnl::engine& eng = engine().engine;
    Bound bd{p, dnnl::memory(p->pd.src_desc(), eng, nullptr), dnnl::memory(p->pd.weights_desc(), eng, nullptr),
             dnnl::memory(p->pd.dst_desc(), eng, nullptr), {}, {}, 0};
    if (bias) bd.bias = dnnl::memory(p->pd.bias_desc(), eng, nullptr);
    bd.scratch = dnnl::memory(p->pd.scratchpad_desc(), eng, nullptr);
    bd.scratch_bytes = p->pd.scratchpad_desc().get_size();
    it = ts.bound.emplace(key, std::move(bd)).first;
  }
  Bound& bd = it->second;
  if (bd.scratch_bytes > ts.scratch.size()) ts.scratch.resize(bd.scratch_bytes);
  bd.a.set_data_handle(const_cast<float*>(a));
  bd.b.set_data_handle(const_cast<float*>(b));
  bd.c.set_data_handle(c);
  // The C call takes the arguments as an array (the C++ wrapper would build a hash map per call).
  dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, bd.a.get()}, {DNNL_ARG_WEIGHTS, bd.b.get()}, {DNNL_ARG_DST, bd.c.get()},
                             {DNNL_ARG_SCRATCHPAD, bd.scratch.get()}, {DNNL_ARG_BIAS, nullptr}};
  int nargs = 4;
  if (bd.scratch_bytes) bd.scratch.set_data_handle(ts.scratch.data());
  if (bias) {
    bd.bias.set_data_handle(const_cast<float*>(bias));
    args[nargs++].memory = bd.bias.get();
  }
  OneThread one;
  if (dnnl_primitive_execute(bd.p->prim.get(), ts.stream.get(), nargs, args) != dnnl_success) return false;
  return true;
}

}  // namespace ad::backend::onednn

#else  // built without oneDNN

namespace ad::backend::onednn {
bool available() { return false; }
std::string version() { return {}; }
std::string isa() { return {}; }
std::string last_implementation() { return {}; }
bool sgemm(bool, bool, std::int64_t, std::int64_t, std::int64_t, const float*, std::int64_t, const float*,
           std::int64_t, bool, const float*, float*, std::int64_t) {
  return false;
}
}  // namespace ad::backend::onednn

#endif
