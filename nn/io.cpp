#include "nn/io.hpp"

#include "nn/file.hpp"

#include <bit>
#include <charconv>
#include <cstring>
#include <algorithm>
#include <map>
#include <new>
#include <set>

#include <fmt/format.h>
#include <zlib.h>

namespace nn {

static_assert(std::endian::native == std::endian::little, "the .npy/.npz code assumes a little-endian host");

namespace {

std::vector<std::byte> read_all(const std::filesystem::path& path) {
  return detail::read_regular<WeightsError>(path, limits::weights_bytes);
}

void write_all(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  detail::write_atomically<WeightsError>(path, bytes);
}

template <class U>
void put(std::vector<std::byte>& out, U v) {
  std::byte b[sizeof(U)];
  std::memcpy(b, &v, sizeof(U));
  out.insert(out.end(), b, b + sizeof(U));
}

template <class U>
U get(std::span<const std::byte> s, std::size_t at) {
  U v;
  std::memcpy(&v, s.data() + at, sizeof(U));
  return v;
}

// ---- .npy header --------------------------------------------------------------------------------------

/// Position just after `'key':` in a header dict, or npos.
std::size_t find_key(std::string_view h, std::string_view key) {
  for (char q : {'\'', '"'}) {
    const std::string k = fmt::format("{}{}{}", q, key, q);
    std::size_t p = h.find(k);
    if (p == std::string_view::npos) continue;
    p += k.size();
    while (p < h.size() && h[p] == ' ') ++p;
    if (p < h.size() && h[p] == ':') return p + 1;
  }
  return std::string_view::npos;
}

std::size_t skip_spaces(std::string_view h, std::size_t p) {
  while (p < h.size() && (h[p] == ' ' || h[p] == '\t')) ++p;
  return p;
}

}  // namespace

std::vector<std::byte> encode_npy(const ad::View& v) {
  std::string shape = "(";
  for (std::size_t k = 0; k < v.rank(); ++k) shape += fmt::format("{}, ", v.shape()[k]);
  if (v.rank() == 1) shape.resize(shape.size() - 1);          // "(5,)"
  else if (v.rank() > 1) shape.resize(shape.size() - 2);      // "(3, 4)"
  shape += ")";
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                   v.dtype() == ad::DType::f32 ? "<f4" : "<f8", shape);
  // Pad with spaces and end with a newline so that the data starts at a multiple of 64 bytes.
  const std::size_t prefix = 10;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  const std::size_t nbytes = static_cast<std::size_t>(v.size()) * ad::size_of(v.dtype());
  std::vector<std::byte> out(total + nbytes);
  std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
  const auto hlen = static_cast<std::uint16_t>(header.size());
  std::memcpy(out.data() + 8, &hlen, 2);
  std::memcpy(out.data() + prefix, header.data(), header.size());
  if (nbytes) std::memcpy(out.data() + total, v.data(), nbytes);
  return out;
}

