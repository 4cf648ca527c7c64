#include "nn/distributed.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <exception>
#include <limits>
#include <sstream>
#include <vector>

#include <mpi.h>

#include <fmt/std.h>

#include "nn/io.hpp"

namespace nn {

namespace {

int live_contexts = 0;
bool mpi_initialised_here = false;

/// Throws DistributedError naming the call and MPI's description of the error code.
void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) length = 0;
  throw DistributedError(fmt::format("{} failed: {}", call, std::string_view(text, static_cast<std::size_t>(length))));
}

MPI_Datatype mpi_type(ad::DType t) { return t == ad::DType::f32 ? MPI_FLOAT : MPI_DOUBLE; }

int mpi_count(std::int64_t n, const char* what) {
  if (n > std::numeric_limits<int>::max())
    throw DistributedError(fmt::format("{}: {} elements in one message (MPI counts are int)", what, n));
  return static_cast<int>(n);
}

void* parameter_data(Parameter& p) {
  return ad::dispatch(p.dtype(), [&]<class T>() -> void* { return p.array<T>().data(); });
}

std::size_t bytes_of(const Parameter& p) { return static_cast<std::size_t>(p.size()) * ad::size_of(p.dtype()); }

/// Rank q's part [lo, hi) of a gradient of n elements shared out between `ranks`: the elements it
/// sums for every rank.  The bounds are multiples of 16 elements (whole cache lines), so that no
/// two ranks write one line.
std::pair<std::size_t, std::size_t> part_of(std::size_t n, int q, int ranks) {
  auto bound = [&](int r) {
    return r == ranks ? n : n * static_cast<std::size_t>(r) / static_cast<std::size_t>(ranks) / 16 * 16;
  };
  return {bound(q), bound(q + 1)};
}

/// out[i] = ((parts[0][i] + parts[1][i]) + parts[2][i]) + ... for i < n, in rank order (the sum
/// is formed once, by one rank, and copied to the others).  `out` is none of the parts.
template <class T>
void sum_in_order(T* __restrict out, std::span<const void* const> parts, std::size_t n) {
  {
    const T* __restrict a = static_cast<const T*>(parts[0]);
    const T* __restrict b = static_cast<const T*>(parts[1]);
    for (std::size_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
  }
  for (std::size_t r = 2; r < parts.size(); ++r) {
    const T* __restrict c = static_cast<const T*>(parts[r]);
    for (std::size_t i = 0; i < n; ++i) out[i] += c[i];
  }
}

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

struct DistributedContext::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm node = MPI_COMM_NULL;  // the ranks that share this rank's memory (MPI_COMM_TYPE_SHARED)
  bool one_node = false;          // every rank shares this rank's memory

  // How the steps reduce the gradients of the parameters last broadcast(), decided by rank 0 at
  // the first step after it and kept.
  bool planned = false;
  bool shared = false;      // through the shared window (else with MPI allreduces)
  std::vector<char> early;  // per parameter: started during the sweep (1) or after it (0)
  std::vector<MPI_Request> requests;  // per parameter, in a step with MPI allreduces

  // The shared window: in each rank's segment every parameter's gradient, parameter k at offset[k]
  // (the rank's own part of each stays unused).
  MPI_Win window = MPI_WIN_NULL;
  std::size_t window_bytes = 0;  // of each segment
  std::vector<std::byte*> segments;  // per rank: its segment, as mapped in this process
  std::vector<std::size_t> bytes;    // per parameter: its gradient's bytes
  std::vector<std::size_t> offset;   // per parameter, and the end of the last
  std::vector<const void*> parts;    // per rank, in a sum
  std::vector<std::byte> scratch;    // a sum over more than two ranks

  void free_window() {
    if (window == MPI_WIN_NULL) return;
    MPI_Win_unlock_all(window);
    MPI_Win_free(&window);
    segments.clear();
    window_bytes = 0;
  }
};

