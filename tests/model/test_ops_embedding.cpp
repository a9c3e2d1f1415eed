// model/ops/embedding.hpp: gather rows, scatter-add the gradient.
#include "lmrl/model/ops/embedding.hpp"

#include <vector>

#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("embedding gathers rows, masked rows are zero and their id is not read") {
  double table[] = {1, 2, 3, 4, 5, 6};  // 3 tokens x d = 2
  std::vector<std::int32_t> ids = {2, 0, -7, 2};
  double mask[] = {1, 1, 0, 1};
  dense<double, 2> out({4, 2});
  ops::embedding_forward<double>(matrix_view<const double>(table, {3, 2}), ids, vector_view<const double>(mask, {4}),
                                 out.view());
  CHECK(out(0, 0) == 5);
  CHECK(out(0, 1) == 6);
  CHECK(out(1, 0) == 1);
  CHECK(out(2, 0) == 0);  // padding: id -7 ignored
  CHECK(out(2, 1) == 0);
  CHECK(out(3, 1) == 6);
}

TEST_CASE("the backward adds every row's gradient into its id's row (repeated ids add up)") {
  double g[] = {1, 2, 10, 20, 100, 200, 1000, 2000};
  std::vector<std::int32_t> ids = {2, 0, 1, 2};
  double mask[] = {1, 1, 0, 1};
  dense<double, 2> grad({3, 2});
  grad(1, 1) = 0.5;  // accumulated, not overwritten
  ops::embedding_backward<double>(matrix_view<const double>(g, {4, 2}), ids, vector_view<const double>(mask, {4}),
                                  grad.view());
  CHECK(grad(2, 0) == 1 + 1000);  // rows 0 and 3 both have id 2
  CHECK(grad(2, 1) == 2 + 2000);
  CHECK(grad(0, 0) == 10);
  CHECK(grad(1, 0) == 0);  // row 2 (id 1) is masked
  CHECK(grad(1, 1) == 0.5);
  // no mask: every row counts
  ops::embedding_backward<double>(matrix_view<const double>(g, {4, 2}), ids, {}, grad.view());
  CHECK(grad(1, 0) == 100);
}

TEST_CASE("ids out of range name the row and the id, shapes are checked") {
  double table[6] = {};
  std::vector<std::int32_t> ids = {0, 3};
  dense<double, 2> out({2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_forward<double>(matrix_view<const double>(table, {3, 2}), ids, {}, out.view()),
                       doctest::Contains("ids[1] = 3 is out of range for a vocabulary of 3"), error);
  dense<double, 2> wrong({3, 2});
  CHECK_THROWS_WITH_AS(
      ops::embedding_forward<double>(matrix_view<const double>(table, {3, 2}), ids, {}, wrong.view()),
      doctest::Contains("out has shape [3 x 2]"), error);
  CHECK_THROWS_AS(ops::embedding_backward<double>(out.view(), ids, {}, matrix_view<double>(table, {3, 2})), error);
}
