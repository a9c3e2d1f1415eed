// model/hf_checkpoint.hpp: config.json in both transformers spellings, loading
// the checkpoints transformers wrote (single file and sharded), save/load round
// trips, and an error naming the tensor for every kind of mismatch.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "lmrl/model/hf_checkpoint.hpp"
#include "support/model_shapes.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

const std::string data_dir = LMRL_TEST_DATA_DIR;

// Qwen/Qwen2.5-0.5B's config.json as published (transformers 4 spelling).
const char* qwen2_5_config = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_mrope": false,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

// A Llama config with the optional fields left out.
const char* llama_config = R"({"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
  "num_hidden_layers": 2, "num_attention_heads": 4, "rope_theta": 500000.0})";

hf_config parse(const std::string& text) { return parse_hf_config(json::parse(text, "config.json"), "config.json"); }

// The Qwen2.5 config with one field replaced (or added).
std::string with(const std::string& field, const std::string& value, std::string text = qwen2_5_config) {
  const std::string key = "\"" + field + "\": ";
  const auto at = text.find(key);
  if (at == std::string::npos) return "{" + key + value + "," + text.substr(1);
  const auto end = text.find_first_of(",\n", at + key.size());
  return text.substr(0, at + key.size()) + value + text.substr(end);
}

std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

void copy_config(const std::string& from, const std::filesystem::path& to) {
  std::filesystem::copy_file(data_dir + "/" + from + "/config.json", to / "config.json",
                             std::filesystem::copy_options::overwrite_existing);
}

transformer_config tiny_qwen2(bool tied) {
  transformer_config c = testing::transformer_shape(64, 32, 2, 4, 2, 48, 64);
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = tied;
  c.attention_bias = true;
  return c;
}

void check_same_config(const transformer_config& a, const transformer_config& b) {
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.num_key_value_heads == b.num_key_value_heads);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.max_position_embeddings == b.max_position_embeddings);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.rms_norm_eps == b.rms_norm_eps);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.attention_bias == b.attention_bias);
  CHECK(a.value_head == b.value_head);
}

}  // namespace

TEST_CASE("Qwen2.5-0.5B's published config.json gives the qwen2_5_0_5b preset") {
  const hf_config c = parse(qwen2_5_config);
  check_same_config(c.model, transformer_config::qwen2_5_0_5b());
  CHECK(c.model_type == "qwen2");
  CHECK(c.torch_dtype == "bfloat16");
}

TEST_CASE("transformers 5's config.json (dtype, rope_parameters) from save_pretrained") {
  const hf_config tied = read_hf_config(data_dir + "/qwen2_tied/config.json");
  check_same_config(tied.model, tiny_qwen2(true));
  CHECK(tied.torch_dtype == "float32");
  const hf_config untied = read_hf_config(data_dir + "/qwen2_untied/config.json");
  check_same_config(untied.model, tiny_qwen2(false));
  // rope_parameters.rope_theta wins over the (transformers 4) top-level field when both are present
  CHECK(parse(with("rope_parameters", R"({"rope_type": "default", "rope_theta": 5.0})")).model.rope_theta == 5.0);
}

TEST_CASE("absent optional fields take transformers' defaults for the model_type") {
  const hf_config c = parse(llama_config);
  CHECK(c.model_type == "llama");
  CHECK(c.model.attention_bias == false);        // LlamaConfig.attention_bias = False
  CHECK(c.model.num_key_value_heads == 4);       // = num_attention_heads
  CHECK(c.model.tie_word_embeddings == false);   // PretrainedConfig default
  CHECK(c.model.max_position_embeddings == 2048);
  CHECK(c.model.rms_norm_eps == 1e-6);
  CHECK(c.model.rope_theta == 500000.0);
  CHECK(c.torch_dtype == "float32");
  // Qwen2 has q/k/v biases whatever attention_bias says: transformers hard-codes bias=True.
  CHECK(parse(with("attention_bias", "false")).model.attention_bias == true);
  const hf_config q = parse(R"({"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
      "num_hidden_layers": 2, "num_attention_heads": 4})");
  CHECK(q.model.max_position_embeddings == 32768);
  CHECK(q.model.rope_theta == 10000.0);
}

