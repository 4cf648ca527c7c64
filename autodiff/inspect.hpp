// Looking inside a tape: a listing, a one-screen summary, a Graphviz picture, a step-by-step log of
// the reverse sweep, and an opt-in check that finds where a NaN or an infinity first appeared.
//
// Everything here reads the tape through its public interface (args, node, value_view, the op
// descriptors) and runs sweeps through the tape's hooks (SweepHooks); nothing changes what the tape
// computes.  This layer sits on top of the core (tape.hpp knows nothing of it).  Adjoints are shown from the most
// recent gradient while it is current (tape.last_gradient()), or from a Gradients passed in.
//
//   fmt::print("{}", tape);                        // the listing, default options
//   fmt::print("{}", ad::listing(tape, {.prefix = "layer2."}));
//   fmt::print("{}", ad::summary(tape));
//   ad::write_picture(tape, "tape.svg");           // tape.dot, and tape.svg when Graphviz is installed
//   ad::StepLog log = ad::step_through(tape, loss);   // the sweep, entry by entry
//   fmt::print("{}", log.explain("layer1.z", {0, 2}));  // who contributed what to one adjoint
//   ad::check_finite(tape);                        // throws NonFiniteError at the first NaN/inf value
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autodiff/gradients.hpp"
#include "autodiff/tape.hpp"

