// The train/ layer: optimizer, gradient clipping, learning-rate schedules,
// gradient accumulation and R1's rejection-sampling stage (trainers are added
// here as they land).
#pragma once

#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/grad_accumulation.hpp"
#include "lmrl/train/rejection_sampling.hpp"
#include "lmrl/train/schedule.hpp"
