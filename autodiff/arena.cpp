#include "autodiff/arena.hpp"

#include <algorithm>
#include <new>
#include <utility>

namespace ad {

namespace {
std::size_t round_up(std::size_t n) { return (n + Arena::alignment - 1) / Arena::alignment * Arena::alignment; }
}  // namespace

Arena::Arena(Arena&& o) noexcept : chunks_(std::move(o.chunks_)), current_(o.current_) {
  o.chunks_.clear();
  o.current_ = 0;
}

Arena& Arena::operator=(Arena&& o) noexcept {
  if (this != &o) {
    release();
    chunks_ = std::move(o.chunks_);
    current_ = o.current_;
    o.chunks_.clear();
    o.current_ = 0;
  }
  return *this;
}

Arena::~Arena() { release(); }

void Arena::release() {
  for (auto& c : chunks_) ::operator delete(c.mem, std::align_val_t{alignment});
  chunks_.clear();
  current_ = 0;
}

void* Arena::allocate(std::size_t bytes) {
  bytes = round_up(std::max<std::size_t>(bytes, 1));
  // Walk forward from the current chunk; a chunk too small for this request is skipped for the
  // rest of this cycle (it is used again after reset()).
  for (; current_ < chunks_.size(); ++current_) {
    Chunk& c = chunks_[current_];
    if (c.size - c.used >= bytes) {
      void* p = c.mem + c.used;
      c.used += bytes;
      return p;
    }
  }
  std::size_t size = std::max(bytes, min_chunk);
  if (!chunks_.empty()) size = std::max(size, chunks_.back().size);
  // nothrow, then bad_alloc by hand: the same in every build, also under ASan (whose throwing
  // operator new aborts on an impossible size instead of throwing).
  auto* mem = static_cast<std::byte*>(::operator new(size, std::align_val_t{alignment}, std::nothrow));
  if (!mem) throw std::bad_alloc();
  chunks_.push_back(Chunk{mem, size, bytes});
  current_ = chunks_.size() - 1;
  return mem;
}

void Arena::reset() {
  for (auto& c : chunks_) c.used = 0;
  current_ = 0;
}

std::size_t Arena::bytes_used() const {
  std::size_t n = 0;
  for (const auto& c : chunks_) n += c.used;
  return n;
}

std::size_t Arena::bytes_reserved() const {
  std::size_t n = 0;
  for (const auto& c : chunks_) n += c.size;
  return n;
}

}  // namespace ad
