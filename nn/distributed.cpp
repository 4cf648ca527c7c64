#include "nn/distributed.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
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

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

struct DistributedContext::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  std::vector<MPI_Request> requests;  // one per parameter in a step
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
  ++live_contexts;
}

DistributedContext::~DistributedContext() {
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

void DistributedContext::step(Optimizer& opt, ad::Tape& tape, const ad::Tensor* loss, double weight) {
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

  // One allreduce per parameter, started in the same order on every rank: last parameter first
  // (the order in which an MLP's gradients become final).
  std::vector<MPI_Request>& requests = impl_->requests;
  requests.assign(params.size(), MPI_REQUEST_NULL);
  std::size_t next = params.size();  // parameters [next, end) have been started
  double seconds = 0;
  auto start = [&](void* gradient) {
    --next;
    const Parameter& p = *params[next];
    check(MPI_Iallreduce(MPI_IN_PLACE, gradient, mpi_count(p.size(), "step"), mpi_type(p.dtype()), MPI_SUM,
                         impl_->comm, &requests[next]),
          "MPI_Iallreduce");
    stats_.bytes += p.size() * static_cast<std::int64_t>(ad::size_of(p.dtype()));
  };
  // During the sweep: the parameters read by one leaf, on that leaf's adjoint (which collect() then
  // uses as it is).  A parameter read by several leaves, and those before it, wait for collect().
  auto start_final = [&](ad::Gradients& g, std::uint32_t swept) {  // every entry >= swept has been swept
    const auto t0 = Clock::now();
    while (next > 0 && only[next - 1] != 0 && first[next - 1] + 1 >= swept) {
      const std::uint32_t e = only[next - 1];
      start(g.store().tensor_adjoint(tape.node_index(e), *tape.node(e)));
    }
    if (next < params.size()) {  // lets MPI move the started messages along
      int done = 0;
      check(MPI_Testall(static_cast<int>(params.size() - next), requests.data() + next, &done, MPI_STATUSES_IGNORE),
            "MPI_Testall");
    }
    seconds += since(t0);
  };
  ad::SweepHooks hooks;
  if (options.overlap) hooks.after = [&](const ad::SweepStep& s) { start_final(s.gradients, s.entry); };
  const ad::Gradients g = tape.gradient(J, hooks);
  opt.collect(g);
  const auto t0 = Clock::now();
  while (next > 0) {  // the rest, on the optimiser's collected gradients
    const Parameter& p = *params[next - 1];
    ad::dispatch(p.dtype(), [&]<class T>() { start(opt.gradient<T>(next - 1).data()); });
  }
  check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
  seconds += since(t0);
  stats_.seconds += seconds;
  ++stats_.steps;
  opt.apply();
}

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