NpyArray decode_npy(std::span<const std::byte> f, const std::string& where) {
  auto fail = [&](std::size_t offset, const std::string& what) -> WeightsError {
    return WeightsError(fmt::format("{}: byte offset {}: {}", where, offset, what));
  };
  if (f.size() < 10) throw fail(f.size(), fmt::format("file ends inside the .npy preamble ({} bytes in all)", f.size()));
  if (std::memcmp(f.data(), "\x93NUMPY", 6) != 0) throw fail(0, "not a .npy file (the magic string \\x93NUMPY is missing)");
  const auto major = static_cast<unsigned>(f[6]);
  std::size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = get<std::uint16_t>(f, 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (f.size() < 12) throw fail(f.size(), "file ends inside the .npy preamble");
    hlen = get<std::uint32_t>(f, 8);
    hstart = 12;
  } else {
    throw fail(6, fmt::format(".npy format version {} is not supported (1, 2 and 3 are)", major));
  }
  if (f.size() < hstart + hlen)
    throw fail(f.size(), fmt::format("file is truncated inside the header ({} header bytes announced)", hlen));
  const std::string_view h(reinterpret_cast<const char*>(f.data() + hstart), hlen);

  NpyArray a;
  std::size_t p = find_key(h, "descr");
  if (p == std::string_view::npos) throw fail(hstart, "the header has no 'descr' entry");
  p = skip_spaces(h, p);
  const char q = p < h.size() ? h[p] : '\0';
  const std::size_t e = (q == '\'' || q == '"') ? h.find(q, p + 1) : std::string_view::npos;
  if (e == std::string_view::npos) throw fail(hstart + p, "malformed 'descr' entry");
  const std::string_view descr = h.substr(p + 1, e - p - 1);
  if (descr == "<f4") a.dtype = ad::DType::f32;
  else if (descr == "<f8") a.dtype = ad::DType::f64;
  else
    throw fail(hstart + p, fmt::format("dtype '{}' is not supported (only little-endian float32 '<f4' and float64 "
                                       "'<f8')",
                                       detail::printable(descr)));

  p = find_key(h, "fortran_order");
  if (p == std::string_view::npos) throw fail(hstart, "the header has no 'fortran_order' entry");
  p = skip_spaces(h, p);
  if (h.substr(p, 4) == "True")
    throw fail(hstart + p, "Fortran-order (column-major) arrays are not supported; save a C-order array");
  if (h.substr(p, 5) != "False") throw fail(hstart + p, "malformed 'fortran_order' entry");

  p = find_key(h, "shape");
  if (p == std::string_view::npos) throw fail(hstart, "the header has no 'shape' entry");
  p = skip_spaces(h, p);
  if (p >= h.size() || h[p] != '(') throw fail(hstart + p, "malformed 'shape' entry");
  const std::size_t close = h.find(')', p);
  if (close == std::string_view::npos) throw fail(hstart + p, "malformed 'shape' entry");
  // A Python tuple of non-negative integers: "()", "(5,)", "(2, 3)", optionally with a trailing comma.
  const std::string tuple = detail::printable(h.substr(p, close - p + 1));
  auto bad_shape = [&](const std::string& why) {
    return fail(hstart + p, fmt::format("malformed 'shape' entry {}: {}", tuple, why));
  };
  std::string_view dims = h.substr(p + 1, close - p - 1);
  // Elements are capped so that the byte count cannot overflow and stays under the file cap.
  const std::int64_t max_count = static_cast<std::int64_t>(limits::weights_bytes / 8);
  std::int64_t count = 1, nonzero = 1;
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  dims = trim(dims);
  while (!dims.empty()) {
    const std::size_t comma = dims.find(',');
    const std::string_view item = trim(dims.substr(0, comma));
    if (item.empty()) throw bad_shape("an empty dimension");
    std::int64_t d = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), d);
    if (ec != std::errc() || end != item.data() + item.size() || d < 0)
      throw bad_shape(fmt::format("\"{}\" is not a non-negative integer (dimensions are separated by commas)",
                                  detail::printable(item)));
    if (a.shape.size() == ad::max_rank)
      throw fail(hstart + p, fmt::format("shape {} has more than {} dimensions", tuple, ad::max_rank));
    a.shape.push_back(d);
    // The product of the non-zero dimensions is capped too, so that (0, 2^62) is refused like
    // (1, 2^62); count <= nonzero cannot overflow then.
    if (d > 0) {
      if (nonzero > max_count / d)
        throw fail(hstart + p, fmt::format("shape {} has more than {} elements", tuple, max_count));
      nonzero *= d;
    }
    count *= d;
    if (comma == std::string_view::npos) {
      if (a.shape.size() == 1) {
        // "(5)" is a parenthesised integer in Python, not a tuple; NumPy writes "(5,)".
        throw bad_shape("a one-dimensional shape needs a trailing comma, as in (5,)");
      }
      break;
    }
    dims = trim(dims.substr(comma + 1));
  }
  const std::size_t data_start = hstart + hlen;
  const std::size_t nbytes = static_cast<std::size_t>(count) * ad::size_of(a.dtype);
  if (f.size() - data_start < nbytes)
    throw fail(f.size(), fmt::format("file is truncated: {} needs {} bytes of data from offset {}, {} are present",
                                     ad::describe(a.dtype, a.shape), nbytes, data_start, f.size() - data_start));
  if (f.size() - data_start > nbytes)
    throw fail(data_start + nbytes, fmt::format("{} unexpected bytes after the data of {}",
                                                f.size() - data_start - nbytes, ad::describe(a.dtype, a.shape)));
  a.bytes.assign(f.begin() + static_cast<std::ptrdiff_t>(data_start), f.end());
  return a;
}

