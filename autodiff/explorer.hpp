// The tape explorer: one self-contained web page to click through a computation and its reverse
// sweep.
//
//   ad::Tensor loss = ...;                               // record a computation on `tape`
//   ad::Explorer page = ad::write_explorer(tape, loss, "tape.html");
//   fmt::print("{}\n", page.message);                   // open tape.html in a browser
//
// The page holds everything it needs (no network, no external scripts or fonts): the graph laid out
// by Graphviz's `dot` (one cluster per layer, as in write_picture), a listing of every entry, and the
// reverse sweep recorded by step_through.  Clicking a node shows its op, shape, value, adjoint and
// the contributions that summed to that adjoint; the step buttons (or the arrow keys) replay the
// sweep one entry at a time; names can be searched; NaN and infinite values are marked.  Without
// Graphviz the page shows the listing alone and says so.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "autodiff/inspect.hpp"

namespace ad {

struct ExplorerOptions {
  /// The page's title; empty: "deltagrad tape explorer".
  std::string title{};
  /// Lay the graph out with Graphviz's `dot` when it is on PATH.  Off: the listing alone.
  bool graph = true;
  /// Above this many entries the graph is left out (the listing is always there).
  std::size_t max_graph = 3000;
  /// Tensors with more elements than this are shown by their statistics and first elements only
  /// (values, adjoints and contributions alike), which keeps the page small for large batches.
  std::int64_t max_elements = 64;
};

/// What write_explorer wrote.
struct Explorer {
  std::filesystem::path path{};
  bool graph = false;       ///< the page has the Graphviz graph (else the listing alone)
  std::size_t entries = 0;  ///< entries shown (the sink not counted)
  std::size_t steps = 0;    ///< backward steps the page replays (those where something flowed)
  std::size_t bytes = 0;    ///< size of the page
  std::string message{};    ///< what was written, and why the graph is missing if it is
};

/// Runs the reverse sweep for `loss` entry by entry (step_through; it becomes the tape's current
/// gradient) and writes the explorer page to `path`.  Throws ShapeError if `loss` has more than one
/// element, PictureError if the file cannot be written; if `dot` fails, the page is written without
/// the graph and the message says why.
Explorer write_explorer(Tape& tape, const Tensor& loss, const std::filesystem::path& path,
                        const ExplorerOptions& opt = {});
/// The same for a scalar output.
Explorer write_explorer(Tape& tape, const Var& loss, const std::filesystem::path& path,
                        const ExplorerOptions& opt = {});

}  // namespace ad
