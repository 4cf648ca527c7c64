// libFuzzer target: IDX files, raw or gzip-compressed.  Either the element count matches the
// dimensions, or nn::DataError.
#include <cstdlib>

#include "fuzz_util.hpp"
#include "nn/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const nn::IdxData d = nn::read_idx(fuzz::as_file(data, size));
    std::uint64_t count = 1;
    for (auto n : d.dims) count *= static_cast<std::uint64_t>(n);
    if (d.dims.empty() || d.dims.size() > 4 || d.bytes.size() != count) std::abort();
  } catch (const nn::DataError&) {
  }
  return 0;
}
