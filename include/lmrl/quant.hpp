// quant/: block quantizers (the Quantizer concept, FP8 with DeepSeek-V3's
// scaling, ggml's Q8_0, Q4_0, the Q4_K super-block and ternary TQ2_0 / TQ1_0,
// int8 per row), the small float formats under them, and the integer products
// of quantized weights with Q8_0 activations (int_dot_paths, q8_0_rows, int_dot,
// int_gemm, integer_linear).
#pragma once

#include "lmrl/quant/by_name.hpp"
#include "lmrl/quant/dot.hpp"
#include "lmrl/quant/fp8_blocks.hpp"
#include "lmrl/quant/ggml_blocks.hpp"
#include "lmrl/quant/int8_rows.hpp"
#include "lmrl/quant/int_dot.hpp"
#include "lmrl/quant/int_dot_paths.hpp"
#include "lmrl/quant/int_gemm.hpp"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/quant/k_quants.hpp"
#include "lmrl/quant/minifloat.hpp"
#include "lmrl/quant/q8_0_rows.hpp"
#include "lmrl/quant/quantized_matrix.hpp"
#include "lmrl/quant/quantizer.hpp"
#include "lmrl/quant/ternary.hpp"
