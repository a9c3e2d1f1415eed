// plot_svg: line charts as standalone SVG text, no dependency. A figure is a
// grid of panels; each panel has its own axes (ticks at 1-2-5 steps), one
// polyline per series and a legend. NaN points break a line.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "lmrl/error.hpp"

namespace lmrl {

struct plot_series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;
};

struct plot_panel {
  std::string title;
  std::string x_label = "step";
  std::string y_label;
  std::vector<plot_series> series;
  bool legend_bottom_right = false;  // where rising curves leave room (default: top left)
};

namespace detail {

inline std::string svg_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

inline std::string svg_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

inline std::string tick_label(double v, double step) {
  char buf[32];
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  if (std::fabs(v) >= 1e5 || (v != 0 && std::fabs(v) < 1e-4))
    std::snprintf(buf, sizeof buf, "%.1e", v);
  else
    std::snprintf(buf, sizeof buf, "%.*f", std::min(decimals, 6), v);
  return buf;
}

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over [lo, hi].
inline double nice_step(double lo, double hi, int target = 5) {
  const double span = hi - lo;
  if (!(span > 0)) return 1;
  const double raw = span / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

}  // namespace detail

// The ticks of an axis over [lo, hi]: multiples of a nice step, inside the range.
inline std::vector<double> axis_ticks(double lo, double hi, int target = 5) {
  const double step = detail::nice_step(lo, hi, target);
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
  return ticks;
}

// The SVG document of panels in a grid of `columns` columns.
inline std::string svg_figure(const std::vector<plot_panel>& panels, int columns = 2, int panel_width = 420,
                              int panel_height = 280) {
  detail::require(columns >= 1, "svg_figure: columns = ", columns, " must be at least 1");
  // Ten colors (the first seven in the order earlier reports used), then dashed lines.
  static const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  constexpr std::size_t palette = sizeof colors / sizeof *colors;
  const int n = static_cast<int>(panels.size());
  const int rows = std::max(1, (n + columns - 1) / columns);
  const int width = columns * panel_width, height = rows * panel_height;
  std::string s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
                  std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " +
                  std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (int p = 0; p < n; ++p) {
    const plot_panel& panel = panels[static_cast<std::size_t>(p)];
    const double ox = (p % columns) * panel_width, oy = (p / columns) * panel_height;
    const double left = ox + 62, right = ox + panel_width - 14, top = oy + 28, bottom = oy + panel_height - 40;
    // Data range over every finite point.
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& ser : panel.series)
      for (std::size_t i = 0; i < std::min(ser.x.size(), ser.y.size()); ++i)
        if (std::isfinite(ser.x[i]) && std::isfinite(ser.y[i])) {
          x0 = std::min(x0, ser.x[i]);
          x1 = std::max(x1, ser.x[i]);
          y0 = std::min(y0, ser.y[i]);
          y1 = std::max(y1, ser.y[i]);
        }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x0 == x1) x0 -= 0.5, x1 += 0.5;
    if (y0 == y1) y0 -= y0 == 0 ? 1 : std::fabs(y0) * 0.1, y1 += y1 == 0 ? 1 : std::fabs(y1) * 0.1;
    const double pad = (y1 - y0) * 0.05;
    y0 -= pad;
    y1 += pad;
    const auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (right - left); };
    const auto py = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };

    s += "<g>\n<text x=\"" + detail::svg_number((left + right) / 2) + "\" y=\"" + detail::svg_number(oy + 18) +
         "\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" + detail::svg_escape(panel.title) +
         "</text>\n";
    s += "<rect x=\"" + detail::svg_number(left) + "\" y=\"" + detail::svg_number(top) + "\" width=\"" +
         detail::svg_number(right - left) + "\" height=\"" + detail::svg_number(bottom - top) +
         "\" fill=\"none\" stroke=\"#444\"/>\n";
    const double xs = detail::nice_step(x0, x1), ys = detail::nice_step(y0, y1);
    for (double t : axis_ticks(x0, x1)) {
      const std::string X = detail::svg_number(px(t));
      s += "<line x1=\"" + X + "\" y1=\"" + detail::svg_number(bottom) + "\" x2=\"" + X + "\" y2=\"" +
           detail::svg_number(bottom + 4) + "\" stroke=\"#444\"/><text x=\"" + X + "\" y=\"" +
           detail::svg_number(bottom + 16) + "\" text-anchor=\"middle\">" + detail::tick_label(t, xs) + "</text>\n";
    }
    for (double t : axis_ticks(y0, y1)) {
      const std::string Y = detail::svg_number(py(t));
      s += "<line x1=\"" + detail::svg_number(left - 4) + "\" y1=\"" + Y + "\" x2=\"" + detail::svg_number(right) +
           "\" y2=\"" + Y + "\" stroke=\"#ddd\"/><text x=\"" + detail::svg_number(left - 6) + "\" y=\"" + Y +
           "\" text-anchor=\"end\" dominant-baseline=\"middle\">" + detail::tick_label(t, ys) + "</text>\n";
    }
    s += "<text x=\"" + detail::svg_number((left + right) / 2) + "\" y=\"" + detail::svg_number(oy + panel_height - 8) +
         "\" text-anchor=\"middle\">" + detail::svg_escape(panel.x_label) + "</text>\n";
    if (!panel.y_label.empty())
      s += "<text transform=\"translate(" + detail::svg_number(ox + 14) + "," + detail::svg_number((top + bottom) / 2) +
           ") rotate(-90)\" text-anchor=\"middle\">" + detail::svg_escape(panel.y_label) + "</text>\n";
    for (std::size_t k = 0; k < panel.series.size(); ++k) {
      const plot_series& ser = panel.series[k];
      const char* color = colors[k % palette];
      const std::string dash = k >= palette ? " stroke-dasharray=\"5,3\"" : "";
      std::string points;
      const auto flush = [&] {
        if (!points.empty())
          s += "<polyline fill=\"none\" stroke=\"" + std::string(color) + "\" stroke-width=\"1.5\"" + dash +
               " points=\"" + points + "\"/>\n";
        points.clear();
      };
      for (std::size_t i = 0; i < std::min(ser.x.size(), ser.y.size()); ++i) {
        if (!std::isfinite(ser.x[i]) || !std::isfinite(ser.y[i])) {
          flush();
          continue;
        }
        if (!points.empty()) points += ' ';
        points += detail::svg_number(px(ser.x[i]));
        points += ',';
        points += detail::svg_number(py(ser.y[i]));
      }
      flush();
      // Legend entry inside the frame: top left, or bottom right (legend_bottom_right).
      const double n = static_cast<double>(panel.series.size()), kk = static_cast<double>(k);
      const double lx = panel.legend_bottom_right ? right - 160 : left + 8;
      const double ly = panel.legend_bottom_right ? bottom - 12 - 14 * (n - 1 - kk) : top + 12 + 14 * kk;
      s += "<line x1=\"" + detail::svg_number(lx) + "\" y1=\"" + detail::svg_number(ly) + "\" x2=\"" +
           detail::svg_number(lx + 18) + "\" y2=\"" + detail::svg_number(ly) + "\" stroke=\"" + color +
           "\" stroke-width=\"2\"" + dash + "/><text x=\"" + detail::svg_number(lx + 22) + "\" y=\"" + detail::svg_number(ly) +
           "\" dominant-baseline=\"middle\">" + detail::svg_escape(ser.name) + "</text>\n";
    }
    s += "</g>\n";
  }
  return s + "</svg>\n";
}

}  // namespace lmrl
