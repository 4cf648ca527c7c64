// Files on disk for the loaders and savers: reading a regular file under a size cap, and replacing a
// file atomically.
//
// Reading: the path is opened without blocking (a FIFO with no writer is refused at once instead of
// hanging), and must be a regular file (not a directory, a device such as /dev/zero, a FIFO or a
// socket) no larger than the cap for its kind.
//
// Writing: the bytes go to a fresh temporary file in the same directory (a unique name created with
// O_CREAT|O_EXCL|O_NOFOLLOW, so a symlink or another process's temporary file is never followed or
// reused), which is flushed to disk, given the permission bits of the file it replaces, renamed over
// the target, and the directory is flushed too.  Readers see the old file or the new one, never a
// mixture; on any error the temporary file is removed and the old file is untouched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace nn {

/// Upper bounds on what the readers accept, so that a hostile or mistaken file is refused with a
/// typed error instead of exhausting memory.
namespace limits {
/// Bytes of a .npy or .npz file, and bytes decompressed from one .npz archive in all (64 GiB).
inline constexpr std::uint64_t weights_bytes = std::uint64_t{1} << 36;
/// Bytes of a CSV or IDX file, and the uncompressed content of a gzip-compressed IDX file (16 GiB).
inline constexpr std::uint64_t data_bytes = std::uint64_t{1} << 34;
/// Bytes an IDX reader decompresses past the elements its header announces before it stops
/// (enough to say how much trailing data there is in any sane file; a gzip bomb stops here).
inline constexpr std::uint64_t idx_trailing_bytes = std::uint64_t{1} << 20;
}  // namespace limits

namespace detail {

/// A file descriptor, closed when it goes out of scope.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const { return fd_; }
  /// Gives up ownership (e.g. to gzdopen, which closes it).
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

/// A regular file opened for reading, and its size when opened.
struct OpenFile {
  Fd fd;
  std::uint64_t size = 0;
};

/// Opens `path` for reading and checks that it is a regular file of at most `cap` bytes.  Throws E
/// (nn::DataError or nn::WeightsError) naming the file and the problem, with the system's reason
/// (errno text) when the system refused.
template <class E>
OpenFile open_regular(const std::filesystem::path& path, std::uint64_t cap);

/// The whole content of a regular file (checked as by open_regular).
template <class E>
std::vector<std::byte> read_regular(const std::filesystem::path& path, std::uint64_t cap);

/// Replaces `path` by a file holding `bytes`, atomically (see the top of this file).  Throws E
/// naming the file, the step that failed and the system's reason.
template <class E>
void write_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes);

/// Text from a file made safe to quote in an error message: control bytes (NUL included, which
/// would end the message early) and bytes above 0x7e are written as \xNN, and text longer than
/// `max` characters is cut with "...".
std::string printable(std::string_view text, std::size_t max = 80);

}  // namespace detail
}  // namespace nn
