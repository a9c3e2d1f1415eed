// The reward layer: verifiable reward rules (DeepSeek-R1 style) and their combinators.
#pragma once

#include "lmrl/reward/accuracy.hpp"
#include "lmrl/reward/extract.hpp"
#include "lmrl/reward/format.hpp"
#include "lmrl/reward/language.hpp"
#include "lmrl/reward/length.hpp"
#include "lmrl/reward/math_equal.hpp"
#include "lmrl/reward/rule.hpp"
#include "lmrl/reward/weighted_sum.hpp"
