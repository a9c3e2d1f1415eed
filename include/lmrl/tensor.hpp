// The tensor layer without any third-party backend: views, concepts, std
// adapters. Include lmrl/tensor/eigen.hpp or lmrl/tensor/xtensor.hpp for those.
#pragma once

#include "lmrl/tensor/concepts.hpp"
#include "lmrl/tensor/dense.hpp"
#include "lmrl/tensor/span.hpp"
#include "lmrl/tensor/view.hpp"
