// Generation (KV-cache decoding, model/generate.hpp) from float32 weights and
// from integer-quantized ones (cached_decoder::set_weight_format: q8_0, int8
// rows, q4_0, q4_k, tq2_0; activations in Q8_0), with a float or quantized KV
// cache, side by side in one run:
//
//   decode/s     generated tokens / seconds of decoding (no EOS: every
//                completion is full length): generate()'s time less that of
//                sync_weights(), which it calls first; medians of the repeats
//   sync s       sync_weights(): re-reading the parameters into the decoder's
//                copy (packed float32, or quantized), what a trainer pays
//                once per optimizer step
//   with sync/s  generated tokens / seconds of the whole generate()
//   weights MiB  the decoder's copy of the projections and lm_head
//   cache MiB    the KV cache at the end of the run
//   agree        tokens equal to float32's, same seed (how far the sampled
//                sequences stay together)
//
// Shapes: the grpo_zero model (random, or trained weights from a Hugging Face
// directory given as the first argument, e.g. runs/r1_pipeline/bases/teacher_base),
// 16 prompts x 8 completions as grpo_zero samples them; and Qwen2.5-0.5B's shapes
// (random weights) at batch 1 and 8, where the weights (2 GB in float32) no
// longer fit in any cache and every decoding step streams them from memory.
//
// First, the relative error of each weight format on the model's projections.
//
//   build/benchmarks/bench_quant_generate [model_dir] [repeats] [--no-qwen] [--errors-only]
#include <algorithm>
#include <cmath>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lmrl/model/generate.hpp"
#include "lmrl/model/hf_checkpoint.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/quant/by_name.hpp"
#include "lmrl/quant/integer_linear.hpp"
#include "lmrl/sample/philox.hpp"
#include "support/timing.hpp"

