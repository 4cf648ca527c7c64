// The output directory of an example program: `--out DIR` (or `--out=DIR`) anywhere on the command
// line; the current directory when absent.  Examples write every file they produce into it.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace examples {

/// Takes `--out DIR` / `--out=DIR` out of argv (argc shrinks; the other arguments keep their order),
/// creates DIR if needed and returns it ("." when the option is absent).  Throws
/// std::invalid_argument when the option has no value or DIR cannot be created.
inline std::filesystem::path take_output_dir(int& argc, char** argv) {
  std::filesystem::path dir = ".";
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--out") {
      if (i + 1 >= argc || std::string_view(argv[i + 1]).empty())
        throw std::invalid_argument("--out needs a directory");
      dir = argv[++i];
    } else if (a.starts_with("--out=")) {
      if (a.size() == 6) throw std::invalid_argument("--out needs a directory");
      dir = std::filesystem::path(a.substr(6));
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  argv[argc] = nullptr;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir))
    throw std::invalid_argument("--out " + dir.string() + ": cannot create the directory" +
                                (ec ? " (" + ec.message() + ")" : std::string()));
  return dir;
}

}  // namespace examples