TEST_CASE("config.json written by lmrl reads back to the same config, for qwen2 and llama") {
  for (bool tied : {true, false}) {
    hf_config c{tiny_qwen2(tied), "qwen2", "bfloat16"};
    c.model.rms_norm_eps = 1e-5;
    c.model.rope_theta = 1000000.0;
    const std::string text = hf_config_json(c);
    CHECK(text.find("\"rms_norm_eps\": 1e-05,") != std::string::npos);
    CHECK(text.find("\"rope_theta\": 1000000.0,") != std::string::npos);
    CHECK(text.find("\"architectures\": [\"Qwen2ForCausalLM\"]") != std::string::npos);
    const hf_config back = parse(text);
    check_same_config(back.model, c.model);
    CHECK(back.torch_dtype == "bfloat16");
  }
  hf_config l{tiny_qwen2(false), "llama", "float32"};
  l.model.attention_bias = false;
  const hf_config back = parse(hf_config_json(l));
  check_same_config(back.model, l.model);
  CHECK(back.model_type == "llama");
  l.model_type = "qwen2";
  CHECK_THROWS_WITH_AS(hf_config_json(l), doctest::Contains("a qwen2 model always has q/k/v biases"), error);
}

TEST_CASE("what the bundled transformer cannot compute is an error naming the field") {
  CHECK_THROWS_WITH_AS(parse(with("hidden_act", "\"gelu\"")),
                       doctest::Contains("config.json: hidden_act: \"gelu\" is not supported"), error);
  CHECK_THROWS_WITH_AS(parse(with("rope_scaling", R"({"type": "linear", "factor": 2.0})")),
                       doctest::Contains("config.json: rope_scaling: RoPE scaling is not supported"), error);
  CHECK(parse(with("rope_scaling", "null")).model.rope_theta == 1000000.0);
  CHECK_THROWS_WITH_AS(parse(with("rope_parameters", R"({"rope_type": "yarn", "factor": 4.0})")),
                       doctest::Contains("rope_parameters.rope_type: RoPE type \"yarn\" is not supported"), error);
  CHECK_THROWS_WITH_AS(parse(with("use_sliding_window", "true", with("max_window_layers", "12"))),
                       doctest::Contains("use_sliding_window: sliding-window attention (from layer 12)"), error);
  // Qwen2.5-0.5B has max_window_layers 24 = num_hidden_layers: even with the flag on, no layer slides
  CHECK(parse(with("use_sliding_window", "true")).model.num_hidden_layers == 24);
  CHECK_THROWS_WITH_AS(parse(with("layer_types", R"(["full_attention", "sliding_attention"])")),
                       doctest::Contains("layer_types[1]: \"sliding_attention\" is not supported"), error);
  CHECK_THROWS_WITH_AS(parse(with("model_type", "\"mistral\"")),
                       doctest::Contains("model_type: \"mistral\" is not supported (known: qwen2, llama)"), error);
  CHECK_THROWS_WITH_AS(parse(with("num_key_value_heads", "3")), doctest::Contains("config.json: transformer_config: num"),
                       error);
  CHECK_THROWS_WITH_AS(parse(with("hidden_size", "-896")),
                       doctest::Contains("hidden_size: must be a positive integer, got -896"), error);
  CHECK_THROWS_WITH_AS(parse(with("vocab_size", "1.5")), doctest::Contains("vocab_size: expected an integer"), error);
  CHECK_THROWS_WITH_AS(parse(with("tie_word_embeddings", "1")),
                       doctest::Contains("tie_word_embeddings: expected a boolean, got a number"), error);
  CHECK_THROWS_WITH_AS(parse(R"({"model_type": "qwen2", "hidden_size": 32})"),
                       doctest::Contains("missing field \"vocab_size\""), error);
  const std::string llama = llama_config;
  CHECK_THROWS_WITH_AS(parse(llama.substr(0, llama.size() - 1) + R"(, "head_dim": 16})"),
                       doctest::Contains("head_dim = 16 differs from hidden_size / num_attention_heads = 8"), error);
  CHECK_THROWS_WITH_AS(parse(llama.substr(0, llama.size() - 1) + R"(, "mlp_bias": true})"),
                       doctest::Contains("mlp_bias = true is not supported"), error);
  CHECK_THROWS_WITH_AS(read_hf_config("/nonexistent/config.json"), doctest::Contains("/nonexistent/config.json"), error);
}

