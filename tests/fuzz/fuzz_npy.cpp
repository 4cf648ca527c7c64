// libFuzzer target: the .npy reader.  Any input must either decode into an array whose byte count
// matches its dtype and shape, or throw nn::WeightsError; anything else (a crash, a sanitizer
// report, another exception) is a bug.
#include <cstdlib>

#include "fuzz_util.hpp"
#include "nn/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const nn::NpyArray a = nn::load_npy(fuzz::as_file(data, size));
    const auto expected = static_cast<std::size_t>(ad::numel(a.shape)) * ad::size_of(a.dtype);
    if (a.bytes.size() != expected) std::abort();
    if (a.view().size() > 0) (void)a.view().flat(a.view().size() - 1);
  } catch (const nn::WeightsError&) {
  }
  return 0;
}