namespace {

using namespace lmrl;
using bench::clock_type;
using bench::median;
using bench::seconds_since;

struct variant {
  const char* name;
  std::optional<integer_format> weights;
  kv_format cache;
};

const variant variants[] = {
    {"float32", std::nullopt, kv_format::f32},
    {"q8_0", integer_format::q8_0, kv_format::f32},
    {"int8 rows", integer_format::int8, kv_format::f32},
    {"q4_0", integer_format::q4_0, kv_format::f32},
    {"q4_k", integer_format::q4_k, kv_format::f32},
    {"tq2_0", integer_format::tq2_0, kv_format::f32},
    {"q4_0 + q8_0 cache", integer_format::q4_0, kv_format::q8_0},
    {"float32 + q8_0 cache", std::nullopt, kv_format::q8_0},
    {"float32 + q4_0 cache", std::nullopt, kv_format::q4_0},
};

struct shape {
  const char* name;
  index_t prompts, group, prompt_len, completion_len;
};

void run(const transformer_parameters<float>& params, const shape& s, int repeats) {
  const transformer_config& c = params.config();
  std::printf("\n== %s: vocab %td, d %td, %td layers, %td heads, %td kv heads, ffn %td; %td prompts x %td, "
              "prompt %td + %td new tokens; median of %d\n",
              s.name, c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
              c.intermediate_size, s.prompts, s.group, s.prompt_len, s.completion_len, repeats);
  const counter_rng rng(2024);
  std::vector<std::vector<std::int32_t>> prompts(static_cast<std::size_t>(s.prompts));
  for (index_t i = 0; i < s.prompts; ++i)
    for (index_t t = 0; t < s.prompt_len; ++t)
      prompts[static_cast<std::size_t>(i)].push_back(static_cast<std::int32_t>(
          rng.uniform_double(1000 + static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(t)) *
          static_cast<double>(c.vocab_size)));
  generation_options o;
  o.num_generations = s.group;
  o.sampling.temperature = 1.0;
  o.max_new_tokens = s.completion_len;

  constexpr std::size_t n = std::size(variants);
  std::vector<std::vector<double>> gen_seconds(n), sync_seconds(n);
  std::vector<double> weight_mib(n), cache_mib(n), agree(n);
  std::vector<std::int32_t> reference_tokens;
  // Small models: every variant's decoder alive at once, the variants taking
  // turns within each repeat. Large ones (each float copy is 2 GB at the 0.5B
  // shapes): one decoder at a time, its repeats back to back.
  const bool interleave = params.values().size() * sizeof(float) < (std::size_t(256) << 20);
  std::vector<std::unique_ptr<cached_decoder<float>>> decoders(n);
  const auto make = [&](std::size_t v) {
    decoders[v] = std::make_unique<cached_decoder<float>>(params);
    decoders[v]->set_weight_format(variants[v].weights);
    decoders[v]->set_kv_format(variants[v].cache);
    o.max_new_tokens = 2;
    generate(*decoders[v], std::span<const std::vector<std::int32_t>>(prompts), o, rng);  // warm-up: sizes the workspace
    o.max_new_tokens = s.completion_len;
  };
  const auto measure = [&](std::size_t v, bool first) {
    cached_decoder<float>& decoder = *decoders[v];
    auto t0 = clock_type::now();
    decoder.sync_weights();  // what generate() does first: re-read (re-quantize) the weights
    sync_seconds[v].push_back(seconds_since(t0));
    t0 = clock_type::now();
    const generation_result<float> out = generate(decoder, std::span<const std::vector<std::int32_t>>(prompts), o, rng);
    gen_seconds[v].push_back(seconds_since(t0));
    weight_mib[v] = static_cast<double>(decoder.weight_bytes()) / (1 << 20);
    cache_mib[v] = static_cast<double>(decoder.cache().bytes()) / (1 << 20);
    const std::vector<std::int32_t> tokens(out.completion_ids.data(), out.completion_ids.data() + out.completion_ids.size());
    if (v == 0 && first) reference_tokens = tokens;
    std::size_t same = 0;
    for (std::size_t k = 0; k < tokens.size(); ++k) same += tokens[k] == reference_tokens[k];
    agree[v] = static_cast<double>(same) / static_cast<double>(tokens.size());
  };
  if (interleave) {
    for (std::size_t v = 0; v < n; ++v) make(v);
    for (int r = 0; r < repeats; ++r)
      for (std::size_t v = 0; v < n; ++v) measure(v, r == 0);
  } else {
    for (std::size_t v = 0; v < n; ++v) {
      make(v);
      for (int r = 0; r < repeats; ++r) measure(v, r == 0);
      decoders[v].reset();
    }
  }
  const double tokens = static_cast<double>(s.prompts * s.group * s.completion_len);
  const auto decode_rate = [&](std::size_t v) { return tokens / (median(gen_seconds[v]) - median(sync_seconds[v])); };
  const double base = decode_rate(0);
  std::printf("  %-22s %10s %8s %10s %12s %12s %10s %8s\n", "weights / cache", "decode/s", "x f32", "sync s",
              "with sync/s", "weights MiB", "cache MiB", "agree");
  for (std::size_t v = 0; v < n; ++v) {
    const double tps = decode_rate(v);
    std::printf("  %-22s %10.0f %7.2fx %10.3f %12.0f %12.1f %10.2f %7.1f%%\n", variants[v].name, tps, tps / base,
                median(sync_seconds[v]), tokens / median(gen_seconds[v]), weight_mib[v], cache_mib[v], 100 * agree[v]);
  }
  std::fflush(stdout);
}

// Relative RMS error, sqrt(sum (w - w~)^2 / sum w^2), of every projection and
// lm_head of a model rounded through each weight format (trained weights are
// not Gaussian: outlier rows and columns cost the block formats more).
void weight_errors(const transformer_parameters<float>& params, const std::string& what) {
  std::printf("\n== relative RMS error of the projections and lm_head, %s\n", what.c_str());
  const transformer_weights<const float> w = params.weights();
  std::vector<matrix_view<const float>> matrices{w.lm_head};
  for (const auto& l : w.layers)
    for (const auto& m : {l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down}) matrices.push_back(m);
  const auto error_of = [&](const auto& round) {
    double err = 0, total = 0;
    std::vector<float> copy;
    for (const auto& m : matrices) {
      copy.resize(static_cast<std::size_t>(m.shape[0] * m.shape[1]));
      const matrix_view<float> c(copy.data(), {m.shape[0], m.shape[1]});
      for (index_t r = 0; r < m.shape[0]; ++r)
        for (index_t k = 0; k < m.shape[1]; ++k) c(r, k) = m(r, k);
      round(c);
      for (index_t r = 0; r < m.shape[0]; ++r)
        for (index_t k = 0; k < m.shape[1]; ++k) {
          const double d = static_cast<double>(c(r, k)) - static_cast<double>(m(r, k));
          err += d * d;
          total += static_cast<double>(m(r, k)) * static_cast<double>(m(r, k));
        }
    }
    return std::sqrt(err / total);
  };
  std::printf("  %-16s %10s\n", "format", "rel. RMS");
  for (const char* name : {"q8_0", "int8", "fp8", "q4_k", "q4_0", "tq2_0", "tq2_0_absmean"}) {
    // The formats the decoder multiplies by through integer_linear, the others rounded (by_name.hpp).
    const auto format = integer_format_by_name(name);
    const double e = format ? error_of([f = *format](matrix_view<float> c) { integer_linear(f, c).dequantize_to(c); })
                            : error_of(weight_rounding_by_name<float>(name));
    std::printf("  %-16s %10.4f\n", name, e);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir;
  int repeats = 5;
  bool qwen = true, timing = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-qwen") == 0) {
      qwen = false;
    } else if (std::strcmp(argv[i], "--errors-only") == 0) {
      timing = qwen = false;
    } else if (model_dir.empty() && !std::isdigit(static_cast<unsigned char>(argv[i][0]))) {
      model_dir = argv[i];
    } else {
      repeats = std::max(1, std::atoi(argv[i]));
    }
  }
  try {
    // The grpo_zero model: trained weights if given, else random ones of its shape.
    if (!model_dir.empty()) {
      const transformer_parameters<float> params = load_hf_checkpoint<float>(model_dir);
      weight_errors(params, "trained weights of " + model_dir);
      if (timing) run(params, {model_dir.c_str(), 16, 8, 24, 64}, repeats);
    } else {
      transformer_config c;
      c.vocab_size = 262, c.hidden_size = 128, c.num_hidden_layers = 4, c.num_attention_heads = 4;
      c.num_key_value_heads = 2, c.intermediate_size = 344, c.max_position_embeddings = 256;
      transformer_parameters<float> params(c);
      params.initialize(1, 0.02);
      weight_errors(params, "random N(0, 0.02^2) weights");
      if (timing) run(params, {"grpo_zero shape (random weights)", 16, 8, 24, 64}, repeats);
    }
    if (qwen) {
      transformer_parameters<float> params(transformer_config::qwen2_5_0_5b());
      params.initialize(1, 0.02);
      run(params, {"Qwen2.5-0.5B shapes, batch 1", 1, 1, 16, 32}, std::max(1, repeats / 2));
      run(params, {"Qwen2.5-0.5B shapes, batch 8", 1, 8, 16, 32}, std::max(1, repeats / 2));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_quant_generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
