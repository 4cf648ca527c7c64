#include "autodiff/backend/pool.hpp"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "autodiff/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AD_PAUSE() _mm_pause()
#else
#define AD_PAUSE() std::this_thread::yield()
#endif

namespace ad::backend {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto idle_spin = std::chrono::microseconds(200);   // a worker's spin before it sleeps
constexpr auto late_floor = std::chrono::microseconds(100);  // waits shorter than this are never "late"

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

/// DELTAGRAD_NUM_THREADS as a positive count, 0 when unset.  Throws for anything else, so that a
/// typo does not silently run on the default.
int env_threads() {
  const char* v = std::getenv("DELTAGRAD_NUM_THREADS");
  if (!v || !*v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 1 || n > 1024)
    throw InvalidArgument(fmt::format("DELTAGRAD_NUM_THREADS='{}': expected a thread count from 1 to 1024", v));
  return static_cast<int>(n);
}

// The job word: generation (32 bits) | next chunk to claim (16) | chunk count (16).
constexpr std::uint64_t gen_of(std::uint64_t w) { return w >> 32; }
constexpr std::uint32_t next_of(std::uint64_t w) { return static_cast<std::uint32_t>((w >> 16) & 0xffff); }
constexpr std::uint32_t count_of(std::uint64_t w) { return static_cast<std::uint32_t>(w & 0xffff); }
constexpr int max_chunks = 0xffff;

thread_local bool inside_chunk = false;

class Pool {
 public:
  explicit Pool(int n) : n_(n) {
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { work(); });
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    stop_.store(true);
    wake_.fetch_add(1);
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return n_; }

  /// Runs a job whose chunks the workers may help with; the caller holds the submit lock.
  void run(int chunks, void (*f)(void*, int), void* ctx) {
    ++stats_.jobs;
    fn_ = f;
    ctx_ = ctx;
    error_ = nullptr;
    done_.store(0, std::memory_order_relaxed);
    gen_ = (gen_ + 1) & 0xffffffffu;
    state_.store(gen_ << 32 | static_cast<std::uint64_t>(chunks), std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      wake_.fetch_add(1, std::memory_order_seq_cst);
      wake_.notify_all();
    }
    const auto t0 = Clock::now();
    inside_chunk = true;
    const int mine = claim_and_run(gen_);
    inside_chunk = false;
    const auto t1 = Clock::now();
    // Spin while the workers finish; after 50 µs also yield, in case a worker shares this core.
    for (int spins = 0; done_.load(std::memory_order_acquire) != chunks; ++spins) {
      AD_PAUSE();
      if (spins > 256 && Clock::now() - t1 > std::chrono::microseconds(50)) std::this_thread::yield();
    }
    const auto t2 = Clock::now();
    const auto waited = t2 - t1;
    // A worker that claimed a chunk and was then preempted held the caller up for longer than
    // the caller's own work took.
    const bool late = mine > 0 && waited > late_floor && waited > (t1 - t0);
    if (late) ++stats_.late;
    if (const auto pause = policy_.add(t2 - t0, late ? waited : Clock::duration::zero())) serial_until_ = t2 + *pause;
    if (error_) std::rethrow_exception(error_);
  }

  bool backing_off() {
    if (Clock::now() >= serial_until_) return false;
    ++stats_.serial_backoff;
    return true;
  }

  std::mutex submit;  // one job at a time
  PoolStats stats_;   // guarded by submit

 private:
  /// Claims chunks of job `gen` until none is left; returns how many this thread ran.
  int claim_and_run(std::uint64_t gen) {
    int ran = 0;
    std::uint64_t w = state_.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(w) != gen || next_of(w) >= count_of(w)) return ran;
      if (!state_.compare_exchange_weak(w, w + (1u << 16), std::memory_order_acq_rel, std::memory_order_acquire))
        continue;
      // The chunk is ours, so the job is still running and fn_/ctx_ are this job's.
      try {
        fn_(ctx_, static_cast<int>(next_of(w)));
      } catch (...) {
        std::lock_guard lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
      ++ran;
      done_.fetch_add(1, std::memory_order_release);
      w = state_.load(std::memory_order_acquire);
    }
  }

  void work() {
    inside_chunk = true;  // a chunk that calls run_chunks runs it serially
    std::uint64_t seen = gen_of(state_.load());
    for (;;) {
      std::uint64_t w = state_.load(std::memory_order_acquire);
      const auto spin_end = Clock::now() + idle_spin;
      while (gen_of(w) == seen && !stop_.load(std::memory_order_relaxed)) {
        AD_PAUSE();
        w = state_.load(std::memory_order_acquire);
        if (gen_of(w) != seen) break;
        if (Clock::now() >= spin_end) {
          const std::uint32_t ticket = wake_.load(std::memory_order_seq_cst);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          w = state_.load(std::memory_order_seq_cst);
          if (gen_of(w) == seen && !stop_.load()) wake_.wait(ticket, std::memory_order_seq_cst);
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
          w = state_.load(std::memory_order_acquire);
          break;
        }
      }
      if (stop_.load()) return;
      if (gen_of(w) == seen) continue;
      seen = gen_of(w);
      claim_and_run(seen);
    }
  }

  const int n_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> state_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<std::uint32_t> wake_{0};
  std::atomic<bool> stop_{false};
  std::uint64_t gen_ = 0;
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
  std::exception_ptr error_;
  std::mutex error_mutex_;
  Clock::time_point serial_until_{};
  detail::BackoffPolicy policy_;
};

