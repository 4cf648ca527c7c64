// Time to write the tape explorer page (ad::write_explorer: the step-through sweep, the Graphviz
// layout and the page), and the page's size, for two tapes:
//   explorer net=seed   the walkthrough's 3-4-4-3 network, one sample, float64
//   explorer net=mlp    an MLP 784-256-128-10 (ReLU, softmax-cross-entropy, float32) at batch 128,
//                       the Fashion-MNIST network of examples/fashion_mnist
// Each line: the median write time over the runs, the page's size, and whether Graphviz was used
// (each tape is written with the graph, then without it: the difference is Graphviz's share):
//   explorer net=<> runs=<> write_ms=<> bytes=<> graph=<yes|no>
// Pages go to a temporary directory, removed afterwards, or are kept in DIR:  explorer [DIR]
#include <cstdint>
#include <filesystem>
#include <random>
#include <vector>

#include <fmt/core.h>

#include "bench_util.hpp"
#include "examples/walkthrough_tape.hpp"
#include "nn/nn.hpp"

namespace {

template <class Record>
void time_writes(const char* net, int runs, const std::filesystem::path& page, Record record) {
  for (const bool graph : {true, false}) {
    std::vector<double> ms;
    ad::Explorer last;
    for (int r = 0; r < runs; ++r) {
      ad::Tape tape;
      const ad::Tensor loss = record(tape);
      const auto t0 = bench::Clock::now();
      last = ad::write_explorer(tape, loss, page, {.graph = graph});
      ms.push_back(1e3 * bench::seconds_between(t0, bench::Clock::now()));
    }
    fmt::print("explorer net={} runs={} write_ms={:.1f} bytes={} graph={}\n", net, runs, bench::median(ms),
               last.bytes, last.graph ? "yes" : "no");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool keep = argc > 1;
  const std::filesystem::path dir =
      keep ? std::filesystem::path(argv[1]) : std::filesystem::temp_directory_path() / "deltagrad-bench-explorer";
  std::filesystem::create_directories(dir);

  nn::MLP seed = walkthrough_detail::to_mlp(walkthrough_network());
  time_writes("seed", 21, dir / "seed.html", [&](ad::Tape& tape) { return record_walkthrough(tape, seed); });

  const std::int64_t B = 128;
  nn::Rng rng(1);
  const auto [x, y] = bench::random_batch(B, rng);
  nn::MLP mlp({784, 256, 128, 10}, nn::relu, rng);
  time_writes("mlp", 7, dir / "mlp.html", [&](ad::Tape& tape) {
    return tape.name(nn::softmax_cross_entropy(mlp(tape, x), y), "loss");
  });

  if (!keep) std::filesystem::remove_all(dir);
}
