// ad::backend: the threads deltagrad computes with.
//
// One pool per process: the calling thread plus threads()-1 workers.  Work is handed out as
// numbered chunks that every thread claims from one shared counter, so a thread that is late
// (asleep, or preempted by another process on its core) simply gets fewer chunks, and the caller
// never waits for a worker that has not started.  A worker that has claimed a chunk and is then
// preempted does hold the caller up (the caller waits longer than its own share took, and at least
// 100 µs).  Once is taken for a hiccup; when it happens again within 200 jobs, the pool runs
// everything on the calling thread for a while (20 ms, doubling on each repeat up to 1 s) before
// it tries its workers again.  This is what keeps a busy machine from turning the default into
// something far slower than one thread, without giving up the second core for a single stall.
//
// Idle workers spin for about 200 µs (the gaps between the products of a training step are
// shorter), then sleep on a futex until the next job.
//
// The thread count defaults to the CPUs this process may run on (sched_getaffinity).  The
// environment variable DELTAGRAD_NUM_THREADS overrides that when the pool starts; set_threads()
// overrides both at any time.
#pragma once

#include <cstdint>
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
/// thread only because the pool was backing off, and late-worker events (the second of two within
/// 200 jobs, and every one after a back-off, starts a back-off).
struct PoolStats {
  std::uint64_t jobs = 0, serial_backoff = 0, late = 0;
};
PoolStats pool_stats();

}  // namespace ad::backend
