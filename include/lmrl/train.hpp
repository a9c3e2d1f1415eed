// The train/ layer: optimizer, gradient clipping, learning-rate schedules and
// gradient accumulation (trainers are added here as they land).
#pragma once

#include "lmrl/train/adamw.hpp"
#include "lmrl/train/clip_grad.hpp"
#include "lmrl/train/grad_accumulation.hpp"
#include "lmrl/train/schedule.hpp"
