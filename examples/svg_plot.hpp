// A small SVG line-chart writer for the examples: panels side by side, each with axes, ticks, a
// title, and one polyline per series (linear or logarithmic y axis).  No external tools.
#pragma once

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace svg {

struct Series {
  std::string label;
  std::string color;     ///< any SVG colour: "#1f77b4"
  std::vector<double> y; ///< y[k] is plotted at x = x0 + k
};

struct Panel {
  std::string title;
  std::string y_label;
  bool log_y = false;    ///< logarithmic y axis (values <= 0 are left out)
  std::vector<Series> series;
};

namespace detail {

inline std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '<') r += "&lt;";
    else if (c == '>') r += "&gt;";
    else if (c == '&') r += "&amp;";
    else r += c;
  }
  return r;
}

/// A tick label: "0.5", "1e-03".
inline std::string tick(double v, bool log_y) {
  if (log_y) return fmt::format("1e{}", static_cast<int>(std::lround(v)));
  if (std::fabs(v) < 1e-12) return "0";
  return std::fabs(v) >= 1e4 || std::fabs(v) < 1e-3 ? fmt::format("{:.0e}", v) : fmt::format("{:.3g}", v);
}

}  // namespace detail

/// Renders the panels side by side; x runs from x0 to x0 + (longest series − 1).
inline std::string render(const std::string& title, const std::string& x_label, const std::vector<Panel>& panels,
                          double x0 = 1.0) {
  const double pw = 380, ph = 300, left = 70, top = 60, gap = 40, bottom = 90;
  const double width = left + panels.size() * (pw + gap), height = top + ph + bottom;
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.0f}\" y=\"24\" font-size=\"16\">{}</text>\n",
      width, height, left, detail::escape(title));
  for (std::size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    const double ox = left + p * (pw + gap), oy = top;
    // Data range.
    double lo = INFINITY, hi = -INFINITY;
    std::size_t n = 0;
    for (const Series& s : panel.series) {
      n = std::max(n, s.y.size());
      for (double v : s.y) {
        if (panel.log_y && !(v > 0)) continue;
        const double t = panel.log_y ? std::log10(v) : v;
        lo = std::min(lo, t), hi = std::max(hi, t);
      }
    }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) hi = lo + 1;
    // Ticks: every decade on a log axis; on a linear one a step of 1, 2 or 5 × 10^k giving 4–10 steps.
    double step = 1;
    if (panel.log_y) {
      lo = std::floor(lo), hi = std::ceil(hi);
      if (hi == lo) hi = lo + 1;
    } else {
      const double raw = (hi - lo) / 5, decade = std::pow(10.0, std::floor(std::log10(raw)));
      step = raw / decade < 1.5 ? decade : raw / decade < 3.5 ? 2 * decade : raw / decade < 7.5 ? 5 * decade : 10 * decade;
      lo = std::floor(lo / step) * step, hi = std::ceil(hi / step) * step;
    }
    const double xmax = std::max<double>(1, static_cast<double>(n) - 1);
    auto X = [&](double k) { return ox + pw * k / xmax; };
    auto Y = [&](double t) { return oy + ph - ph * (t - lo) / (hi - lo); };
    out += fmt::format("<text x=\"{:.0f}\" y=\"{:.0f}\" font-size=\"14\">{}</text>\n", ox, oy - 12,
                       detail::escape(panel.title));
    out += fmt::format("<rect x=\"{:.0f}\" y=\"{:.0f}\" width=\"{:.0f}\" height=\"{:.0f}\" fill=\"none\" stroke=\"#444\"/>\n",
                       ox, oy, pw, ph);
    const int steps = static_cast<int>(std::lround((hi - lo) / step));
    for (int k = 0; k <= steps; ++k) {
      const double t = lo + step * k, y = Y(t);
      out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", ox, y,
                         ox + pw, y);
      out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", ox - 5, y + 4,
                         detail::tick(t, panel.log_y));
    }
    for (int k = 0; k <= 5; ++k) {
      const double kk = xmax * k / 5, x = X(kk);
      out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x, oy + ph + 16,
                         detail::tick(x0 + kk, false));
    }
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", ox + pw / 2, oy + ph + 34,
                       detail::escape(x_label));
    out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 {:.1f} {:.1f})\">{}</text>\n",
                       ox - 50, oy + ph / 2, ox - 50, oy + ph / 2, detail::escape(panel.y_label));
    // Series and legend.
    for (std::size_t s = 0; s < panel.series.size(); ++s) {
      const Series& series = panel.series[s];
      std::string points;
      for (std::size_t k = 0; k < series.y.size(); ++k) {
        const double v = series.y[k];
        if (panel.log_y && !(v > 0)) continue;
        points += fmt::format("{:.1f},{:.1f} ", X(static_cast<double>(k)), Y(panel.log_y ? std::log10(v) : v));
      }
      out += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", series.color,
                         points);
      const double ly = oy + ph + 52 + 16 * static_cast<double>(s);
      out += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                         ox, ly - 4, ox + 24, ly - 4, series.color);
      out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", ox + 30, ly, detail::escape(series.label));
    }
  }
  return out + "</svg>\n";
}

/// Writes the chart to `path`; returns false if the file cannot be written.
inline bool write(const std::string& path, const std::string& svg_text) {
  std::ofstream f(path, std::ios::binary);
  f << svg_text;
  return static_cast<bool>(f);
}

}  // namespace svg
