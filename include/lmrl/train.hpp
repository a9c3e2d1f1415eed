// The train/ layer: optimizer, gradient clipping, learning-rate schedules,
// gradient accumulation, and the stages of the R1 pipeline: SFT (cold start,
// second round, sequence-level distillation), rejection sampling, logit
// distillation. The GRPO/PPO trainer is train/grpo_trainer.hpp.
#pragma once

#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/distill.hpp"
#include "lmrl/train/grad_accumulation.hpp"
#include "lmrl/train/rejection_sampling.hpp"
#include "lmrl/train/schedule.hpp"
#include "lmrl/train/sft.hpp"
