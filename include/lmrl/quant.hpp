// quant/: block quantizers (the Quantizer concept, FP8 with DeepSeek-V3's
// scaling, ggml's Q8_0 and Q4_0) and the small float formats under them.
#pragma once

#include "lmrl/quant/fp8_blocks.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/minifloat.hpp"
#include "lmrl/quant/quantizer.hpp"
