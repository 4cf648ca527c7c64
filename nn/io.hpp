// Weights on disk in NumPy's formats: one tensor per .npy file, or many in one .npz (a zip archive
// of .npy files).  `numpy.load` reads both; files written by NumPy (`np.save`, `np.savez`,
// `np.savez_compressed`) are read back here, for float32 and float64 little-endian C-order arrays
// of rank 0..4.
//
// Every reader validates what it reads and throws nn::WeightsError naming the file, the byte offset
// and the problem.  Loading into a model checks names, shapes and dtypes against the model and
// reads every tensor into temporaries first: a failed load leaves the model unchanged.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/array.hpp"
#include "nn/error.hpp"
#include "nn/module.hpp"

namespace nn {

/// A tensor read from a .npy file: its element type, shape and raw little-endian elements.
struct NpyArray {
  ad::DType dtype = ad::DType::f32;
  ad::Shape shape;
  std::vector<std::byte> bytes;

  ad::View view() const { return ad::View(dtype, shape, bytes.data()); }
};

/// Writes one tensor as a .npy file (format 1.0).  The file is written to a temporary name and
/// renamed, so an existing file is never left half-written.
void save_npy(const std::filesystem::path& path, const ad::View& value);
/// Reads a .npy file.
NpyArray load_npy(const std::filesystem::path& path);
/// Reads a .npy file whose dtype must be T; throws WeightsError naming both dtypes otherwise.
template <ad::Element T>
ad::Array<T> load_npy_as(const std::filesystem::path& path) {
  NpyArray a = load_npy(path);
  if (a.dtype != ad::dtype_of<T>)
    throw WeightsError(fmt::format("{}: holds {}, expected {}", path.string(), ad::describe(a.dtype, a.shape),
                                   ad::to_string(ad::dtype_of<T>)));
  return ad::Array<T>(a.shape, std::span<const T>(reinterpret_cast<const T*>(a.bytes.data()),
                                                   static_cast<std::size_t>(ad::numel(a.shape))));
}

/// The .npy encoding of a tensor (header and elements), and its parser (`where` names the source
/// in error messages).
std::vector<std::byte> encode_npy(const ad::View& value);
NpyArray decode_npy(std::span<const std::byte> file, const std::string& where);

/// Writes named tensors as a .npz archive of stored (uncompressed) entries "<name>.npy".
void save_npz(const std::filesystem::path& path, const std::vector<std::pair<std::string, ad::View>>& tensors);
/// Reads every entry of a .npz archive (stored or deflated), in archive order, names without ".npy".
std::vector<std::pair<std::string, NpyArray>> load_npz(const std::filesystem::path& path);
/// The same from the bytes of an archive (`where` names the source in error messages).
std::vector<std::pair<std::string, NpyArray>> decode_npz(std::span<const std::byte> file, const std::string& where);

/// Saves a module's parameters by name into one .npz file.
void save(const Module& model, const std::filesystem::path& path);
/// Loads parameters saved by save() into a module.  The file must hold exactly the module's
/// parameter names with the same shapes and dtypes; otherwise WeightsError, and the module is
/// left as it was.
void load(Module& model, const std::filesystem::path& path);

}  // namespace nn