DistributedContext::DistributedContext(DistributedOptions opt) : options(opt), impl_(std::make_unique<Impl>()) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  if (finalised)
    throw DistributedError("DistributedContext: MPI has already been finalised; make one context in main() and keep "
                           "it for the program's life");
  if (!initialised) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    mpi_initialised_here = true;
  }
  // A communicator of its own, so that the context's collectives never match a program's own ones.
  check(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(impl_->comm, &rank_);
  MPI_Comm_size(impl_->comm, &size_);
  // The ranks that can map each other's memory: when that is all of them, the steps can sum the
  // gradients through a shared window instead of sending them.
  if (MPI_Comm_split_type(impl_->comm, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &impl_->node) == MPI_SUCCESS) {
    MPI_Comm_set_errhandler(impl_->node, MPI_ERRORS_RETURN);
    int node_size = 0;
    MPI_Comm_size(impl_->node, &node_size);
    impl_->one_node = node_size == size_;
  }
  ++live_contexts;
}

DistributedContext::~DistributedContext() {
  impl_->free_window();
  if (impl_->node != MPI_COMM_NULL) MPI_Comm_free(&impl_->node);
  MPI_Comm_free(&impl_->comm);
  if (--live_contexts == 0 && mpi_initialised_here) {
    MPI_Finalize();
    mpi_initialised_here = false;
  }
}

void DistributedContext::check_same(std::span<const std::int64_t> values, const char* what) {
  std::vector<std::int64_t> lo(values.begin(), values.end()), hi = lo;
  const int n = mpi_count(static_cast<std::int64_t>(lo.size()), what);
  check(MPI_Allreduce(MPI_IN_PLACE, lo.data(), n, MPI_INT64_T, MPI_MIN, impl_->comm), "MPI_Allreduce");
  check(MPI_Allreduce(MPI_IN_PLACE, hi.data(), n, MPI_INT64_T, MPI_MAX, impl_->comm), "MPI_Allreduce");
  for (std::size_t k = 0; k < lo.size(); ++k)
    if (lo[k] != hi[k])
      throw DistributedError(fmt::format("{}: differ between the {} ranks (value {} of {} ranges from {} to {}; this "
                                         "rank has {})",
                                         what, size_, k, lo.size(), lo[k], hi[k], values[k]));
}

void DistributedContext::broadcast(const ParameterList& params) {
  impl_->planned = false;  // the next step plans again (for these parameters, with rank 0's options)
  const std::int64_t count = static_cast<std::int64_t>(params.size());
  check_same(std::span(&count, 1), "broadcast: the number of parameters");
  std::vector<std::int64_t> shapes;
  for (const auto& p : params) {
    shapes.push_back(static_cast<std::int64_t>(p->dtype()));
    shapes.push_back(static_cast<std::int64_t>(p->shape().size()));
    shapes.insert(shapes.end(), p->shape().begin(), p->shape().end());
  }
  const std::int64_t length = static_cast<std::int64_t>(shapes.size());
  check_same(std::span(&length, 1), "broadcast: the parameters' ranks");
  check_same(shapes, "broadcast: the parameters' dtypes and shapes");
  for (const auto& p : params)
    check(MPI_Bcast(parameter_data(*p), mpi_count(p->size(), "broadcast"), mpi_type(p->dtype()), 0, impl_->comm),
          "MPI_Bcast");
}

void DistributedContext::broadcast(const ParameterList& params, Rng& rng) {
  broadcast(params);
  // The engine's state as text (the standard's serialisation of mersenne_twister_engine).
  std::string state;
  if (root()) {
    std::ostringstream os;
    os << rng;
    state = os.str();
  }
  std::int64_t length = static_cast<std::int64_t>(state.size());
  check(MPI_Bcast(&length, 1, MPI_INT64_T, 0, impl_->comm), "MPI_Bcast");
  state.resize(static_cast<std::size_t>(length));
  check(MPI_Bcast(state.data(), mpi_count(length, "broadcast"), MPI_CHAR, 0, impl_->comm), "MPI_Bcast");
  if (!root()) {
    std::istringstream is(state);
    is >> rng;
  }
}

