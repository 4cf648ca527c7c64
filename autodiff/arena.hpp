// A bump allocator for tensor values and adjoints, freed all at once.
//
// Memory is taken from a list of chunks.  reset() rewinds to the first chunk and keeps every chunk,
// so a loop that records the same computation again (a training step) allocates nothing after its
// first pass: the same sequence of requests fits the same chunks.
#pragma once

#include <cstddef>
#include <vector>

namespace ad {

class Arena {
 public:
  static constexpr std::size_t alignment = 64;
  static constexpr std::size_t min_chunk = std::size_t{1} << 20;

  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  Arena(Arena&& o) noexcept;
  Arena& operator=(Arena&& o) noexcept;
  ~Arena();

  /// `bytes` bytes aligned to 64, uninitialised.  Valid until reset() or destruction.
  void* allocate(std::size_t bytes);
  /// Forgets every allocation, keeping the chunks for reuse.
  void reset();

  std::size_t bytes_used() const;
  std::size_t bytes_reserved() const;

 private:
  struct Chunk {
    std::byte* mem;
    std::size_t size;
    std::size_t used;
  };
  void release();
  std::vector<Chunk> chunks_;
  std::size_t current_ = 0;
};

}  // namespace ad
