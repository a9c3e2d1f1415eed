// sampler_config: TRL's defaults, the validation messages, which warpers are on.
#include "lmrl/sample.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("defaults are TRL GRPOConfig's: sample at temperature 1 with every warper off") {
  const sampler_config c;
  CHECK(c.do_sample);
  CHECK(c.temperature == 1.0);
  CHECK(c.top_k == 0);
  CHECK(c.top_p == 1.0);
  CHECK(c.min_p == 0.0);
  CHECK_NOTHROW(c.validate());
  CHECK(!c.uses_top_k(1000));
  CHECK(!c.uses_top_p());
  CHECK(!c.uses_min_p());
}

TEST_CASE("which warpers are on") {
  const sampler_config c{.temperature = 0.6, .top_k = 50, .top_p = 0.95, .min_p = 0.05};
  CHECK(c.uses_top_k(51));
  CHECK(!c.uses_top_k(50));  // top_k >= vocab keeps everything
  CHECK(c.uses_top_p());
  CHECK(c.uses_min_p());
  sampler_config greedy = c;
  greedy.do_sample = false;  // as in generate(), greedy decoding ignores the warpers
  CHECK(!greedy.uses_top_k(51));
  CHECK(!greedy.uses_top_p());
  CHECK(!greedy.uses_min_p());
}

TEST_CASE("validation names the field, its value and the allowed range") {
  CHECK_THROWS_WITH_AS(sampler_config{.temperature = -1.0}.validate(),
                       doctest::Contains("sampler_config: temperature = -1 must be a finite number > 0"), error);
  CHECK_THROWS_WITH_AS(sampler_config{.temperature = 0.0}.validate(), doctest::Contains("do_sample = false"), error);
  CHECK_THROWS_AS(sampler_config{.temperature = INFINITY}.validate(), error);
  CHECK_THROWS_WITH_AS(sampler_config{.top_k = -3}.validate(), doctest::Contains("top_k = -3 must be >= 0"), error);
  CHECK_THROWS_WITH_AS(sampler_config{.top_p = -0.5}.validate(), doctest::Contains("top_p = -0.5 must be in (0, 1]"),
                       error);
  CHECK_THROWS_WITH_AS(sampler_config{.min_p = 2.0}.validate(), doctest::Contains("min_p = 2 must be in [0, 1)"),
                       error);
  CHECK_NOTHROW(sampler_config{.temperature = 1e-6, .top_k = 1, .top_p = 1e-9, .min_p = 0.999}.validate());
}
