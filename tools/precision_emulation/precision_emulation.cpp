// transformer<float> with its products' inputs rounded to tf32 (10 explicit mantissa bits) or bf16 (7), or
// at fp8 (bf16, with the layers' seven forward products through FP8 blocks), against itself unrounded, on tests/cuda/test_transformer.cu's model, batches and upstream gradients, with
// that test's metrics: logp and entropy by the worst |difference| over the largest |value|, gradients by
// |difference| / |gradient| (2-norms) per named tensor. Built by precision_emulation.sh, which puts the
// rounding copy of model/ops/matmul.hpp (shadow_matmul.py) first on the include path.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda/model_batches.hpp"
#include "cuda/random_parameters.hpp"
#include "lmrl/model/transformer.hpp"

using namespace lmrl;
using namespace lmrl::testing;

namespace {

struct pass {
  std::vector<float> logp, entropy, gradients;
};

pass run(const transformer_parameters<float>& params, const padded_batch& b, int mantissa_bits, bool fp8) {
  ops::emulate_mantissa_bits = mantissa_bits;
  transformer<float> model(params);
  if (fp8)
    for (const auto& lw : model.parameters().weights().layers)
      for (const auto* w : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down})
        ops::emulate_fp8_weights.insert(w->data);
  model.temperature = 0.7;  // the test's
  pass p{std::vector<float>(b.size()), std::vector<float>(b.size()), {}};
  model.log_probs(b.view(), matrix_view<float>(p.logp.data(), {b.B, b.T}),
                  matrix_view<float>(p.entropy.data(), {b.B, b.T}));
  std::fill(model.gradients().begin(), model.gradients().end(), 0.0f);
  const auto gl = random_upstream(b, 32), ge = random_upstream(b, 33);  // the test's seeds
  model.backward(b.view(), matrix_view<const float>(gl.data(), {b.B, b.T}),
                 matrix_view<const float>(ge.data(), {b.B, b.T}));
  p.gradients.assign(model.gradients().begin(), model.gradients().end());
  ops::emulate_mantissa_bits = 0;
  ops::emulate_fp8_weights.clear();
  return p;
}

struct errors {
  double logp = 0, entropy = 0, tensor = 0;
  std::string tensor_name;
};

errors compare(const transformer_parameters<float>& params, const padded_batch& b, int mantissa_bits, bool fp8) {
  const pass exact = run(params, b, 0, false), rounded = run(params, b, mantissa_bits, fp8);
  double logp_scale = 0, entropy_scale = 0;
  errors e;
  for (std::size_t r = 0; r < b.size(); ++r) {
    if (!b.predicted(r)) continue;
    logp_scale = std::max(logp_scale, std::abs(static_cast<double>(exact.logp[r])));
    entropy_scale = std::max(entropy_scale, std::abs(static_cast<double>(exact.entropy[r])));
    e.logp = std::max(e.logp, std::abs(static_cast<double>(rounded.logp[r]) - exact.logp[r]));
    e.entropy = std::max(e.entropy, std::abs(static_cast<double>(rounded.entropy[r]) - exact.entropy[r]));
  }
  e.logp /= logp_scale;
  e.entropy /= entropy_scale;
  for (const auto& t : params.layout().entries()) {
    double norm = 0, err = 0;
    for (index_t k = 0; k < t.size; ++k) {
      const auto i = static_cast<std::size_t>(t.offset + k);
      norm += static_cast<double>(exact.gradients[i]) * exact.gradients[i];
      err += std::pow(static_cast<double>(rounded.gradients[i]) - exact.gradients[i], 2);
    }
    if (norm > 0 && std::sqrt(err / norm) > e.tensor) e.tensor = std::sqrt(err / norm), e.tensor_name = t.name;
  }
  return e;
}

}  // namespace

int main() {
  const struct {
    const char* name;
    int bits;
    bool fp8;
  } precisions[] = {{"tf32", 10, false}, {"bf16", 7, false}, {"fp8", 7, true}};
  std::printf("The GPU test's case (untied, parameter seed 31, batch 1):\n");
  for (const auto& p : precisions) {
    const auto params = random_parameters(tiny_config(false), 31);
    const errors e = compare(params, test_batches(tiny_config(false).vocab_size)[1], p.bits, p.fp8);
    std::printf("  %s: logp %.2e, entropy %.2e, worst gradient tensor %.2e (%s)\n", p.name, e.logp, e.entropy,
                e.tensor, e.tensor_name.c_str());
  }
  std::printf("Spread: tied and untied, parameter seeds 31..33, all four batches (worst of each):\n");
  for (const auto& p : precisions)
    for (const bool tied : {false, true})
      for (const std::uint64_t seed : {31, 32, 33}) {
        const auto params = random_parameters(tiny_config(tied), seed);
        errors worst;
        for (const auto& b : test_batches(tiny_config(tied).vocab_size)) {
          const errors e = compare(params, b, p.bits, p.fp8);
          worst.logp = std::max(worst.logp, e.logp);
          worst.entropy = std::max(worst.entropy, e.entropy);
          if (e.tensor > worst.tensor) worst.tensor = e.tensor, worst.tensor_name = e.tensor_name;
        }
        std::printf("  %s tied %d seed %llu: logp %.2e, entropy %.2e, worst gradient tensor %.2e (%s)\n", p.name,
                    tied, static_cast<unsigned long long>(seed), worst.logp, worst.entropy, worst.tensor,
                    worst.tensor_name.c_str());
      }
}
