// Helpers shared by the inspection files (autodiff/inspect*.cpp); not part of the public interface.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "autodiff/inspect.hpp"

namespace ad::inspect_detail {

/// The entry's name, or "#<entry>".
std::string label(const Tape& t, std::uint32_t entry);
/// "#7 layer1.z" or "#7".
std::string index_label(const Tape& t, std::uint32_t entry);
/// The op as shown in listings ("add", "matmul", "leaf", "const").
std::string op_text(const Tape& t, std::uint32_t entry);
/// How an argument is shown: its name, "#<entry>", or for an unnamed element pick "W[1,2]".
std::string operand_text(const Tape& t, std::uint32_t a);
/// "(x, 2)", "(layer1.W, #4)", "(W, [1,2])": argument names, #indices and recorded constants.
std::string args_text(const Tape& t, std::uint32_t entry);
/// The constant of a scalar op with one (add_c, mul_c, pow_c, ...), recovered from the recorded
/// value and partial; nullopt for other entries or where it cannot be recovered.
std::optional<double> scalar_constant(const Tape& t, std::uint32_t entry);

/// The adjoint of an entry in a gradient store, or nullopt if it is a tensor nothing flowed into
/// (or the store does not cover the entry).
std::optional<View> adjoint_of(const Tape& t, const GradStore& g, std::uint32_t entry);
/// Whether the store is a current gradient of this tape; throws ForeignHandleError/StaleHandleError.
void check_store(const Tape& t, const GradStore& g, const char* what);

/// Flat position of the first NaN or infinite element of v, or -1.
std::int64_t first_non_finite(const View& v);
/// One element formatted in full (shortest round-trip form of its own type).
std::string element_text(const View& v, std::int64_t i);

/// Listing lines of the given entries with aligned columns; g may be null (no adjoints).
std::vector<std::string> lines(const Tape& t, std::span<const std::uint32_t> entries, const GradStore* g,
                               const ListOptions& opt);

/// Whether entry e passes the prefix filter, given the groups from entry_groups.
bool matches_prefix(const Tape& t, const std::vector<std::string>& groups, std::uint32_t e, std::string_view prefix);

/// The distinct arguments of entry i that take a gradient, in argument order.
std::vector<std::uint32_t> distinct_grad_args(const Tape& t, std::uint32_t i);

/// For a rule entry `from` whose backward step added to the adjoint of `to`: fills term.products
/// with the products whose sum is the amount at flat element `element` (a matmul: Σ_j W_ji δ_j), or
/// term.note for other rules it knows; leaves both empty for rules it does not know.
void rule_terms(const Tape& t, const GradStore& s, std::uint32_t from, std::uint32_t to, std::int64_t element,
                Term& term);

/// Length of the valid UTF-8 sequence starting at s[i], or 0 if the bytes there are not one (the
/// DOT picture and the explorer page replace such bytes).
std::size_t utf8_length(std::string_view s, std::size_t i);

}  // namespace ad::inspect_detail