void save_npy(const std::filesystem::path& path, const ad::View& value) { write_all(path, encode_npy(value)); }

NpyArray load_npy(const std::filesystem::path& path) { return decode_npy(read_all(path), path.string()); }

// ---- .npz: a zip archive of .npy files -------------------------------------------------------------

namespace {

constexpr std::uint32_t local_sig = 0x04034b50, central_sig = 0x02014b50, end_sig = 0x06054b50;
constexpr std::uint16_t dos_date_1980_01_01 = (0 << 9) | (1 << 5) | 1;

std::uint32_t crc_of(std::span<const std::byte> d) {
  uLong crc = crc32(0L, Z_NULL, 0);
  std::size_t done = 0;
  while (done < d.size()) {  // crc32 takes a 32-bit length
    const auto n = static_cast<uInt>(std::min<std::size_t>(d.size() - done, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(d.data() + done), n);
    done += n;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

void save_npz(const std::filesystem::path& path, const std::vector<std::pair<std::string, ad::View>>& tensors) {
  std::vector<std::byte> out, central;
  std::set<std::string> seen;
  for (const auto& [name, view] : tensors) {
    if (name.empty() || !seen.insert(name).second)
      throw WeightsError(fmt::format("save_npz {}: {} tensor name \"{}\"", path.string(),
                                     name.empty() ? "empty" : "duplicate", name));
    const std::string entry = name + ".npy";
    const std::vector<std::byte> data = encode_npy(view);
    if (data.size() >= 0xffffffffu || out.size() >= 0xffffffffu || entry.size() > 0xffff)
      throw WeightsError(fmt::format("save_npz {}: tensor \"{}\" makes the archive larger than 4 GiB (zip64 is not "
                                     "written); save it with save_npy",
                                     path.string(), name));
    const std::uint32_t crc = crc_of(data), size = static_cast<std::uint32_t>(data.size());
    const auto offset = static_cast<std::uint32_t>(out.size());
    // Local file header, then the stored (uncompressed) data.
    put<std::uint32_t>(out, local_sig);
    put<std::uint16_t>(out, 20);  // version needed: 2.0
    put<std::uint16_t>(out, 0);   // flags
    put<std::uint16_t>(out, 0);   // method: stored
    put<std::uint16_t>(out, 0);   // time
    put<std::uint16_t>(out, dos_date_1980_01_01);
    put<std::uint32_t>(out, crc);
    put<std::uint32_t>(out, size);
    put<std::uint32_t>(out, size);
    put<std::uint16_t>(out, static_cast<std::uint16_t>(entry.size()));
    put<std::uint16_t>(out, 0);  // extra field length
    out.insert(out.end(), reinterpret_cast<const std::byte*>(entry.data()),
               reinterpret_cast<const std::byte*>(entry.data()) + entry.size());
    out.insert(out.end(), data.begin(), data.end());
    // Its central directory record.
    put<std::uint32_t>(central, central_sig);
    put<std::uint16_t>(central, 20);  // version made by
    put<std::uint16_t>(central, 20);  // version needed
    put<std::uint16_t>(central, 0);
    put<std::uint16_t>(central, 0);
    put<std::uint16_t>(central, 0);
    put<std::uint16_t>(central, dos_date_1980_01_01);
    put<std::uint32_t>(central, crc);
    put<std::uint32_t>(central, size);
    put<std::uint32_t>(central, size);
    put<std::uint16_t>(central, static_cast<std::uint16_t>(entry.size()));
    put<std::uint16_t>(central, 0);  // extra
    put<std::uint16_t>(central, 0);  // comment
    put<std::uint16_t>(central, 0);  // disk
    put<std::uint16_t>(central, 0);  // internal attributes
    put<std::uint32_t>(central, 0);  // external attributes
    put<std::uint32_t>(central, offset);
    central.insert(central.end(), reinterpret_cast<const std::byte*>(entry.data()),
                   reinterpret_cast<const std::byte*>(entry.data()) + entry.size());
  }
  if (tensors.size() > 0xffff || out.size() + central.size() >= 0xffffffffu)
    throw WeightsError(fmt::format("save_npz {}: too many or too large tensors for a zip without zip64", path.string()));
  const auto cd_offset = static_cast<std::uint32_t>(out.size());
  out.insert(out.end(), central.begin(), central.end());
  put<std::uint32_t>(out, end_sig);
  put<std::uint16_t>(out, 0);
  put<std::uint16_t>(out, 0);
  put<std::uint16_t>(out, static_cast<std::uint16_t>(tensors.size()));
  put<std::uint16_t>(out, static_cast<std::uint16_t>(tensors.size()));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(central.size()));
  put<std::uint32_t>(out, cd_offset);
  put<std::uint16_t>(out, 0);  // comment length
  write_all(path, out);
}

std::vector<std::pair<std::string, NpyArray>> decode_npz(std::span<const std::byte> f, const std::string& file) {
  auto fail = [&](std::size_t offset, const std::string& what) -> WeightsError {
    return WeightsError(fmt::format("{}: byte offset {}: {}", file, offset, what));
  };
  // Every field is read through this: an offset computed from the file's own numbers is checked
  // against the file's size before anything is read there, without overflowing.
  auto at = [&]<class U>(std::uint64_t offset, U*, const char* what) -> U {
    if (offset > f.size() || f.size() - offset < sizeof(U))
      throw fail(f.size(), fmt::format("{} at byte offset {} lies past the end of the file ({} bytes): the file is "
                                       "truncated or damaged",
                                       what, offset, f.size()));
    return get<U>(f, static_cast<std::size_t>(offset));
  };
  auto u16 = [&](std::uint64_t o, const char* what) { return at(o, static_cast<std::uint16_t*>(nullptr), what); };
  auto u32 = [&](std::uint64_t o, const char* what) { return at(o, static_cast<std::uint32_t*>(nullptr), what); };
  auto u64 = [&](std::uint64_t o, const char* what) { return at(o, static_cast<std::uint64_t*>(nullptr), what); };

  // The end-of-central-directory record is the last 22 bytes plus an optional comment.
  std::size_t eocd = std::string::npos;
  if (f.size() >= 22) {
    const std::size_t lowest = f.size() >= 22 + 0xffff ? f.size() - 22 - 0xffff : 0;
    for (std::size_t p = f.size() - 22 + 1; p-- > lowest;)
      if (get<std::uint32_t>(f, p) == end_sig) {
        eocd = p;
        break;
      }
  }
  if (eocd == std::string::npos)
    throw fail(f.size(), "no zip end-of-central-directory record: the file is truncated or is not a .npz archive");
  const std::uint16_t count = u16(eocd + 10, "the entry count");
  const std::uint32_t cd_size = u32(eocd + 12, "the directory size"), cd_offset = u32(eocd + 16, "the directory offset");
  if (count == 0xffff || cd_offset == 0xffffffffu)
    throw fail(eocd, "zip64 archives (larger than 4 GiB or 65535 entries) are not supported");
  if (std::uint64_t{cd_offset} + cd_size > eocd)
    throw fail(eocd, fmt::format("the central directory [{}, {}) runs past its end record: the file is damaged",
                                 cd_offset, std::uint64_t{cd_offset} + cd_size));
  std::vector<std::pair<std::string, NpyArray>> out;
  std::uint64_t inflated_total = 0;
  std::size_t p = cd_offset;
  for (std::uint16_t k = 0; k < count; ++k) {
    if (p + 46 > eocd || u32(p, "a central directory record") != central_sig)
      throw fail(p, fmt::format("central directory record {} of {} is missing or malformed", k + 1, count));
    const std::uint16_t flags = u16(p + 8, "flags"), method = u16(p + 10, "method");
    const std::uint32_t crc = u32(p + 16, "CRC");
    std::uint64_t csize = u32(p + 20, "size"), usize = u32(p + 24, "size");
    const std::uint16_t nlen = u16(p + 28, "name length"), xlen = u16(p + 30, "extra length"),
                        clen = u16(p + 32, "comment length");
    std::uint64_t local = u32(p + 42, "local header offset");
    const std::size_t record_end = p + 46 + nlen + xlen + clen;
    if (record_end > eocd) throw fail(p, "central directory record runs past the directory");
    const std::string name(reinterpret_cast<const char*>(f.data() + p + 46), nlen);
    const std::string shown = detail::printable(name);
    // Extra fields: (id, length, data) records that must tile the extra area exactly.  A zip64
    // field holds the 64-bit values of the 32-bit fields set to 0xffffffff, in this order.
    const std::size_t extra_end = p + 46 + nlen + xlen;
    for (std::size_t x = p + 46 + nlen; x < extra_end;) {
      if (extra_end - x < 4) throw fail(x, fmt::format("entry \"{}\": extra field header cut short", shown));
      const std::uint16_t id = u16(x, "extra field id"), len = u16(x + 2, "extra field length");
      if (len > extra_end - x - 4)
        throw fail(x, fmt::format("entry \"{}\": extra field of {} bytes runs past its record ({} bytes left)", shown,
                                  len, extra_end - x - 4));
      if (id == 0x0001) {
        std::size_t y = x + 4;
        const std::size_t end = y + len;
        for (std::uint64_t* v : {&usize, &csize, &local}) {
          if (*v != 0xffffffffu) continue;
          if (end - y < 8) throw fail(y, fmt::format("entry \"{}\": zip64 extra field too short", shown));
          *v = u64(y, "zip64 value");
          y += 8;
        }
      }
      x += 4 + std::size_t{len};
    }
    if (flags & 1) throw fail(p, fmt::format("entry \"{}\" is encrypted", shown));
    if (method != 0 && method != 8)
      throw fail(p, fmt::format("entry \"{}\" uses compression method {} (only stored and deflate are supported)", shown,
                                method));
    if (local >= cd_offset || cd_offset - local < 30 || u32(local, "a local header") != local_sig)
      throw fail(local < f.size() ? local : f.size(),
                 fmt::format("local header of entry \"{}\" (at byte offset {}) is missing or malformed", shown, local));
    const std::uint64_t data = local + 30 + u16(local + 26, "name length") + u16(local + 28, "extra length");
    if (data > cd_offset || csize > cd_offset - data)
      throw fail(f.size(), fmt::format("entry \"{}\" ({} bytes from offset {}) runs past the end of the data: the "
                                       "file is truncated or damaged",
                                       shown, csize, data));
    std::span<const std::byte> stored(f.data() + data, static_cast<std::size_t>(csize));
    std::vector<std::byte> inflated;
    if (method == 8) {
      // deflate cannot compress by more than about 1032:1
      if (usize > csize * 1100 + 1024)
        throw fail(p, fmt::format("entry \"{}\" announces {} bytes from {} compressed: the directory is damaged", shown,
                                  usize, csize));
      if (usize > limits::weights_bytes - inflated_total)
        throw fail(p, fmt::format("entry \"{}\" announces {} bytes: more than the {} bytes a .npz may decompress to",
                                  shown, usize, limits::weights_bytes));
      inflated_total += usize;
      try {
        inflated.resize(static_cast<std::size_t>(usize));
      } catch (const std::bad_alloc&) {
        throw fail(p, fmt::format("entry \"{}\": cannot allocate {} bytes to decompress it", shown, usize));
      }
      z_stream z{};
      if (inflateInit2(&z, -MAX_WBITS) != Z_OK) throw fail(data, "zlib initialisation failed");
      // zlib counts in 32 bits: feed the input and offer the output in pieces.
      z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(stored.data()));
      z.next_out = reinterpret_cast<Bytef*>(inflated.data());
      std::uint64_t in_left = csize, out_left = usize;
      int rc = Z_OK;
      while (rc == Z_OK) {  // Z_OK means progress was made; anything else ends the loop
        if (z.avail_in == 0 && in_left > 0) {
          z.avail_in = static_cast<uInt>(std::min<std::uint64_t>(in_left, 1u << 30));
          in_left -= z.avail_in;
        }
        if (z.avail_out == 0 && out_left > 0) {
          z.avail_out = static_cast<uInt>(std::min<std::uint64_t>(out_left, 1u << 30));
          out_left -= z.avail_out;
        }
        rc = inflate(&z, Z_NO_FLUSH);
      }
      const std::uint64_t produced = z.total_out;
      inflateEnd(&z);
      if (rc != Z_STREAM_END || produced != usize)
        throw fail(data, fmt::format("entry \"{}\": corrupt deflate data ({} of {} bytes decoded)", shown, produced,
                                     usize));
      stored = inflated;
    } else if (csize != usize) {
      throw fail(p, fmt::format("stored entry \"{}\" has different sizes ({} and {})", shown, csize, usize));
    }
    if (crc_of(stored) != crc)
      throw fail(data, fmt::format("entry \"{}\": CRC-32 mismatch: the data is damaged", shown));
    std::string key = name;
    if (key.size() > 4 && key.ends_with(".npy")) key.resize(key.size() - 4);
    out.emplace_back(key, decode_npy(stored, file + ":" + shown));
    p = record_end;
  }
  return out;
}

std::vector<std::pair<std::string, NpyArray>> load_npz(const std::filesystem::path& path) {
  return decode_npz(read_all(path), path.string());
}

// ---- whole models ------------------------------------------------------------------------------------

void save(const Module& model, const std::filesystem::path& path) {
  std::vector<std::pair<std::string, ad::View>> tensors;
  for (const auto& p : model.parameters()) tensors.emplace_back(p->name(), p->view());
  save_npz(path, tensors);
}

void load(Module& model, const std::filesystem::path& path) {
  const ParameterList params = model.parameters();
  std::vector<std::pair<std::string, NpyArray>> file = load_npz(path);  // everything in temporaries first
  std::map<std::string, const NpyArray*> by_name;
  for (const auto& [name, a] : file)
    if (!by_name.emplace(name, &a).second)
      throw WeightsError(fmt::format("{}: tensor \"{}\" appears twice", path.string(), name));
  std::set<std::string> wanted;
  for (const auto& p : params) {
    wanted.insert(p->name());
    auto it = by_name.find(p->name());
    if (it == by_name.end())
      throw WeightsError(fmt::format("{}: no tensor \"{}\" ({}) for the model's parameter; the file holds: {}",
                                     path.string(), p->name(), ad::describe(p->dtype(), p->shape()), [&] {
                                       std::string s;
                                       for (const auto& [n, a] : file)
                                         s += fmt::format("{}{} {}", s.empty() ? "" : ", ", n, ad::describe(a.dtype, a.shape));
                                       return s.empty() ? std::string("nothing") : s;
                                     }()));
    const NpyArray& a = *it->second;
    if (a.dtype != p->dtype() || a.shape != p->shape())
      throw WeightsError(fmt::format("{}: tensor \"{}\" is {} but the model's parameter is {}", path.string(),
                                     p->name(), ad::describe(a.dtype, a.shape), ad::describe(p->dtype(), p->shape())));
  }
  for (const auto& [name, a] : file)
    if (!wanted.count(name))
      throw WeightsError(fmt::format("{}: tensor \"{}\" ({}) matches no parameter of the model", path.string(), name,
                                     ad::describe(a.dtype, a.shape)));
  // Every check passed: commit.  Copying into the existing buffers cannot fail.
  for (const auto& p : params) {
    const NpyArray& a = *by_name.at(p->name());
    void* dst = p->dtype() == ad::DType::f32 ? static_cast<void*>(p->array<float>().data())
                                             : static_cast<void*>(p->array<double>().data());
    if (!a.bytes.empty()) std::memcpy(dst, a.bytes.data(), a.bytes.size());
  }
}

}  // namespace nn