void DistributedContext::sum(std::span<double> values) {
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), mpi_count(static_cast<std::int64_t>(values.size()), "sum"),
                      MPI_DOUBLE, MPI_SUM, impl_->comm),
        "MPI_Allreduce");
}

std::optional<Optimizer::NonFinite> DistributedContext::step(Optimizer& opt, ad::Tape& tape, const ad::Tensor* loss,
                                                             double weight, bool check_finite) {
  const ParameterList& params = opt.parameters();
  ad::Tensor J;  // what this rank differentiates: its share of the whole batch's mean loss
  if (loss) {
    tape.check_output(*loss, "DistributedContext::step");
    J = *loss * weight;
  } else {
    // No rows on this rank: 0 · Σ sum(p) gives every parameter a zero gradient, through the same
    // sweep, readers and allreduces as on the other ranks.
    tape.clear();
    for (const auto& p : params) {
      const ad::Tensor s = ad::sum(p->record(tape));
      J = J.empty() ? s : J + s;
    }
    J = J * 0.0;
  }
  // Each parameter's readers (the leaves that read its buffer).  Its gradient is final once the
  // sweep has passed the first of them: every entry that uses a leaf comes after it on the tape.
  std::vector<std::uint32_t> first(params.size()), only(params.size());  // only: the one reader, or 0
  for (std::size_t k = 0; k < params.size(); ++k) {
    const Parameter& p = *params[k];
    std::vector<std::uint32_t> readers = tape.readers_of(p.view().data());
    std::erase_if(readers, [&](std::uint32_t e) { return !tape.requires_grad(e); });
    if (readers.empty())
      throw ad::InvalidArgument(fmt::format("DistributedContext::step: parameter {} ({}) was not recorded on this tape "
                                            "since its last clear(); run the forward pass first",
                                            p.name(), ad::describe(p.dtype(), p.shape())));
    first[k] = readers.front();
    only[k] = readers.size() == 1 ? readers.front() : 0;
  }

  // How the gradients are reduced, decided by rank 0 and sent to all (MPI matches collective calls
  // by order and kind, so every rank must make the same calls), at the first step after
  // broadcast() (fit calls it when it starts) and kept, so that steps do not wait for rank 0 an
  // extra time.
  Impl& m = *impl_;
  if (!m.planned || m.bytes.size() != params.size() ||
      !std::equal(params.begin(), params.end(), m.bytes.begin(),
                  [](const auto& p, std::size_t bytes) { return bytes_of(*p) == bytes; }))
    plan(params, tape, J.index(), first);

  std::vector<MPI_Request>& requests = m.requests;
  std::byte* const mine = m.shared ? m.segments[static_cast<std::size_t>(rank_)] : nullptr;  // this rank's segment
  if (!m.shared) requests.assign(params.size(), MPI_REQUEST_NULL);
  // The parameters are started last one first (the order in which an MLP's gradients become
  // final), in the same order on every rank.  With the shared window, starting is copying the
  // gradient's parts that the other ranks sum into this rank's segment; otherwise an allreduce
  // (non-blocking for a parameter planned early).
  std::size_t next = params.size();  // parameters [next, end) have been started
  double seconds = 0;
  auto start = [&](void* gradient) {
    --next;
    const Parameter& p = *params[next];
    if (m.shared) {
      // Every part but this rank's own goes into the window, for the rank that sums it.
      const std::size_t e = ad::size_of(p.dtype());
      for (int q = 0; q < size_; ++q)
        if (q != rank_) {
          const auto [lo, hi] = part_of(static_cast<std::size_t>(p.size()), q, size_);
          std::memcpy(mine + m.offset[next] + lo * e, static_cast<const std::byte*>(gradient) + lo * e, (hi - lo) * e);
        }
    } else {
      const int n = mpi_count(p.size(), "step");
      if (m.early[next])
        check(MPI_Iallreduce(MPI_IN_PLACE, gradient, n, mpi_type(p.dtype()), MPI_SUM, m.comm, &requests[next]),
              "MPI_Iallreduce");
      else
        check(MPI_Allreduce(MPI_IN_PLACE, gradient, n, mpi_type(p.dtype()), MPI_SUM, m.comm), "MPI_Allreduce");
    }
    stats_.bytes += static_cast<std::int64_t>(bytes_of(p));
  };
  // During the sweep: the parameters read by one leaf, on that leaf's adjoint (which collect() then
  // uses as it is).  A parameter read by several leaves or planned late, and those before it, wait
  // for collect().
  auto start_final = [&](ad::Gradients& g, std::uint32_t swept) {  // every entry >= swept has been swept
    const auto t0 = Clock::now();
    while (next > 0 && m.early[next - 1] && only[next - 1] != 0 && first[next - 1] + 1 >= swept) {
      const std::uint32_t e = only[next - 1];
      start(g.store().tensor_adjoint(tape.node_index(e), *tape.node(e)));
    }
    if (!m.shared && next < params.size()) {  // lets MPI move the started messages along
      int done = 0;
      check(MPI_Testall(static_cast<int>(params.size() - next), requests.data() + next, &done, MPI_STATUSES_IGNORE),
            "MPI_Testall");
    }
    seconds += since(t0);
  };
  ad::SweepHooks hooks;
  if (std::find(m.early.begin(), m.early.end(), 1) != m.early.end())
    hooks.after = [&](const ad::SweepStep& s) { start_final(s.gradients, s.entry); };
  const ad::Gradients g = tape.gradient(J, hooks);
  opt.collect(g);
  const auto t0 = Clock::now();
  while (next > 0) {  // the rest, on the optimiser's collected gradients
    const Parameter& p = *params[next - 1];
    ad::dispatch(p.dtype(), [&]<class T>() { start(opt.gradient<T>(next - 1).data()); });
  }
  if (m.shared) {
    // A reduce-scatter and an allgather through the window, in place.  Rank r has put each part q
    // (q != r) of its gradient into its segment, where rank q reads it.  Once every rank has
    // reached the barrier, each sums its own part over the ranks (in rank order, its own
    // contribution from its gradient) and writes the sum into its gradient and over the part it
    // read in every other rank's segment; after a second barrier each copies the sums the others
    // left in its own segment into its gradient.  So each segment holds one copy of a gradient's
    // bytes, and the others' contributions and sums cross between the processes once each way.
    // No rank overwrites what another may still read: a part put in for rank q is read by q
    // before the second barrier, and q's sum written there is read after it, before the next
    // step's first barrier, which q passes before writing again.
    auto barrier = [&] {
      check(MPI_Win_sync(m.window), "MPI_Win_sync");
      check(MPI_Barrier(m.node), "MPI_Barrier");
      check(MPI_Win_sync(m.window), "MPI_Win_sync");
    };
    auto gradient_of = [&](std::size_t k) {
      return static_cast<std::byte*>(ad::dispatch(params[k]->dtype(), [&]<class T>() -> void* {
        return opt.gradient<T>(k).data();
      }));
    };
    barrier();
    for (std::size_t k = 0; k < params.size(); ++k) {
      const Parameter& p = *params[k];
      const std::size_t e = ad::size_of(p.dtype());
      const auto part = part_of(static_cast<std::size_t>(p.size()), rank_, size_);
      const std::size_t lo = part.first, hi = part.second;  // plain names: lambdas below capture them
      if (lo == hi) continue;
      std::byte* const g = gradient_of(k) + lo * e;
      auto in = [&](int q) { return m.segments[static_cast<std::size_t>(q)] + m.offset[k] + lo * e; };
      if (size_ == 2) {
        // One pass: g + other is other + g (IEEE addition commutes), the sum in rank order.
        ad::dispatch(p.dtype(), [&]<class T>() {
          T* __restrict mine_part = reinterpret_cast<T*>(g);
          T* __restrict other_part = reinterpret_cast<T*>(in(1 - rank_));
          for (std::size_t i = 0; i < hi - lo; ++i) {
            const T sum = mine_part[i] + other_part[i];
            mine_part[i] = sum;
            other_part[i] = sum;
          }
        });
      } else {
        m.scratch.resize(std::max(m.scratch.size(), (hi - lo) * e));
        for (int q = 0; q < size_; ++q) m.parts[static_cast<std::size_t>(q)] = q == rank_ ? g : in(q);
        ad::dispatch(p.dtype(),
                     [&]<class T>() { sum_in_order(reinterpret_cast<T*>(m.scratch.data()), m.parts, hi - lo); });
        std::memcpy(g, m.scratch.data(), (hi - lo) * e);
        for (int q = 0; q < size_; ++q)
          if (q != rank_) std::memcpy(in(q), m.scratch.data(), (hi - lo) * e);
      }
    }
    barrier();
    for (std::size_t k = 0; k < params.size(); ++k) {
      const Parameter& p = *params[k];
      const std::size_t e = ad::size_of(p.dtype());
      std::byte* const g = gradient_of(k);
      for (int q = 0; q < size_; ++q)
        if (q != rank_) {
          const auto [lo, hi] = part_of(static_cast<std::size_t>(p.size()), q, size_);
          std::memcpy(g + lo * e, mine + m.offset[k] + lo * e, (hi - lo) * e);
        }
    }
  } else {
    check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  }
  seconds += since(t0);
  stats_.seconds += seconds;
  ++stats_.steps;
  if (check_finite) return opt.apply_checked();
  opt.apply();
  return std::nullopt;
}

