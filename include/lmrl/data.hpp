// The data layer: verifiable task generators (arithmetic, Countdown), the safe
// expression parser and exact rationals they verify with, the hash-decided
// held-out split, dataset readers (JSON, JSONL, GSM8K) and chat templates.
#pragma once

#include "lmrl/data/arithmetic.hpp"
#include "lmrl/data/chat_template.hpp"
#include "lmrl/data/countdown.hpp"
#include "lmrl/data/expression.hpp"
#include "lmrl/data/gsm8k.hpp"
#include "lmrl/data/json.hpp"
#include "lmrl/data/jsonl.hpp"
#include "lmrl/data/placeholders.hpp"
#include "lmrl/data/random.hpp"
#include "lmrl/data/rational.hpp"
#include "lmrl/data/split.hpp"
