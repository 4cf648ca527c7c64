// doctest's main, with one addition: a run whose filters select no test case fails.  Each CTest
// entry runs one case by name (--test-case=<name>); if a name is mangled on its way through CMake
// (a ';' splits it), the entry would otherwise pass while running nothing.
//
// Included by exactly one file of a test program, after `#define DOCTEST_CONFIG_IMPLEMENT`.
#pragma once

#include <doctest/doctest.h>

#include <cstdio>

namespace deltagrad_test {

struct RunCount {
  bool ended = false;
  unsigned cases = 0;
};
inline RunCount run_count;

/// A listener that only records how many test cases passed the filters.
struct CountCases : doctest::IReporter {
  explicit CountCases(const doctest::ContextOptions&) {}
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& stats) override {
    run_count.ended = true;
    run_count.cases = stats.numTestCasesPassingFilters;
  }
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};

/// Runs the selected cases; `program` names the executable in the message of an empty selection.
inline int run(doctest::Context& context, const char* program) {
  const int result = context.run();
  if (context.shouldExit()) return result;  // --help, --list-test-cases and other queries
  if (result == 0 && run_count.ended && run_count.cases == 0) {
    std::fprintf(stderr, "%s: no test case matched the filters\n", program);
    return 1;
  }
  return result;
}

}  // namespace deltagrad_test

DOCTEST_REGISTER_LISTENER("count_cases", 1, deltagrad_test::CountCases);
