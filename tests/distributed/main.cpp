// The distributed tests' main: one nn::DistributedContext for the whole run (MPI is initialised
// once per process), shared by the cases through world().  Run under `mpiexec -n 2`.
#define DOCTEST_CONFIG_IMPLEMENT
#include "../doctest_main.hpp"

#include <string_view>

#include "world.hpp"

namespace {

nn::DistributedContext* the_world = nullptr;

/// Whether the arguments ask doctest a question (list the cases, help, ...) instead of running
/// cases: the other ranks then stay quiet, so the answer is printed once.
bool is_query(int argc, char** argv) {
  for (int k = 1; k < argc; ++k) {
    std::string_view a = argv[k];
    a.remove_prefix(std::min(a.find_first_not_of('-'), a.size()));
    if (a.starts_with("dt-")) a.remove_prefix(3);
    a = a.substr(0, a.find('='));
    for (std::string_view q : {"?", "h", "help", "v", "version", "c", "count", "ltc", "list-test-cases", "lts",
                               "list-test-suites", "lr", "list-reporters"})
      if (a == q) return true;
  }
  return false;
}

}  // namespace

nn::DistributedContext& world() { return *the_world; }

int main(int argc, char** argv) {
  nn::DistributedContext context;
  the_world = &context;
  doctest::Context tests(argc, argv);
  if (is_query(argc, argv)) {
    // mpiexec may give the ranks a terminal: the answer is read by programs (CTest), so no colours.
    tests.setOption("no-colors", true);
    if (context.rank() != 0) tests.setOption("out", "/dev/null");
  }
  return deltagrad_test::run(tests, "deltagrad_distributed_tests");
}