namespace ad {

/// Writing or rendering a picture failed (names the file or the command).
class PictureError : public Error {
 public:
  using Error::Error;
};

// ---- selecting and listing entries -----------------------------------------------------------------

/// Which entries to show and how much of each.
struct ListOptions {
  /// Only this named entry and the entries it depends on (its arguments, theirs, ...).  Empty: all.
  std::string subtree{};
  /// Only entries whose name starts with this ("layer2." for one nn layer).  An unnamed entry counts
  /// as named "<group>." where <group> is the part before the first '.' of the name of the first
  /// named entry it feeds (so the matmul inside layer2 is in "layer2.").  Empty: all.
  std::string prefix{};
  bool values = true;    ///< show values
  bool adjoints = true;  ///< show adjoints when a gradient is current
  bool full = false;     ///< print every element of tensors, one row a line, after the entry's line
  int elements = 4;      ///< elements shown in a tensor summary
};

/// The entries selected by `opt`, in creation order.  Throws InvalidArgument if `opt.subtree` names
/// no entry.
std::vector<std::uint32_t> select_entries(const Tape& tape, const ListOptions& opt = {});

/// The group ("layer2") of every entry: the part of its name before the first '.', or for an unnamed
/// entry the group of the first named entry it feeds through unnamed entries; empty if none.
/// Index i is entry i (entry 0, the sink, has no group).
std::vector<std::string> entry_groups(const Tape& tape);

/// One line per selected entry: index, name, op, arguments (names, #index or constants), dtype and
/// shape, value, and the adjoint of the most recent gradient while it is current.
std::string listing(const Tape& tape, const ListOptions& opt = {});
/// The same, with the adjoints of `g`.
std::string listing(const Tape& tape, const Gradients& g, const ListOptions& opt = {});
/// The listing line of one entry (no trailing newline), with the current gradient's adjoint if any.
std::string entry_line(const Tape& tape, std::uint32_t entry, const ListOptions& opt = {});

/// "[0.25, -1, 3.5, ...] min -1 max 3.5 mean 0.8": a value or adjoint in a few characters; a
/// rank-0 value is printed in full precision.  `elements` is how many elements to show.
std::string summarise(const View& v, int elements = 4);

// ---- summary ---------------------------------------------------------------------------------------

struct TapeSummary {
  struct Parameter {
    std::uint32_t entry = 0;
    std::string name{};  ///< the entry's name, or "#<entry>"
    DType dtype = DType::f64;
    Shape shape{};
  };
  std::size_t entries = 0;          ///< recorded entries (the sink not counted)
  std::size_t scalar_entries = 0;   ///< scalar entries and scalar-valued rule entries
  std::size_t tensor_entries = 0;
  std::vector<std::pair<std::string, std::size_t>> by_op{};  ///< most frequent first
  std::size_t bytes_used = 0;
  std::size_t bytes_reserved = 0;
  std::vector<Parameter> parameters{};  ///< tensor leaves that require a gradient
  std::int64_t parameter_elements = 0;
  std::size_t scalar_variables = 0;   ///< scalar leaves (tape.variable)
  std::size_t constants = 0;          ///< tensor leaves without gradient (data)
  bool gradient_current = false;
};

TapeSummary summarize(const Tape& tape);
/// The summary as a few lines of text (at most `max_parameters` parameters listed by name).
std::string summary(const Tape& tape, std::size_t max_parameters = 12);

// ---- Graphviz pictures -----------------------------------------------------------------------------

/// The tape as a Graphviz digraph: a node per selected entry (index, name, op, shape, value and
/// adjoint), an edge per argument, and one cluster per group (an nn layer: names "layer<l>.*" and
/// the unnamed ops between them).  Arguments outside the selection appear as dashed stubs.
std::string to_dot(const Tape& tape, const ListOptions& opt = {});

struct PictureOptions {
  ListOptions select{};
  bool render = true;           ///< run Graphviz's dot when it is on PATH
  std::size_t max_render = 3000;  ///< above this many nodes the .dot file is written but not rendered
};

struct Picture {
  std::filesystem::path dot{};  ///< always written
  std::filesystem::path svg{};  ///< written when `rendered`
  bool rendered = false;
  std::string message{};      ///< what was written, or how to render the .dot file
};

/// Writes `path` with extension .dot, then renders it to the same path with extension .svg when
/// Graphviz's `dot` is on PATH.  `path` may end in .svg, .dot or nothing.  Throws PictureError if a
/// file cannot be written or dot fails.
Picture write_picture(const Tape& tape, const std::filesystem::path& path, const PictureOptions& opt = {});

/// The full path of Graphviz's `dot` if it is on PATH, else empty.
std::filesystem::path find_dot();

// ---- step-through backward -------------------------------------------------------------------------

/// What one backward step added to one argument's adjoint.
struct Contribution {
  std::uint32_t to = 0;       ///< the argument entry
  int slot = 0;               ///< its position among the entry's arguments (first one if repeated)
  bool tensor = false;        ///< the argument is a tensor
  double partial = 0.0;       ///< scalar entries: the local partial d value / d argument
  double amount = 0.0;        ///< scalar arguments: what was added (partial × incoming adjoint)
  Array<double> before{};     ///< tensor arguments: the adjoint before the step
  Array<double> after{};      ///< ... and after it; the contribution is after − before
};

/// One entry of the reverse sweep.
struct Step {
  std::uint32_t entry = 0;
  bool rule = false;          ///< a rule entry (tensor op or tensor→scalar bridge)
  bool skipped = false;       ///< nothing flowed in (or it needs no gradient): no contributions
  std::vector<Contribution> contributions{};
};

/// One product in the sum a rule step added to one element, e.g. W_ji × δ_j for a matmul.
struct Product {
  std::string factor_label{};      ///< the factor's element: "layer2.W[1,2]"
  double factor = 0.0;
  std::uint32_t adjoint_entry = 0; ///< the entry whose adjoint is the other factor (the rule's output)
  std::int64_t adjoint_element = 0;
  double adjoint = 0.0;
};

/// One term of an adjoint: what the step of entry `from` added (from = 0: the seed).
struct Term {
  std::uint32_t from = 0;
  double amount = 0.0;
  double partial = 0.0;           ///< local partial for scalar steps; NaN for rule steps
  double incoming = 0.0;          ///< the adjoint of `from` (at the matching element for element-wise rules)
  std::vector<Product> products{};  ///< rule steps the inspector knows (matmul): the amount as a sum of products
  std::string note{};             ///< other known rules (an element pick): what the rule did here
};

struct AdjointTerms {
  std::uint32_t entry = 0;
  std::int64_t element = 0;   ///< flat element index (0 for a scalar)
  double adjoint = 0.0;       ///< the final adjoint at that element
  std::vector<Term> terms{};  ///< in sweep order; their sum, in this order, is the adjoint
};

/// The record of a reverse sweep run entry by entry.  It keeps the gradient it computed, which is
/// the same as tape.gradient(y) gives.  Tensor contributions are copied (before and after): a log
/// costs about twice the adjoints' size per use of each tensor, so keep it to small networks.
class StepLog {
 public:
  StepLog(const Tape& tape, Gradients g, std::uint32_t output, std::vector<Step> steps)
      : tape_(&tape), g_(std::move(g)), output_(output), steps_(std::move(steps)) {}

