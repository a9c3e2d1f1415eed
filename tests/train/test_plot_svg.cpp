// plot_svg: nice ticks, one polyline per series (broken at NaN), legend, escaping.
#include "lmrl/train/plot_svg.hpp"

#include <cmath>

#include "support/testing.hpp"

using namespace lmrl;

static std::size_t count(const std::string& s, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

TEST_CASE("axis_ticks: 1-2-5 steps inside the range") {
  // span 10 / 5 targets = 2 -> step 2: 0, 2, 4, 6, 8, 10
  CHECK(axis_ticks(0, 10) == std::vector<double>{0, 2, 4, 6, 8, 10});
  // span 0.9 / 5 = 0.18 -> mantissa 1.8 -> step 0.2: 0.2 ... 1.0
  const auto t = axis_ticks(0.1, 1.0);
  REQUIRE(t.size() == 5);
  CHECK(t.front() == doctest::Approx(0.2));
  CHECK(t.back() == doctest::Approx(1.0));
  // span 300 / 5 = 60 -> mantissa 6 -> step 50
  CHECK(axis_ticks(0, 300).size() == 7);
}

TEST_CASE("svg_figure: panels, lines, legend, escaped text") {
  plot_panel reward{"reward & accuracy", "step", "", {}};
  reward.series.push_back({"reward", {1, 2, 3, 4}, {0.1, 0.2, NAN, 0.4}});  // NaN breaks the line in two
  reward.series.push_back({"accuracy <held-out>", {1, 2, 3, 4}, {0, 0.5, 0.5, 1}});
  plot_panel len{"length", "step", "tokens", {{"mean", {1, 2}, {10, 10}}}};  // a flat line still plots
  const std::string svg = svg_figure({reward, len}, 2);
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"840\" height=\"280\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(count(svg, "<polyline") == 4);  // 2 pieces + 1 + 1
  CHECK(svg.find("reward &amp; accuracy") != std::string::npos);
  CHECK(svg.find("accuracy &lt;held-out&gt;") != std::string::npos);
  CHECK(svg.find(">tokens</text>") != std::string::npos);
  CHECK_THROWS_WITH_AS(svg_figure({}, 0), doctest::Contains("columns = 0"), error);
}

TEST_CASE("ten series get ten colors, the eleventh is dashed, and the legend can sit bottom right") {
  plot_panel p{"many", "x", "y", {}, true};
  for (int k = 0; k < 11; ++k) {
    std::string name = "s";  // appended, not "s" + ...: GCC 12 -Wrestrict misfires on that inlined insert
    name += std::to_string(k);
    p.series.push_back({name, {0, 1}, {0, static_cast<double>(k)}});
  }
  const std::string svg = svg_figure({p}, 1);
  std::vector<std::string> colors;
  for (std::size_t at = 0; (at = svg.find("<polyline fill=\"none\" stroke=\"", at)) != std::string::npos; ++at)
    colors.push_back(svg.substr(at + 30, 7));
  REQUIRE(colors.size() == 11);
  for (int a = 0; a < 10; ++a)
    for (int b = a + 1; b < 10; ++b) CHECK(colors[static_cast<std::size_t>(a)] != colors[static_cast<std::size_t>(b)]);
  CHECK(colors[10] == colors[0]);
  std::size_t dashed = 0;
  for (std::size_t at = 0; (at = svg.find("stroke-dasharray", at)) != std::string::npos; ++at) ++dashed;
  CHECK(dashed == 2);  // the eleventh line and its legend sample
  // Bottom right: the legend sits lower than the default one at the top left.
  const auto first_legend_y = [](const std::string& figure) {
    std::string key = ">";
    key += "s0</text>";
    const auto t = figure.rfind("y=\"", figure.find(key));
    return std::stod(figure.substr(t + 3));
  };
  plot_panel top_left = p;
  top_left.legend_bottom_right = false;
  CHECK(first_legend_y(svg) > first_legend_y(svg_figure({top_left}, 1)) + 20);
}
