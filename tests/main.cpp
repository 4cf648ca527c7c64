// The doctest suite's main (see doctest_main.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include "doctest_main.hpp"

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  return deltagrad_test::run(context, "deltagrad_tests");
}