  const Gradients& gradients() const { return g_; }
  std::uint32_t output() const { return output_; }
  /// Steps in sweep order (from the output down to entry 1).
  const std::vector<Step>& steps() const { return steps_; }

  /// The terms whose sum is the adjoint of `entry` at a flat element index.
  AdjointTerms terms(std::uint32_t entry, std::int64_t element = 0) const;
  /// The same for a named entry and a multi-index ({} for a scalar).  Throws InvalidArgument for an
  /// unknown name, IndexError for a bad index.
  AdjointTerms terms(std::string_view name, std::initializer_list<std::int64_t> index = {}) const;

  /// The terms as text: one line per contribution, and for a term coming through an element-wise
  /// op the terms of that op's own adjoint one level further (so for z^(l) it shows
  /// δ_i = f′(z_i) · Σ_j W_ji δ_j^(l+1) with every W_ji δ_j listed when the next layer's matmul is
  /// recognised).
  std::string explain(std::string_view name, std::initializer_list<std::int64_t> index = {}) const;

  /// The log as text.  With a subtree, the steps of the selected entries; otherwise also the steps
  /// that add to a selected entry (for a layer: the next layer's matmul adding into its a).  Steps
  /// where nothing flowed are left out unless `all` is set.
  std::string format(const ListOptions& opt = {}, bool all = false) const;

 private:
  std::string explain_terms(const AdjointTerms& t, int depth) const;
  std::string products_text(const Term& term, const std::string& pad) const;
  /// "layer2.z[0,1]" when the adjoint of unnamed entry e (at an element) was passed on unchanged
  /// from a named entry (through adds), else empty.
  std::string alias(std::uint32_t e, std::int64_t element) const;
  const Tape* tape_;
  Gradients g_;
  std::uint32_t output_;
  std::vector<Step> steps_;
};

/// Runs the reverse sweep for the output y one entry at a time and records every contribution.
StepLog step_through(Tape& tape, const Var& y);
/// The same for a one-element tensor output (a loss).
StepLog step_through(Tape& tape, const Tensor& y);

// ---- NaN / infinity origin -------------------------------------------------------------------------

/// Checks every recorded value in creation order and throws NonFiniteError at the first entry with
/// a NaN or infinite value (element).  The message has that entry's listing line and its
/// arguments' lines, so the op that produced it can be read off.
void check_finite(const Tape& tape);

/// tape.gradient(y), checking after every backward step that the adjoints it added to are finite.
/// Throws NonFiniteError at the first argument adjoint that turns NaN or infinite, naming that
/// entry (its listing line and its arguments') and the step that made it so.
Gradients checked_gradient(Tape& tape, const Var& y);
Gradients checked_gradient(Tape& tape, const Tensor& y);

}  // namespace ad

/// Lists the tape one entry a line (ad::listing with default options): index, name, op, arguments,
/// value, and the adjoint of the most recent gradient while it is current.
template <>
struct fmt::formatter<ad::Tape> : fmt::formatter<std::string_view> {
  auto format(const ad::Tape& t, fmt::format_context& ctx) const -> fmt::format_context::iterator;
};