struct Config {
  std::mutex m;  // guards everything below; held while a pool is replaced
  std::unique_ptr<Pool> pool;
  int requested = 0;  // set_threads value, 0 = default
  std::string from;
  std::atomic<int> count{0};  // threads of the current pool, 0 before it exists
};

Config& config() {
  static Config c;
  return c;
}

/// The pool, created on first use.  Caller holds config().m.
Pool& pool_locked(Config& c) {
  if (!c.pool) {
    int n = c.requested;
    c.from = "code";
    if (n == 0) {
      n = env_threads();
      c.from = n ? "environment" : "affinity";
      if (!n) n = affinity_cpus();
    }
    c.pool = std::make_unique<Pool>(n);
    c.count.store(n);
  }
  return *c.pool;
}

}  // namespace

int threads() {
  Config& c = config();
  if (int n = c.count.load(std::memory_order_relaxed)) return n;
  std::lock_guard lock(c.m);
  return pool_locked(c).size();
}

std::string threads_from() {
  Config& c = config();
  std::lock_guard lock(c.m);
  pool_locked(c);
  return c.from;
}

void set_threads(int n) {
  if (n < 0) throw InvalidArgument(fmt::format("backend::set_threads({}): the thread count must be >= 0", n));
  Config& c = config();
  std::lock_guard lock(c.m);
  if (c.pool) {
    std::lock_guard job(c.pool->submit);  // wait for a running job
  }
  c.pool.reset();
  c.count.store(0);
  c.requested = n;
  pool_locked(c);
}

void run_chunks(int chunks, void (*f)(void*, int), void* ctx) {
  if (chunks <= 0) return;
  if (chunks > max_chunks)
    throw InvalidArgument(fmt::format("backend::run_chunks: {} chunks, at most {}", chunks, max_chunks));
  const auto serial = [&] {
    for (int i = 0; i < chunks; ++i) f(ctx, i);
  };
  if (chunks == 1 || inside_chunk || threads() == 1) return serial();
  Config& c = config();
  std::unique_lock cfg(c.m, std::try_to_lock);
  if (!cfg.owns_lock()) return serial();  // the pool is being replaced
  Pool& p = pool_locked(c);
  std::unique_lock job(p.submit, std::try_to_lock);
  cfg.unlock();
  if (!job.owns_lock()) return serial();  // another thread's job is running
  if (p.backing_off()) {
    ++p.stats_.jobs;
    job.unlock();
    return serial();
  }
  p.run(chunks, f, ctx);
}

namespace detail {

std::optional<std::chrono::steady_clock::duration> BackoffPolicy::add(Duration job, Duration lost) {
  win_job_ += job;
  win_lost_ += lost;
  if (win_lost_ >= lost_share * std::max<Duration>(win_job_, window)) {
    backoff_ = calm_windows_ < calm_windows_to_reset ? std::min<Duration>(backoff_ * 2, backoff_max) : backoff_min;
    calm_windows_ = 0;
    win_job_ = win_lost_ = Duration::zero();
    return backoff_;
  }
  if (win_job_ >= window) {
    ++calm_windows_;
    win_job_ = win_lost_ = Duration::zero();
  }
  return std::nullopt;
}

}  // namespace detail

PoolStats pool_stats() {
  Config& c = config();
  std::lock_guard lock(c.m);
  Pool& p = pool_locked(c);
  std::lock_guard job(p.submit);
  return p.stats_;
}

}  // namespace ad::backend
