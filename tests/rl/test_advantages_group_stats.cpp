// Group moments with missing (NaN) scores, the shared checks and the broadcast.
#include <cmath>
#include <vector>

#include "lmrl/rl/advantages/group_stats.hpp"
#include "lmrl/tensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

TEST_CASE("group moments skip NaN, unbiased and biased variance, uniform groups") {
  const std::vector<double> s{1, std::nan(""), 3, 5, 5, 5};
  const vector_view<const double> v(s.data(), {6});
  // {1, NaN, 3}: count 2, sum 4, mean 2, unbiased var ((-1)^2 + 1^2) / 1 = 2, biased 2 / 2 = 1
  const auto g = moments_of_group(v, 0, 3);
  CHECK(g.count == 2);
  CHECK(g.sum == 4.0);
  CHECK(g.mean == 2.0);
  CHECK(g.variance == 2.0);
  CHECK(g.std() == Approx(std::sqrt(2.0)));
  CHECK(!g.uniform);
  CHECK(moments_of_group(v, 0, 3, false).variance == 1.0);
  const auto u = moments_of_group(v, 3, 3);
  CHECK(u.uniform);
  CHECK(u.variance == 0.0);
  // one scored value: uniform, variance undefined -> 0
  const auto one = moments_of_group(v, 1, 2);
  CHECK(one.count == 1);
  CHECK(one.uniform);
  CHECK(one.variance == 0.0);
  const auto none = moments_of_group(v, 1, 1);
  CHECK(none.count == 0);
  CHECK(none.uniform);
}

TEST_CASE("shared checks: infinite scores, shapes, group size, mask, broadcast writes 0 where masked") {
  std::vector<double> s{1, 2, std::nan(""), 4};
  CHECK(detail::require_scores("f", "scores", vector_view<const double>(s.data(), {4})) == 1);
  s[1] = -INFINITY;
  CHECK_THROWS_WITH_AS(detail::require_scores("f", "scores", vector_view<const double>(s.data(), {4})),
                       doctest::Contains("f: scores(1) = -inf"), error);
  dense<double, 1> scores({4});
  dense<double, 2> mask({4, 3}), out({4, 3});
  mask(0, 0) = mask(0, 1) = 1;
  advantage_inputs<double> in{scores.view(), mask.view(), 3};
  CHECK_THROWS_WITH_AS(detail::require_outcome_inputs("f", in, out.view()),
                       doctest::Contains("4 sequences do not divide into groups of group_size = 3"), error);
  detail::broadcast_row(0, 2.5, matrix_view<const double>(mask.view()), out.view());
  CHECK(out(0, 0) == 2.5);
  CHECK(out(0, 1) == 2.5);
  CHECK(out(0, 2) == 0.0);
  CHECK_THROWS_WITH_AS(detail::require_epsilon("f", "epsilon", NAN), doctest::Contains("epsilon = nan"), error);
}
