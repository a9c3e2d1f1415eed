// The sample/ layer: the Philox counter-based generator and the token samplers.
#pragma once

#include "lmrl/sample/philox.hpp"
#include "lmrl/sample/sampler_config.hpp"
#include "lmrl/sample/samplers.hpp"
