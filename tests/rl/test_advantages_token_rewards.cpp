// Sequence scores placed on the last active token (verl's reward managers).
#include <cmath>

#include "lmrl/rl/advantages/token_rewards.hpp"
#include "lmrl/tensor.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("scores sit on the last active token, empty rows and missing scores give zeros") {
  dense<double, 1> s({3});
  s(0) = 2;
  s(1) = 5;
  s(2) = std::nan("");
  dense<double, 2> m({3, 4}), out({3, 4});
  m(0, 0) = m(0, 1) = m(0, 3) = 1;  // a hole at 2: the last active token is 3
  m(2, 0) = 1;
  for (index_t t = 0; t < 4; ++t) out(1, t) = 9;
  const matrix_view<const double> mv = m.view();
  CHECK(last_active_token(mv, 0) == 3);
  CHECK(last_active_token(mv, 1) == -1);
  scores_on_last_token(vector_view<const double>(s.view()), mv, out.view());
  CHECK(out(0, 3) == 2.0);
  for (index_t t = 0; t < 3; ++t) CHECK(out(0, t) == 0.0);
  for (index_t t = 0; t < 4; ++t) CHECK(out(1, t) == 0.0);
  for (index_t t = 0; t < 4; ++t) CHECK(out(2, t) == 0.0);
}
