// Wall-clock timing for the whole-run benchmark programs (bench_model_step,
// bench_quant_generate): a phase runs several times and the median is
// reported, since this kind of shared machine moves single runs by tens of
// percent.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace lmrl::bench {

using clock_type = std::chrono::steady_clock;

inline double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// The median of v (the mean of the middle two for an even count); v not empty.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

// Runs f `repeats` times and returns the median of its wall times.
template <class F>
double median_seconds(int repeats, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = clock_type::now();
    f();
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

}  // namespace lmrl::bench
