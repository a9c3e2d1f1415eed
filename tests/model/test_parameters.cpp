// model/config.hpp and model/parameters.hpp: presets, validation, the one-buffer
// layout with Hugging Face names, deterministic initialization.
#include <set>

#include "lmrl/model/config.hpp"
#include "lmrl/model/parameters.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("Qwen2.5-0.5B's shapes give its published 494,032,768 parameters") {
  const parameter_layout layout(transformer_config::qwen2_5_0_5b());
  CHECK(layout.total_size() == 494032768);
  CHECK(layout.find("lm_head.weight") == nullptr);  // tied
  CHECK(layout.at("model.layers.23.self_attn.k_proj.weight").shape == std::vector<index_t>{128, 896});
  CHECK(layout.at("model.layers.0.mlp.down_proj.weight").shape == std::vector<index_t>{896, 4864});
}

TEST_CASE("the layout is contiguous, in checkpoint order, with unique names") {
  transformer_config c = transformer_config::tiny();
  c.tie_word_embeddings = false;
  c.attention_bias = false;
  const parameter_layout layout(c);
  index_t next = 0;
  std::set<std::string> names;
  for (const auto& e : layout.entries()) {
    CHECK(e.offset == next);
    next += e.size;
    CHECK(names.insert(e.name).second);
  }
  CHECK(next == layout.total_size());
  CHECK(layout.entries().front().name == "model.embed_tokens.weight");
  CHECK(layout.entries().back().name == "lm_head.weight");
  CHECK(layout.find("model.layers.0.self_attn.q_proj.bias") == nullptr);
  // 4 layers x 9 tensors (2 norms, q/k/v/o, gate/up/down) + embed + norm + lm_head
  CHECK(layout.entries().size() == 39);
}

TEST_CASE("views point into the one buffer, a copy gets its own views") {
  transformer_parameters<float> p(transformer_config::tiny());
  p.initialize(7);
  const auto& w = p.weights();
  CHECK(w.lm_head.data == w.embed.data);  // tied
  CHECK(w.layers.size() == 4);
  const auto& e = p.layout().at("model.layers.2.self_attn.q_proj.weight");
  CHECK(w.layers[2].wq.data == p.values().data() + e.offset);
  CHECK(w.layers[2].wq.shape == std::array<index_t, 2>{256, 256});
  CHECK(w.layers[2].wk.shape == std::array<index_t, 2>{128, 256});  // 2 kv heads x head_dim 64
  transformer_parameters<float> q = p;
  CHECK(q.weights().embed.data == q.values().data());
  CHECK(q.weights().embed.data != p.values().data());
  CHECK(q.weights().layers[2].wq(3, 4) == w.layers[2].wq(3, 4));
}

TEST_CASE("initialization is deterministic: norms 1, biases 0, weights N(0, 0.02^2)") {
  transformer_parameters<double> a(transformer_config::tiny()), b(transformer_config::tiny());
  a.initialize(42);
  b.initialize(42);
  CHECK(std::equal(a.values().begin(), a.values().end(), b.values().begin()));
  b.initialize(43);
  CHECK(!std::equal(a.values().begin(), a.values().end(), b.values().begin()));
  for (double v : a.tensor("model.norm.weight")) CHECK(v == 1.0);
  for (double v : a.tensor("model.layers.1.self_attn.v_proj.bias")) CHECK(v == 0.0);
  const auto embed = a.tensor("model.embed_tokens.weight");
  double sum = 0, sq = 0;
  for (double v : embed) sum += v, sq += v * v;
  const double n = static_cast<double>(embed.size()), mean = sum / n, std = std::sqrt(sq / n - mean * mean);
  CHECK(std::abs(mean) < 1e-3);  // 131,072 draws: the mean's std is 0.02 / 362 = 5.5e-5
  CHECK(std == doctest::Approx(0.02).epsilon(0.01));
}

TEST_CASE("bad configs are errors naming the field") {
  transformer_config c;
  c.num_key_value_heads = 3;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("num_key_value_heads = 3"), error);
  c = {};
  c.hidden_size = 250;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("hidden_size = 250"), error);
  CHECK_THROWS_WITH_AS(transformer_config::preset("huge"), doctest::Contains("unknown preset \"huge\""), error);
  transformer_parameters<float> p(transformer_config::tiny());
  CHECK_THROWS_WITH_AS(p.tensor("nope"), doctest::Contains("no tensor named \"nope\""), error);
}