void DistributedContext::plan(const ParameterList& params, const ad::Tape& tape, std::uint32_t loss,
                              std::span<const std::uint32_t> first) {
  Impl& m = *impl_;
  m.planned = false;
  // Rank 0's choice: [shared window, then per parameter whether it starts during the sweep].
  std::vector<char> choice(params.size() + 1, 0);
  if (root()) {
    choice[0] = options.shared_memory && m.one_node && size_ > 1 ? 1 : 0;
    if (options.overlap) {
      if (choice[0]) {
        // Copying a gradient into the window is local: any final one can go.
        std::fill(choice.begin() + 1, choice.end(), 1);
      } else {
        // A non-blocking allreduce where some backward work is left below the parameter's first
        // reader to overlap with; a blocking one after the sweep otherwise (Open MPI's blocking
        // allreduce is the faster of the two when there is nothing left to overlap).
        std::uint32_t lowest_work = loss;  // the first entry with a backward step
        for (std::uint32_t e = 1; e < loss; ++e)
          if (!tape.args(e).empty()) {
            lowest_work = e;
            break;
          }
        for (std::size_t k = 0; k < params.size(); ++k) choice[k + 1] = lowest_work < first[k] ? 1 : 0;
      }
    }
  }
  check(MPI_Bcast(choice.data(), static_cast<int>(choice.size()), MPI_CHAR, 0, m.comm), "MPI_Bcast");
  m.early.assign(choice.begin() + 1, choice.end());
  // Each parameter's place in a segment of the window, on cache-line boundaries (the same on every
  // rank: broadcast() checked that the ranks' parameters have the same types and shapes).
  m.bytes.clear();
  m.offset.assign(1, 0);
  for (const auto& p : params) {
    m.bytes.push_back(bytes_of(*p));
    m.offset.push_back(m.offset.back() + (m.bytes.back() + 63) / 64 * 64);
  }
  m.shared = choice[0] != 0;
  if (m.shared && m.offset.back() > m.window_bytes) {
    m.free_window();
    // Each rank's segment on pages of its own (it writes it; the others read it).
    MPI_Info info;
    MPI_Info_create(&info);
    MPI_Info_set(info, "alloc_shared_noncontig", "true");
    std::byte* base = nullptr;
    const std::size_t bytes = m.offset.back();
    int ok = MPI_Win_allocate_shared(static_cast<MPI_Aint>(bytes), 1, info, m.node, &base, &m.window) ==
             MPI_SUCCESS;
    MPI_Info_free(&info);
    // Every rank must sum the same way: without a window on every rank, all use MPI_Allreduce
    // (shared_window() then says so).
    check(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, m.comm), "MPI_Allreduce");
    if (ok && m.window != MPI_WIN_NULL) {
      MPI_Win_set_errhandler(m.window, MPI_ERRORS_RETURN);
      m.segments.assign(static_cast<std::size_t>(size_), nullptr);
      m.parts.assign(static_cast<std::size_t>(size_), nullptr);
      for (int r = 0; r < size_; ++r) {
        MPI_Aint size = 0;
        int unit = 0;
        void* at = nullptr;
        check(MPI_Win_shared_query(m.window, r, &size, &unit, &at), "MPI_Win_shared_query");
        m.segments[static_cast<std::size_t>(r)] = static_cast<std::byte*>(at);
      }
      // One passive epoch for the window's life; MPI_Win_sync orders the accesses in it.
      check(MPI_Win_lock_all(MPI_MODE_NOCHECK, m.window), "MPI_Win_lock_all");
      m.window_bytes = m.offset.back();
    } else {
      if (m.window != MPI_WIN_NULL) MPI_Win_free(&m.window);
      m.shared = false;
      std::fill(m.early.begin(), m.early.end(), 0);  // the same on every rank: all allreduces after the sweep
    }
  }
  m.planned = true;
}

