// The policy objectives of rl/: PPO clip (GRPO, DAPO, dual clip, delta),
// GSPO (sequence and token forms), GMPO, CISPO, SAPO, Clip-Cov, KL-Cov,
// REINFORCE/GPG, the entropy bonus and top-entropy masking, and the choice of
// an objective by name. See docs/algorithms.md section 3.
#pragma once

#include "lmrl/rl/objectives/by_name.hpp"
#include "lmrl/rl/objectives/cispo.hpp"
#include "lmrl/rl/objectives/common.hpp"
#include "lmrl/rl/objectives/covariance.hpp"
#include "lmrl/rl/objectives/entropy.hpp"
#include "lmrl/rl/objectives/gmpo.hpp"
#include "lmrl/rl/objectives/gspo.hpp"
#include "lmrl/rl/objectives/ppo_clip.hpp"
#include "lmrl/rl/objectives/reinforce.hpp"
#include "lmrl/rl/objectives/sapo.hpp"
