// Shared by the fuzz targets: the input written to an in-memory file, so that the loaders read it
// through their real path (open, regular-file check, size cap) without touching the disk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/mman.h>
#include <unistd.h>

namespace fuzz {

/// One memfd per process, rewritten for every input; its path is /proc/self/fd/N.
inline std::filesystem::path as_file(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("deltagrad-fuzz", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (::ftruncate(fd, 0) != 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

}  // namespace fuzz