bool DistributedContext::shared_window() const { return impl_->planned && impl_->shared; }

bool DistributedContext::identical(const ParameterList& params) {
  std::uint64_t h = fingerprint(std::span<const std::byte>());
  for (const auto& p : params) {
    const ad::View v = p->view();
    h = fingerprint(std::span(static_cast<const std::byte*>(v.data()),
                              static_cast<std::size_t>(v.size()) * ad::size_of(v.dtype())),
                    h);
  }
  std::uint64_t lo = h, hi = h;
  check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, impl_->comm), "MPI_Allreduce");
  check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, impl_->comm), "MPI_Allreduce");
  return lo == hi;
}

void DistributedContext::check_identical(const ParameterList& params, const char* what) {
  if (!identical(params))
    throw DistributedError(fmt::format("{}: the parameters differ between the {} ranks (they must stay bit-identical: "
                                       "every rank must start from the same weights and apply the same steps)",
                                       what, size_));
}

void DistributedContext::abort(std::string_view why) {
  fmt::print(stderr, "rank {} of {}: {}; ending all ranks\n", rank_, size_, why);
  std::fflush(stderr);
  MPI_Abort(impl_->comm, 1);
  std::abort();  // MPI_Abort does not return; this is for the compiler
}

void DistributedContext::save(const Module& model, const std::filesystem::path& path) {
  std::exception_ptr error;
  if (root()) {
    try {
      nn::save(model, path);
    } catch (...) {
      error = std::current_exception();
    }
  }
  int failed = error ? 1 : 0;
  check(MPI_Bcast(&failed, 1, MPI_INT, 0, impl_->comm), "MPI_Bcast");
  if (error) std::rethrow_exception(error);
  if (failed) throw DistributedError(fmt::format("save: rank 0 could not write {}", path));
}

void DistributedContext::barrier() { check(MPI_Barrier(impl_->comm), "MPI_Barrier"); }

}  // namespace nn
