// The examples' --out option (examples/output_dir.hpp): where the files they write go.
#include <doctest/doctest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "examples/output_dir.hpp"
#include "nn_temp.hpp"

namespace {

/// argv as a program receives it: mutable strings and a terminating null pointer.
struct Args {
  explicit Args(std::vector<std::string> a) : text(std::move(a)) {
    for (auto& s : text) ptrs.push_back(s.data());
    ptrs.push_back(nullptr);
  }
  int argc() const { return static_cast<int>(text.size()); }
  std::vector<std::string> rest(int argc) const {
    std::vector<std::string> r;
    for (int i = 0; i < argc; ++i) r.emplace_back(ptrs[static_cast<std::size_t>(i)]);
    return r;
  }
  std::vector<std::string> text;
  std::vector<char*> ptrs;
};

}  // namespace

TEST_CASE("newcomer: example output directory option is taken out of argv and created") {
  nn_test::TempDir tmp;
  const auto dir = tmp / "a/b";
  Args args({"fashion_mnist", "3", "--out", dir.string(), "/data"});
  int argc = args.argc();
  CHECK(examples::take_output_dir(argc, args.ptrs.data()) == dir);
  CHECK(std::filesystem::is_directory(dir));
  CHECK(args.rest(argc) == std::vector<std::string>{"fashion_mnist", "3", "/data"});
  CHECK(args.ptrs[3] == nullptr);

  Args eq({"inspect_tape", "--out=" + (tmp / "c").string()});
  argc = eq.argc();
  CHECK(examples::take_output_dir(argc, eq.ptrs.data()) == tmp / "c");
  CHECK(argc == 1);

  Args none({"mse_vs_ce", "--epochs", "2"});
  argc = none.argc();
  CHECK(examples::take_output_dir(argc, none.ptrs.data()) == ".");
  CHECK(argc == 3);
}

TEST_CASE("newcomer: example output directory option without a usable directory throws") {
  nn_test::TempDir tmp;
  Args missing({"inspect_tape", "--out"});
  int argc = missing.argc();
  CHECK_THROWS_AS(examples::take_output_dir(argc, missing.ptrs.data()), std::invalid_argument);
  Args empty({"inspect_tape", "--out="});
  argc = empty.argc();
  CHECK_THROWS_AS(examples::take_output_dir(argc, empty.ptrs.data()), std::invalid_argument);
  nn_test::write_bytes(tmp / "file", {1, 2, 3});  // a file where the directory should go
  Args blocked({"inspect_tape", "--out", (tmp / "file").string()});
  argc = blocked.argc();
  CHECK_THROWS_WITH_AS(examples::take_output_dir(argc, blocked.ptrs.data()),
                       doctest::Contains("cannot create the directory"), std::invalid_argument);
}
