// libFuzzer target: CSV files.  The first input byte picks the options (header line, label column,
// delimiter, classes, non-finite values allowed); the rest is the file.  Either a consistent data
// set, or nn::DataError.
#include <cmath>
#include <cstdlib>

#include "fuzz_util.hpp"
#include "nn/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t o = data[0];
  nn::CsvOptions opt;
  opt.header = o & 1;
  opt.label_column = (o & 2) ? -1 : 0;
  opt.delimiter = (o & 4) ? ';' : ',';
  opt.classes = (o & 8) ? 10 : 0;
  opt.allow_non_finite = o & 16;
  opt.scale = (o & 32) ? 1.0f / 255.0f : 1.0f;
  try {
    const nn::Dataset d = nn::read_csv(fuzz::as_file(data + 1, size - 1), opt);
    if (d.size() <= 0 || d.features() <= 0 || static_cast<std::int64_t>(d.labels.size()) != d.size()) std::abort();
    for (std::int32_t y : d.labels)
      if (y < 0 || y >= d.classes) std::abort();
    if (!opt.allow_non_finite)
      for (std::int64_t i = 0; i < d.x.size(); ++i)
        if (!std::isfinite(d.x[i])) std::abort();
  } catch (const nn::DataError&) {
  }
  return 0;
}
