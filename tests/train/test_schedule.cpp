// Learning-rate schedules (lmrl/train/schedule.hpp): hand-computed
// multipliers of HF's linear, cosine (with and without a floor) and constant
// schedules, HF's warmup-steps rule, names, bad input. Bit-for-bit against
// transformers: test_reference_optim.cpp.
#include "lmrl/train/schedule.hpp"

#include <cmath>

#include "support/testing.hpp"

using namespace lmrl;
using doctest::Approx;

TEST_CASE("linear_schedule_with_warmup: warmup 2, 10 steps, by hand") {
  // warmup: step / 2; then (10 - step) / (10 - 2); 0 from step 10 on.
  CHECK(linear_schedule_with_warmup(0, 2, 10) == 0.0);
  CHECK(linear_schedule_with_warmup(1, 2, 10) == 0.5);
  CHECK(linear_schedule_with_warmup(2, 2, 10) == 1.0);  // 8 / 8
  CHECK(linear_schedule_with_warmup(6, 2, 10) == 0.5);  // 4 / 8
  CHECK(linear_schedule_with_warmup(9, 2, 10) == 0.125);
  CHECK(linear_schedule_with_warmup(10, 2, 10) == 0.0);
  CHECK(linear_schedule_with_warmup(12, 2, 10) == 0.0);  // max(0, -2 / 8)
  // no warmup: starts at 1; max(1, .) guards the divisions
  CHECK(linear_schedule_with_warmup(0, 0, 4) == 1.0);
  CHECK(linear_schedule_with_warmup(0, 0, 0) == 0.0);    // 0 / max(1, 0)
  CHECK(linear_schedule_with_warmup(3, 5, 5) == 0.6);    // warmup only
  CHECK(linear_schedule_with_warmup(5, 5, 5) == 0.0);    // 0 / max(1, 0)
}

TEST_CASE("cosine_schedule_with_warmup: warmup 2, 10 steps, half a cycle, by hand") {
  // progress = (step - 2) / 8; 0.5 (1 + cos(pi * 0.5 * 2 * progress)).
  CHECK(cosine_schedule_with_warmup(1, 2, 10) == 0.5);                                    // warmup 1 / 2
  CHECK(cosine_schedule_with_warmup(2, 2, 10) == 1.0);                                    // cos 0
  CHECK(cosine_schedule_with_warmup(4, 2, 10) == Approx(0.5 + std::sqrt(2.0) / 4).epsilon(1e-15));  // cos(pi/4)
  CHECK(cosine_schedule_with_warmup(6, 2, 10) == Approx(0.5).epsilon(1e-15));             // cos(pi/2) = 0
  CHECK(cosine_schedule_with_warmup(10, 2, 10) == 0.0);                                   // cos(pi) = -1
  // past the end the cosine comes back up, as in transformers: progress 1.5, cos(3 pi / 2) = 0
  CHECK(cosine_schedule_with_warmup(14, 2, 10) == Approx(0.5).epsilon(1e-15));
  // one full cycle: back to 1 at the end
  CHECK(cosine_schedule_with_warmup(10, 2, 10, 1.0) == 1.0);
  CHECK(cosine_schedule_with_warmup(6, 2, 10, 1.0) == 0.0);
}

TEST_CASE("cosine with min_lr_rate: the cosine rescaled into (min_lr_rate, 1)") {
  // factor * (1 - 0.1) + 0.1: end 0 -> 0.1, middle 0.5 -> 0.55, start 1 -> 1.
  CHECK(cosine_schedule_with_warmup(10, 2, 10, 0.5, 0.1) == Approx(0.1).epsilon(1e-15));
  CHECK(cosine_schedule_with_warmup(6, 2, 10, 0.5, 0.1) == Approx(0.55).epsilon(1e-15));
  CHECK(cosine_schedule_with_warmup(2, 2, 10, 0.5, 0.1) == 1.0);
  CHECK(cosine_schedule_with_warmup(1, 2, 10, 0.5, 0.1) == 0.5);  // the warmup is not floored
  // min_lr_rate = 0 is the plain cosine, bit for bit
  for (index_t s = 0; s < 20; ++s)
    CHECK(cosine_schedule_with_warmup(s, 3, 17, 0.5, 0.0) == cosine_schedule_with_warmup(s, 3, 17));
}

