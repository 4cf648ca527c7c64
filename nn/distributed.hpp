// Data-parallel training over MPI: the same model on N processes (on one machine or several), one
// result.
//
// Every process (rank) holds a full copy of the model.  In each step every rank takes its part of
// the batch (nn::Batches with a Shard), runs the forward pass and the reverse sweep on its own tape,
// and the ranks sum their gradients, each weighted by its share of the batch's rows, with an
// allreduce.  Every rank then holds the gradient of the mean loss over the whole batch and applies
// the same optimiser step, so the copies stay identical.  With `overlap` (the default) a
// parameter's allreduce starts during the sweep, as soon as its gradient is final; the step waits
// for all of them.
//
//   nn::DistributedContext group;                      // MPI_COMM_WORLD; initialises MPI if needed
//   nn::fit(net, opt, train, rng, {.batch_size = 256, .distributed = &group});
//   if (group.root()) nn::save(net, "weights.npz");
//
// and `mpirun -np 2 ./program`.  Built only when deltagrad is configured with MPI (DELTAGRAD_MPI).
#pragma once

#if !defined(DELTAGRAD_HAVE_MPI)
#error "nn/distributed.hpp: this deltagrad was built without MPI (configure with an MPI installed and DELTAGRAD_MPI=ON)"
#endif

#include <filesystem>
#include <memory>

#include "nn/train.hpp"

namespace nn {

struct DistributedOptions {
  /// Start each parameter's allreduce during the sweep as soon as its gradient is final (when the
  /// sweep has passed the parameter's leaf), instead of after the whole sweep.
  bool overlap = true;
};

/// What the gradient allreduces of the steps cost this rank (since the last reset_stats()).
struct CommunicationStats {
  std::int64_t steps = 0;
  std::int64_t bytes = 0;   ///< gradient bytes this rank passed to allreduce
  double seconds = 0;       ///< time spent in the allreduce calls: what the sweep did not hide
};

/// The processes of MPI_COMM_WORLD as one ProcessGroup (fit's `distributed` option).
///
/// The first context initialises MPI if the program has not (MPI_Init_thread, funneled: only the
/// thread that made the context calls MPI); MPI is finalised when the last context is destroyed,
/// if a context initialised it.  Make one in main() and keep it for the program's life.
class DistributedContext final : public ProcessGroup {
 public:
  explicit DistributedContext(DistributedOptions options = {});
  ~DistributedContext() override;
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  /// Rank 0: the one that prints and writes files.
  bool root() const { return rank_ == 0; }

  void check_same(std::span<const std::int64_t> values, const char* what) override;
  void broadcast(const ParameterList& params, Rng& rng) override;
  void sum(std::span<double> values) override;
  void step(Optimizer& opt, ad::Tape& tape, const ad::Tensor* loss, double weight) override;
  void check_identical(const ParameterList& params, const char* what) override;
  [[noreturn]] void abort(std::string_view why) override;

  /// Copies rank 0's parameter values to every rank.
  void broadcast(const ParameterList& params);
  /// Whether every rank holds bit-identical values of these parameters (a 64-bit hash compared).
  bool identical(const ParameterList& params);
  /// Rank 0 saves the module (nn::save); the others write nothing.  Returns on every rank once the
  /// file is complete.
  void save(const Module& model, const std::filesystem::path& path);
  /// Waits until every rank has called it.
  void barrier();

  const CommunicationStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

  DistributedOptions options;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  CommunicationStats stats_;
};

}  // namespace nn
