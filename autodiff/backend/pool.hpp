// ad::backend: the threads deltagrad computes with.
//
// One pool per process: the calling thread plus threads()-1 workers.  Work is handed out as
// numbered chunks that every thread claims from one shared counter, so a thread that is late
// (asleep, or preempted by another process on its core) simply gets fewer chunks, and the caller
// never waits for a worker that has not started.  A worker that has claimed a chunk and is then
// preempted does hold the caller up (the caller waits longer than its own share took, and at least
// 100 µs: the worker is "late").  When such waiting adds up to 30% of the time spent in jobs
// (detail::BackoffPolicy below), another process is competing for a worker's core and the
// second thread costs more than it gives: the pool runs everything on the calling thread for a
// while (20 ms, doubling when it happens again soon, up to 1 s) before it tries its workers again.
// This keeps a busy machine from turning the default into something far slower than one thread,
// while a single stall (a kernel thread, or a virtual machine's host, taking a worker's core for a
// few milliseconds) or the short hiccups of a noisy machine never give up the second core.
//
// Idle workers spin for about 200 µs (the gaps between the products of a training step are
// shorter), then sleep on a futex until the next job.
//
// The thread count defaults to the CPUs this process may run on (sched_getaffinity).  The
// environment variable DELTAGRAD_NUM_THREADS overrides that when the pool starts; set_threads()
// overrides both at any time.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace ad::backend {

/// Threads used for matrix products and large loops (the calling thread included).
int threads();

/// Where threads() comes from: "affinity" (CPUs this process may use), "environment"
/// (DELTAGRAD_NUM_THREADS), or "code" (set_threads).
std::string threads_from();

/// Sets the thread count; 0 goes back to the default (DELTAGRAD_NUM_THREADS, else the CPUs this
/// process may use).  Waits for a running job to finish.  Throws ad::InvalidArgument for n < 0.
void set_threads(int n);

/// Calls f(i) once for every i in [0, chunks), spread over the pool.  Chunks run concurrently, so
/// they must write disjoint data.  Runs everything on the calling thread when the pool has one
/// thread, is busy with another caller's job, is called from inside a chunk, or is backing off
/// after a late worker.  An exception thrown by a chunk is rethrown here (the first one).
void run_chunks(int chunks, void (*f)(void* ctx, int chunk), void* ctx);

template <class F>
void run_chunks(int chunks, F&& f) {
  using Fn = std::remove_reference_t<F>;
  run_chunks(chunks, [](void* ctx, int i) { (*static_cast<Fn*>(ctx))(i); },
             const_cast<void*>(static_cast<const void*>(&f)));
}

/// Calls f(begin, end) on consecutive ranges covering [0, n), each at least `grain` long (except
/// when n itself is shorter), one range per thread.  Below 2·grain the whole range runs on the
/// calling thread: pick grain as the work that pays for waking a second thread (about 20 µs).
template <class F>
void parallel_for(std::int64_t n, std::int64_t grain, F&& f) {
  const std::int64_t t = threads();
  std::int64_t parts = grain > 0 ? n / grain : t;
  if (parts > t) parts = t;
  if (parts < 2) {
    if (n > 0) f(std::int64_t{0}, n);
    return;
  }
  run_chunks(static_cast<int>(parts), [&](int i) {
    const std::int64_t b = n * i / parts, e = n * (i + 1) / parts;
    f(b, e);
  });
}

/// As parallel_for, but in smaller ranges (each still at least `grain` long), up to four per
/// thread, claimed one at a time: a thread that falls behind (its core busy, its memory slower)
/// leaves the ranges it has not started to the others, so the caller seldom waits long for it.
/// For memory-bound loops, whose speed varies from range to range.
template <class F>
void parallel_for_balanced(std::int64_t n, std::int64_t grain, F&& f) {
  const std::int64_t t = threads();
  std::int64_t parts = grain > 0 ? n / grain : t;
  if (parts > 4 * t) parts = 4 * t;
  if (t < 2 || parts < 2) {
    if (n > 0) f(std::int64_t{0}, n);
    return;
  }
  run_chunks(static_cast<int>(parts), [&](int i) {
    const std::int64_t b = n * i / parts, e = n * (i + 1) / parts;
    f(b, e);
  });
}

/// How the pool has been behaving, for benchmarks and tests: jobs run, jobs run on the calling
/// thread only because the pool was backing off, and late-worker events (see the top of this file).
struct PoolStats {
  std::uint64_t jobs = 0, serial_backoff = 0, late = 0;
};
PoolStats pool_stats();

namespace detail {

/// When the pool stops using its workers for a while (see the top of this file).  It sees every
/// job run with workers: the job's time inside the pool, and the part of it the calling thread
/// spent waiting for late workers.  Over windows of 20 ms of jobs, when that waiting reaches 30%
/// of a window the second thread is costing more than it gives (with two threads a job takes about
/// 0.6 of its one-thread time, so at 40% lost it would be no faster): add() then returns how long
/// to run alone.  A single stall of a few milliseconds (another process taking a worker's core for
/// one time slice) stays under that; a process competing for the core all the time makes the caller
/// wait a time slice every few jobs and crosses it within a window.  A back-off that starts within
/// five windows of jobs after the last one lasts twice as long as it, up to 1 s; otherwise 20 ms.
class BackoffPolicy {
 public:
  using Duration = std::chrono::steady_clock::duration;
  static constexpr Duration window = std::chrono::milliseconds(20);
  static constexpr double lost_share = 0.3;
  static constexpr int calm_windows_to_reset = 5;
  static constexpr Duration backoff_min = std::chrono::milliseconds(20);
  static constexpr Duration backoff_max = std::chrono::milliseconds(1000);

  /// Records one job; returns the back-off it starts, if any.
  std::optional<Duration> add(Duration job, Duration lost);

 private:
  Duration backoff_ = backoff_min;             // the last back-off's length
  Duration win_job_{}, win_lost_{};            // the current window: time in jobs, time lost waiting
  int calm_windows_ = calm_windows_to_reset;   // windows without a back-off since the last one
};

}  // namespace detail

}  // namespace ad::backend
