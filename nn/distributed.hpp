// Data-parallel training over MPI: the same model on N processes (on one machine or several), one
// result.
//
// Every process (rank) holds a full copy of the model.  In each step every rank takes its part of
// the batch (nn::Batches with a Shard), runs the forward pass and the reverse sweep on its own tape,
// and the ranks sum their gradients, each weighted by its share of the batch's rows.  Every rank
// then holds the gradient of the mean loss over the whole batch and applies the same optimiser
// step, so the copies stay identical.  When all ranks run on one machine the sum goes through
// memory they share (an MPI shared-memory window); otherwise it is an MPI allreduce per parameter.
// With `overlap` (the default) a parameter's share starts during the sweep, as soon as its gradient
// is final; the step waits for all of them.
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
  /// Start each parameter's allreduce (or its copy into the shared window) during the sweep as soon
  /// as its gradient is final (when the sweep has passed the parameter's leaf), instead of after
  /// the whole sweep.  Rank 0's setting
  /// applies to every rank; it is read at the first step after broadcast() (fit calls broadcast()
  /// when it starts).
  bool overlap = true;
  /// When every rank runs on one machine, sum the gradients through memory the ranks share (an MPI
  /// shared-memory window) instead of sending them: each gradient is split into one part per rank;
  /// every rank puts the parts the others sum into the window, sums its own part over the ranks
  /// (in rank order) and puts the result there, and copies the others' results out, with a barrier
  /// between the phases.  Otherwise, or with false, MPI_Allreduce sums them.  Rank 0's setting
  /// applies to every rank, read as `overlap` is.
  bool shared_memory = true;
};

/// What summing the gradients over the ranks cost this rank in the steps (since the last
/// reset_stats()).
struct CommunicationStats {
  std::int64_t steps = 0;
  std::int64_t bytes = 0;   ///< gradient bytes this rank passed to allreduce or the shared window
  double seconds = 0;       ///< time spent summing (MPI calls, or copies, barrier and sums): what
                            ///< the sweep did not hide, including any wait for a slower rank
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
  std::optional<Optimizer::NonFinite> step(Optimizer& opt, ad::Tape& tape, const ad::Tensor* loss, double weight,
                                           bool check_finite = false) override;
  void check_identical(const ParameterList& params, const char* what) override;
  [[noreturn]] void abort(std::string_view why) override;

  /// Copies rank 0's parameter values to every rank (and makes the next step plan its allreduces
  /// anew).
  void broadcast(const ParameterList& params);
  /// Whether every rank holds bit-identical values of these parameters (a 64-bit hash compared).
  bool identical(const ParameterList& params);
  /// Rank 0 saves the module (nn::save); the others write nothing.  Returns on every rank once the
  /// file is complete.
  void save(const Module& model, const std::filesystem::path& path);
  /// Waits until every rank has called it.
  void barrier();

  /// Whether the steps sum the gradients through a shared window (DistributedOptions::shared_memory)
  /// rather than with MPI_Allreduce: decided at the first step after broadcast(); false before it.
  bool shared_window() const;

  const CommunicationStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

  DistributedOptions options;

 private:
  void plan(const ParameterList& params, const ad::Tape& tape, std::uint32_t loss,
            std::span<const std::uint32_t> first);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  CommunicationStats stats_;
};

}  // namespace nn