TEST_CASE("constant schedules") {
  // 0, 1/4, 2/4, 3/4, then 1
  CHECK(constant_schedule_with_warmup(0, 4) == 0.0);
  CHECK(constant_schedule_with_warmup(1, 4) == 0.25);
  CHECK(constant_schedule_with_warmup(3, 4) == 0.75);
  CHECK(constant_schedule_with_warmup(4, 4) == 1.0);
  CHECK(constant_schedule_with_warmup(1000, 4) == 1.0);
  CHECK(constant_schedule_with_warmup(0, 0) == 1.0);
  CHECK(constant_schedule(0) == 1.0);
  CHECK(constant_schedule(77) == 1.0);
}

TEST_CASE("lr_schedule: by HF's lr_scheduler_type name, lr = base_lr * multiplier") {
  lr_schedule s;
  CHECK(s.type == lr_schedule::kind::linear);  // HF's default
  s.type = lr_schedule::kind_from_name("cosine");
  s.num_warmup_steps = 2;
  s.num_training_steps = 10;
  CHECK(s.multiplier(6) == cosine_schedule_with_warmup(6, 2, 10));
  CHECK(s.lr(1e-6, 6) == 1e-6 * cosine_schedule_with_warmup(6, 2, 10));
  s.type = lr_schedule::kind_from_name("cosine_with_min_lr");
  s.min_lr_rate = 0.1;
  CHECK(s.multiplier(10) == Approx(0.1).epsilon(1e-15));
  s.type = lr_schedule::kind_from_name("linear");
  CHECK(s.multiplier(6) == 0.5);
  s.type = lr_schedule::kind_from_name("constant_with_warmup");
  CHECK(s.multiplier(1) == 0.5);
  s.type = lr_schedule::kind_from_name("constant");
  CHECK(s.multiplier(0) == 1.0);
  CHECK_THROWS_WITH_AS(lr_schedule::kind_from_name("cosine_with_restarts"),
                       doctest::Contains("lr_scheduler_type \"cosine_with_restarts\" is not one of"), error);
}

TEST_CASE("warmup_steps_for: HF's rule, a count from 1 up, a fraction of the run below 1") {
  CHECK(warmup_steps_for(5.0, 100) == 5);
  CHECK(warmup_steps_for(2.7, 100) == 2);   // int() truncates
  CHECK(warmup_steps_for(0.1, 95) == 10);   // ceil(9.5)
  CHECK(warmup_steps_for(0.1, 100) == 10);  // 100 * 0.1 rounds to exactly 10.0, so no step is added
  CHECK(warmup_steps_for(0.03, 1000) == 30);
  CHECK(warmup_steps_for(0.0, 1000) == 0);
  CHECK_THROWS_AS(warmup_steps_for(-0.5, 10), error);
}

TEST_CASE("schedules: bad input") {
  CHECK_THROWS_WITH_AS(linear_schedule_with_warmup(-1, 0, 10), doctest::Contains("step = -1 must be >= 0"), error);
  CHECK_THROWS_WITH_AS(linear_schedule_with_warmup(0, -2, 10), doctest::Contains("num_warmup_steps = -2"), error);
  CHECK_THROWS_WITH_AS(cosine_schedule_with_warmup(0, 0, -3), doctest::Contains("num_training_steps = -3"), error);
  CHECK_THROWS_WITH_AS(cosine_schedule_with_warmup(0, 0, 10, 0.5, 1.5), doctest::Contains("min_lr_rate = 1.5"),
                       error);
  CHECK_THROWS_WITH_AS(cosine_schedule_with_warmup(0, 0, 10, -1.0), doctest::Contains("num_cycles = -1"), error);
  CHECK_THROWS_AS(constant_schedule_with_warmup(-1, 3), error);
}
