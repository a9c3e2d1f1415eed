// make_objective / any_objective: the objective chosen by name at run time.
#include "lmrl/rl/objectives/by_name.hpp"
#include "rl/test_objectives_support.hpp"

using namespace lmrl;
using namespace objectives_testing;

static_assert(PolicyObjective<any_objective, float> && PolicyObjective<any_objective, double>);

TEST_CASE("make_objective: every name, aliases, and the same numbers as the struct it holds") {
  for (auto name : objective_names) {
    const auto o = make_objective(name);
    CHECK(o.name() == name);
  }
  CHECK(make_objective("vanilla").name() == "ppo");
  CHECK(make_objective("grpo").name() == "ppo");
  CHECK(make_objective("geo_mean").name() == "gmpo");
  CHECK(make_objective("gpg").name() == "reinforce");
  CHECK(std::holds_alternative<gspo_token>(make_objective("gspo_token").objective));
  batch b = random_batch(3, 5, 101);
  const dense<double, 2> g = ones_like(b);
  const auto direct = loss_of(sapo{}, b);
  const auto chosen = loss_of(make_objective("sapo"), b);
  const auto d1 = backward_of(sapo{}, b, g);
  const auto d2 = backward_of(make_objective("sapo"), b, g);
  for (index_t k = 0; k < direct.size(); ++k) {
    CHECK(direct.data()[k] == chosen.data()[k]);
    CHECK(d1.data()[k] == d2.data()[k]);
  }
  // hyper-parameters can be set on the held struct
  any_objective o = make_objective("ppo");
  std::get<ppo_clip>(o.objective).epsilon_high = 0.28;
  batch c = hand_batch(1, 1, {-1}, {std::log(1.3)}, {1}, {1});
  CHECK(loss_of(o, c)(0, 0) == doctest::Approx(-1.28));
}

TEST_CASE("make_objective: unknown names list the allowed ones") {
  CHECK_THROWS_WITH_AS(make_objective("ppo2"),
                       doctest::Contains("make_objective: unknown objective \"ppo2\"; allowed names are ppo, gspo, "
                                         "gspo_token, gmpo, cispo, sapo, clip_cov, kl_cov, reinforce"),
                       error);
  CHECK_THROWS_AS(make_objective(""), error);
}

TEST_CASE("any_objective: masked positions and backends through the variant") {
  check_masked_positions(make_objective("gmpo"), random_batch(3, 5, 103), 104);
  check_backends_identical(make_objective("kl_cov"), random_batch(3, 5, 105), 106);
}
