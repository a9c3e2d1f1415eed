// Shared test helpers: seeded random fills, central finite differences, and
// the reader for reference vectors written by the scripts in tools/.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/view.hpp"

namespace lmrl::testing {

// Fills a view with uniform values in [lo, hi) from a fixed seed.
template <class T, std::size_t N>
void fill_uniform(strided_view<T, N> v, std::uint64_t seed, double lo = -1, double hi = 1) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  T* p = v.data;
  for (index_t k = 0; k < v.size(); ++k) p[k] = static_cast<T>(dist(rng));  // contiguous views only
}

// A vector of n uniform values in [lo, hi) from a fixed seed.
template <class T>
std::vector<T> random_vector(std::size_t n, std::uint64_t seed, double lo = -1, double hi = 1) {
  std::vector<T> v(n);
  fill_uniform(vector_view<T>(v.data(), {static_cast<index_t>(n)}), seed, lo, hi);
  return v;
}

// A 0/1 mask of right-padded sequences: row i keeps its first len_i tokens,
// len_i drawn in [min_len, T].
template <class T>
dense<T, 2> random_padding_mask(index_t rows, index_t cols, std::uint64_t seed, index_t min_len = 1) {
  dense<T, 2> m({rows, cols});
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<index_t> len(min_len, cols);
  for (index_t i = 0; i < rows; ++i) {
    const index_t n = len(rng);
    for (index_t j = 0; j < n; ++j) m(i, j) = 1;
  }
  return m;
}

// Central finite difference of a scalar function f(x) at every element of x;
// compares with the analytic gradient. x is modified and restored.
template <class F>
void check_gradient(F&& f, dense<double, 2>& x, const dense<double, 2>& analytic, double h = 1e-6,
                    double rel_tol = 1e-6, double abs_tol = 1e-8) {
  REQUIRE(x.shape() == analytic.shape());
  for (index_t i = 0; i < x.shape()[0]; ++i)
    for (index_t j = 0; j < x.shape()[1]; ++j) {
      const double saved = x(i, j);
      x(i, j) = saved + h;
      const double up = f(x);
      x(i, j) = saved - h;
      const double down = f(x);
      x(i, j) = saved;
      const double numeric = (up - down) / (2 * h);
      const double a = analytic(i, j);
      INFO("gradient at (", i, ", ", j, "): analytic ", a, ", finite difference ", numeric);
      CHECK(std::abs(a - numeric) <= abs_tol + rel_tol * std::max(std::abs(a), std::abs(numeric)));
    }
}

// Reference vectors: a text file of cases written by a tools/ script,
//
//   case <name>
//   <key> <count> <v1> ... <vcount>     (numbers; nan/inf allowed)
//   str <key> <rest of line>            (a string value)
//   end
struct reference_case {
  std::string name;
  std::map<std::string, std::vector<double>> numbers;
  std::map<std::string, std::string> strings;

  const std::vector<double>& at(const std::string& key) const {
    auto it = numbers.find(key);
    if (it == numbers.end()) throw error("reference case " + name + " has no field " + key);
    return it->second;
  }
  double scalar(const std::string& key) const { return at(key).at(0); }
  const std::string& text(const std::string& key) const {
    auto it = strings.find(key);
    if (it == strings.end()) throw error("reference case " + name + " has no string field " + key);
    return it->second;
  }
  bool has(const std::string& key) const { return numbers.count(key) || strings.count(key); }
};

inline double parse_number(const std::string& token) {
  if (token == "nan") return std::nan("");
  if (token == "inf") return INFINITY;
  if (token == "-inf") return -INFINITY;
  return std::stod(token);
}

inline std::vector<reference_case> load_reference(const std::string& file) {
  const std::string path = std::string(LMRL_TEST_DATA_DIR) + "/" + file;
  std::ifstream in(path);
  if (!in) throw error("cannot open reference file " + path);
  std::vector<reference_case> cases;
  std::string line;
  reference_case* current = nullptr;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "case") {
      cases.emplace_back();
      current = &cases.back();
      words >> current->name;
    } else if (key == "end") {
      current = nullptr;
    } else if (current == nullptr) {
      throw error("reference file " + path + ": field outside a case: " + line);
    } else if (key == "str") {
      std::string name;
      words >> name;
      std::string rest;
      std::getline(words, rest);
      current->strings[name] = rest.empty() ? rest : rest.substr(1);
    } else {
      std::size_t count = 0;
      words >> count;
      std::vector<double> values(count);
      for (auto& v : values) {
        std::string token;
        words >> token;
        v = parse_number(token);
      }
      if (!words) throw error("reference file " + path + ": short field " + key + " in case " + current->name);
      current->numbers[key] = std::move(values);
    }
  }
  return cases;
}

}  // namespace lmrl::testing
