#include "nn/file.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "nn/error.hpp"

namespace nn::detail {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

namespace {

std::string errno_text(int e) { return std::strerror(e); }

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

/// Removes a temporary file unless it was renamed into place.
class TempFile {
 public:
  explicit TempFile(std::filesystem::path p) : path_(std::move(p)) {}
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  const std::filesystem::path& path() const { return path_; }
  void keep() { path_.clear(); }

 private:
  std::filesystem::path path_;
};

/// A name for a temporary file beside `target`: hidden, and unique to this process and call.
std::filesystem::path temp_name(const std::filesystem::path& dir, const std::string& base) {
  static std::atomic<std::uint64_t> counter{0};
  const auto now = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::uint64_t mix = (now * 0x9e3779b97f4a7c15ull) ^ (counter.fetch_add(1) << 17);
  return dir / fmt::format(".{}.{}-{:012x}.tmp", base, ::getpid(), mix & 0xffffffffffffull);
}

}  // namespace

template <class E>
OpenFile open_regular(const std::filesystem::path& path, std::uint64_t cap) {
  // O_NONBLOCK: opening a FIFO that has no writer returns at once (it is then refused below).
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) throw E(fmt::format("{}: no such file", path.string()));
    throw E(fmt::format("{}: cannot open: {}", path.string(), errno_text(e)));
  }
  OpenFile f{Fd(fd), 0};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw E(fmt::format("{}: cannot stat: {}", path.string(), errno_text(errno)));
  if (!S_ISREG(st.st_mode))
    throw E(fmt::format("{}: is {}, not a regular file; give the path of a file", path.string(), kind_of(st.st_mode)));
  f.size = static_cast<std::uint64_t>(st.st_size);
  if (f.size > cap)
    throw E(fmt::format("{}: the file is {} bytes, more than the {} bytes accepted for this kind of file", path.string(),
                        f.size, cap));
  // Reads of a regular file never block; clear the flag anyway so later reads behave normally.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return f;
}

template <class E>
std::vector<std::byte> read_regular(const std::filesystem::path& path, std::uint64_t cap) {
  OpenFile f = open_regular<E>(path, cap);
  std::vector<std::byte> out;
  try {
    out.resize(static_cast<std::size_t>(f.size));
  } catch (const std::bad_alloc&) {
    throw E(fmt::format("{}: cannot allocate {} bytes to read the file", path.string(), f.size));
  }
  // Read what the size said when the file was opened; a file that shrinks meanwhile is cut short
  // (and then reported as truncated by the parser), one that grows is read up to that size.
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(f.fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw E(fmt::format("{}: read error at byte offset {}: {}", path.string(), done, errno_text(errno)));
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  out.resize(done);
  return out;
}

template <class E>
void write_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  const std::string base = path.filename().string();
  if (base.empty() || base == "." || base == "..")
    throw E(fmt::format("{}: not a file name (the path names a directory)", path.string()));
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");

  // The file being replaced: its permission bits are kept.  A directory is refused before anything
  // is written.
  struct stat old {};
  bool has_old = false;
  if (::stat(path.c_str(), &old) == 0) {
    if (S_ISDIR(old.st_mode)) throw E(fmt::format("{}: is a directory; cannot save over it", path.string()));
    has_old = S_ISREG(old.st_mode);
  }

  // A fresh temporary file: O_EXCL refuses any existing name (a symlink included), O_NOFOLLOW
  // makes sure no link is followed.  New files get 0666 less the umask, as any created file.
  int fd = -1;
  std::filesystem::path tmp_path;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp_path = temp_name(dir, base);
    fd = ::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST)
      throw E(fmt::format("{}: cannot create a temporary file in {}: {}", path.string(), dir.string(),
                          errno_text(errno)));
  }
  if (fd < 0)
    throw E(fmt::format("{}: cannot create a temporary file in {}: every name tried exists", path.string(),
                        dir.string()));
  TempFile tmp(tmp_path);
  Fd out(fd);
  auto fail = [&](const char* step) {
    const int e = errno;
    return E(fmt::format("{}: {} {}: {}; the old file is unchanged", path.string(), step, tmp.path().string(),
                         errno_text(e)));
  };

  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(out.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail("write error in");
    }
    done += static_cast<std::size_t>(n);
  }
  if (has_old && ::fchmod(out.get(), old.st_mode & 07777) != 0) throw fail("cannot set the permission bits of");
  if (::fsync(out.get()) != 0) throw fail("cannot flush");
  if (::close(out.release()) != 0) throw fail("write error (on close) in");
  if (::rename(tmp.path().c_str(), path.c_str()) != 0) throw fail("cannot rename into place");
  tmp.keep();

  // Make the rename itself durable.  Some file systems cannot sync a directory (EINVAL); that is
  // not an error of the save.
  Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (d.get() >= 0 && ::fsync(d.get()) != 0 && errno != EINVAL && errno != EROFS)
    throw E(fmt::format("{}: saved, but the directory {} could not be flushed: {}", path.string(), dir.string(),
                        errno_text(errno)));
}

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == max) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c > 0x7e || c == '\\') out += fmt::format("\\x{:02x}", c);
    else out += static_cast<char>(c);
  }
  return out;
}

template OpenFile open_regular<DataError>(const std::filesystem::path&, std::uint64_t);
template OpenFile open_regular<WeightsError>(const std::filesystem::path&, std::uint64_t);
template std::vector<std::byte> read_regular<DataError>(const std::filesystem::path&, std::uint64_t);
template std::vector<std::byte> read_regular<WeightsError>(const std::filesystem::path&, std::uint64_t);
template void write_atomically<WeightsError>(const std::filesystem::path&, std::span<const std::byte>);

}  // namespace nn::detail