TEST_CASE("loads the checkpoints transformers wrote, each tensor where the layout says") {
  for (const char* kind : {"qwen2_tied", "qwen2_untied"}) {
    INFO(kind);
    hf_config config;
    const auto params = load_hf_checkpoint<float>(data_dir + "/" + kind, &config);
    const auto file = safetensors::reader::from_file(data_dir + "/" + kind + "/model.safetensors");
    CHECK(file.tensors().size() == params.layout().entries().size());
    for (const auto& e : params.layout().entries()) {
      const std::vector<float> expected = file.read<float>(e.name);
      const auto& t = params.values();
      CHECK(std::equal(expected.begin(), expected.end(), t.begin() + e.offset));
    }
    CHECK(params.config().tie_word_embeddings == (std::string(kind) == "qwen2_tied"));
    // The views see the same numbers: row 3 of k_proj of layer 1.
    const auto kw = file.read<float>("model.layers.1.self_attn.k_proj.weight");
    CHECK(params.weights().layers[1].wk(3, 5) == kw[3 * 32 + 5]);
    const auto as_double = load_hf_checkpoint<double>(data_dir + "/" + kind);
    for (std::size_t i = 0; i < params.values().size(); ++i)
      if (as_double.values()[i] != static_cast<double>(params.values()[i])) FAIL("float/double load differ at ", i);
  }
}

TEST_CASE("save then load: bit-identical in F32, equal to rounding in BF16, config preserved") {
  const auto dir = scratch_dir("hf_roundtrip");
  for (bool tied : {true, false}) {
    transformer_parameters<float> p(tiny_qwen2(tied));
    p.initialize(11, 0.3);
    for (float& v : p.tensor("model.layers.0.self_attn.q_proj.bias")) v = 0.123456789f;
    save_hf_checkpoint(p, (dir / "f32").string());
    hf_config config;
    const auto back = load_hf_checkpoint<float>((dir / "f32").string(), &config);
    CHECK(std::equal(back.values().begin(), back.values().end(), p.values().begin(), p.values().end()));
    check_same_config(config.model, p.config());
    CHECK(config.torch_dtype == "float32");
    CHECK(safetensors::reader::from_file((dir / "f32" / "model.safetensors").string()).metadata().at(0).second == "pt");

    save_hf_checkpoint(p, (dir / "bf16").string(), {.dtype = safetensors::dtype::BF16});
    const auto rounded = load_hf_checkpoint<float>((dir / "bf16").string(), &config);
    CHECK(config.torch_dtype == "bfloat16");
    int bad = 0;
    for (std::size_t i = 0; i < p.values().size(); ++i)
      bad += rounded.values()[i] != safetensors::bf16_to_float(safetensors::float_to_bf16(p.values()[i]));
    CHECK(bad == 0);
    CHECK(rounded.values()[0] != p.values()[0]);  // the rounding really happened
    CHECK(std::filesystem::file_size(dir / "bf16" / "model.safetensors") <
          std::filesystem::file_size(dir / "f32" / "model.safetensors") / 2 + 4096);
  }
  // double parameters save as F32 by rounding each value once.
  transformer_parameters<double> d(tiny_qwen2(true));
  d.initialize(3, 0.3);
  save_hf_checkpoint(d, (dir / "from_double").string());
  const auto f = load_hf_checkpoint<float>((dir / "from_double").string());
  for (std::size_t i = 0; i < d.values().size(); ++i)
    if (f.values()[i] != static_cast<float>(d.values()[i])) FAIL("double -> F32 differs at ", i);
  // a Llama-style model without biases
  transformer_config nb = tiny_qwen2(false);
  nb.attention_bias = false;
  transformer_parameters<float> l(nb);
  l.initialize(5);
  save_hf_checkpoint(l, (dir / "llama").string(), {.model_type = "llama"});
  hf_config lc;
  const auto lb = load_hf_checkpoint<float>((dir / "llama").string(), &lc);
  CHECK(lc.model_type == "llama");
  CHECK(lb.layout().find("model.layers.0.self_attn.q_proj.bias") == nullptr);
  CHECK(std::equal(lb.values().begin(), lb.values().end(), l.values().begin(), l.values().end()));
  CHECK_THROWS_WITH_AS(save_hf_checkpoint(l, (dir / "bad").string()),
                       doctest::Contains("a qwen2 model always has q/k/v biases"), error);
  CHECK(!std::filesystem::exists(dir / "bad" / "model.safetensors"));  // nothing written
  std::filesystem::remove_all(dir);
}

