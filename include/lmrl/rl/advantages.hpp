// Every advantage estimator of lmrl (docs/algorithms.md, section 1). Each
// header has a plain function on views and generic arrays, and a struct that
// satisfies lmrl::AdvantageEstimator (per-token output, 0 where masked).
#pragma once

#include "lmrl/rl/advantages/gae.hpp"           // gae_advantages, gae_advantage
#include "lmrl/rl/advantages/gdpo.hpp"          // gdpo_sequence_advantages, gdpo_advantage
#include "lmrl/rl/advantages/gpg.hpp"           // gpg_sequence_advantages, gpg_advantage
#include "lmrl/rl/advantages/group_stats.hpp"   // group_moments, moments_of_group
#include "lmrl/rl/advantages/grpo.hpp"          // grpo_sequence_advantages, uniform_group_flags, grpo_advantage
#include "lmrl/rl/advantages/opo.hpp"           // opo_sequence_advantages, opo_advantage
#include "lmrl/rl/advantages/passk.hpp"         // passk_sequence_advantages, passk_advantage
#include "lmrl/rl/advantages/reinforce_pp.hpp"  // reinforce_pp(_baseline)_advantages, their structs
#include "lmrl/rl/advantages/remax.hpp"         // remax_advantages, remax_sequence_advantages, remax_advantage
#include "lmrl/rl/advantages/rloo.hpp"          // rloo_sequence_advantages, rloo_advantage
#include "lmrl/rl/advantages/token_rewards.hpp" // scores_on_last_token, last_active_token
#include "lmrl/rl/advantages/whiten.hpp"        // masked_mean, masked_var, masked_whiten