TEST_CASE("the sharded form: model.safetensors.index.json and several files, of different dtypes") {
  const auto dir = scratch_dir("hf_sharded");
  const auto original = load_hf_checkpoint<float>(data_dir + "/qwen2_untied");
  copy_config("qwen2_untied", dir);
  // Shard 1: the embedding and layer 0; shard 2: the rest. The index lists which is where.
  safetensors::writer first, second;
  std::string index = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  bool comma = false;
  const std::span<const float> values = original.values();
  for (const auto& e : original.layout().entries()) {
    const bool in_first = e.name.starts_with("model.embed") || e.name.starts_with("model.layers.0.");
    (in_first ? first : second)
        .add(e.name, std::vector<std::int64_t>(e.shape.begin(), e.shape.end()),
             values.subspan(static_cast<std::size_t>(e.offset), static_cast<std::size_t>(e.size)),
             in_first ? safetensors::dtype::F32 : safetensors::dtype::BF16);
    index += std::string(comma ? ", " : "") + "\"" + e.name + "\": \"model-0000" + (in_first ? "1" : "2") +
             "-of-00002.safetensors\"";
    comma = true;
  }
  index += "}}";
  first.save((dir / "model-00001-of-00002.safetensors").string());
  second.save((dir / "model-00002-of-00002.safetensors").string());
  write_file_atomically((dir / "model.safetensors.index.json").string(), index);
  const auto loaded = load_hf_checkpoint<float>(dir.string());
  // Shard 1 is F32 (exact), shard 2 BF16 (each value rounded): dtypes may differ between files.
  int bad = 0;
  for (const auto& e : original.layout().entries()) {
    const bool in_first = e.name.starts_with("model.embed") || e.name.starts_with("model.layers.0.");
    for (index_t k = e.offset; k < e.offset + e.size; ++k) {
      const float v = original.values()[static_cast<std::size_t>(k)];
      bad += loaded.values()[static_cast<std::size_t>(k)] !=
             (in_first ? v : safetensors::bf16_to_float(safetensors::float_to_bf16(v)));
    }
  }
  CHECK(bad == 0);

  // The index maps a tensor to the wrong shard.
  std::string wrong = index;
  const std::string norm = "\"model.norm.weight\": \"model-00002";
  wrong.replace(wrong.find(norm), norm.size(), "\"model.norm.weight\": \"model-00001");
  write_file_atomically((dir / "model.safetensors.index.json").string(), wrong);
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("tensor \"model.norm.weight\" is mapped to model-00001-of-00002.safetensors "
                                         "but that file does not hold it"),
                       error);
  // A shard that is not there.
  std::filesystem::remove(dir / "model-00002-of-00002.safetensors");
  write_file_atomically((dir / "model.safetensors.index.json").string(), index);
  const std::string missing = "cannot open " + (dir / "model-00002-of-00002.safetensors").string();
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()), doctest::Contains(missing.c_str()), error);
  std::filesystem::remove(dir / "model.safetensors.index.json");
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("has neither model.safetensors nor model.safetensors.index.json"), error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("missing, misshapen and unknown tensors are errors naming the tensor, a tied lm_head must equal the embedding") {
  const auto dir = scratch_dir("hf_mismatch");
  const auto tied = load_hf_checkpoint<float>(data_dir + "/qwen2_tied");
  const std::span<const float> values = tied.values();
  auto write = [&](auto&& edit) {
    safetensors::writer w;
    std::vector<std::vector<float>> extra;
    extra.reserve(4);
    for (const auto& e : tied.layout().entries())
      edit(w, e.name, std::vector<std::int64_t>(e.shape.begin(), e.shape.end()),
           values.subspan(static_cast<std::size_t>(e.offset), static_cast<std::size_t>(e.size)), extra);
    w.save((dir / "model.safetensors").string());
  };
  copy_config("qwen2_tied", dir);
  using shape_t = std::vector<std::int64_t>;
  using data_t = std::span<const float>;
  using extra_t = std::vector<std::vector<float>>;

  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t&) {
    if (name != "model.layers.1.mlp.up_proj.weight") w.add(name, shape, data);
  });
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("missing tensor \"model.layers.1.mlp.up_proj.weight\" (shape [48, 32])"), error);

  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t&) {
    if (name == "model.layers.0.self_attn.k_proj.weight") shape = {32, 16};
    w.add(name, shape, data);
  });
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("tensor \"model.layers.0.self_attn.k_proj.weight\" has shape [32, 16] but "
                                         "config.json implies [16, 32]"),
                       error);

  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t&) {
    w.add(name, shape, data);
    if (name == "model.norm.weight") w.add("model.layers.0.self_attn.q_norm.weight", {32}, data);
  });
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("unexpected tensor \"model.layers.0.self_attn.q_norm.weight\""), error);

  // Some exporters write lm_head.weight into a tied checkpoint: fine when it is the embedding.
  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t&) {
    w.add(name, shape, data);
    if (name == "model.embed_tokens.weight") w.add("lm_head.weight", shape, data);
  });
  const auto with_head = load_hf_checkpoint<float>(dir.string());
  CHECK(std::equal(with_head.values().begin(), with_head.values().end(), values.begin(), values.end()));
  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t& extra) {
    w.add(name, shape, data);
    if (name == "model.embed_tokens.weight") {
      extra.emplace_back(data.begin(), data.end());
      extra.back()[7] += 1.0f;
      w.add("lm_head.weight", shape, std::span<const float>(extra.back()));
    }
  });
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("lm_head.weight differs from model.embed_tokens.weight but config.json has "
                                         "tie_word_embeddings = true"),
                       error);
  // An untied config needs lm_head.weight.
  copy_config("qwen2_untied", dir);
  write([](safetensors::writer& w, const std::string& name, shape_t shape, data_t data, extra_t&) {
    w.add(name, shape, data);
  });
  CHECK_THROWS_WITH_AS(load_hf_checkpoint<float>(dir.string()),
                       doctest::Contains("missing tensor \"lm_head.weight\" (shape [64, 32])"), error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a value model (PPO's critic) saves as Qwen2ForSequenceClassification with score.weight and loads back") {
  const auto dir = scratch_dir("hf_value_model");
  auto c = tiny_qwen2(true);
  c.value_head = true;
  transformer_parameters<float> p(c);
  p.initialize(5, 0.3);
  save_hf_checkpoint(p, dir.string());
  std::ifstream in(dir / "config.json");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("\"architectures\": [\"Qwen2ForSequenceClassification\"]") != std::string::npos);
  CHECK(text.find("\"id2label\": {\"0\": \"LABEL_0\"}") != std::string::npos);
  CHECK(safetensors::reader::from_file((dir / "model.safetensors").string()).find("score.weight") != nullptr);
  hf_config config;
  const auto back = load_hf_checkpoint<float>(dir.string(), &config);
  CHECK(config.model.value_head);
  CHECK(std::equal(back.values().begin(), back.values().end(), p.values().begin(), p.values().end()));
  // A causal LM's config has no value head.
  CHECK_FALSE(parse(hf_config_json(hf_config{tiny_qwen2(true), "qwen2", "float32"})).model.value_head);
  std::string two_labels = text;
  two_labels.replace(two_labels.find("{\"0\": \"LABEL_0\"}"), 16, "{\"0\": \"A\", \"1\": \"B\"}");
  CHECK_THROWS_WITH_AS(parse(two_labels), doctest::Contains("has 2 labels; a value model has one"), error);
}
