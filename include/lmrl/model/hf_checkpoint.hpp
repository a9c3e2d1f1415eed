// Hugging Face model directories: config.json <-> transformer_config, and the
// weights (model.safetensors, or the sharded model.safetensors.index.json +
// model-0000k-of-0000n.safetensors) <-> transformer_parameters<T>.
//
//   auto params = lmrl::load_hf_checkpoint<float>("Qwen2.5-0.5B/");   // any float dtype on disk
//   lmrl::save_hf_checkpoint(params, "out/", {.dtype = lmrl::safetensors::dtype::BF16});
//
// A directory lmrl saves loads in transformers (Qwen2ForCausalLM /
// LlamaForCausalLM.from_pretrained) and back here bit for bit (F32).
//
// config.json: the fields of Qwen2Config / LlamaConfig that shape the model.
// Absent optional fields take transformers' defaults for that model_type
// (tie_word_embeddings false, num_key_value_heads = num_attention_heads,
// rope_theta 10000, rms_norm_eps 1e-6, max_position_embeddings 32768 for
// qwen2 and 2048 for llama). Qwen2 always has q/k/v biases (its config has no
// attention_bias field; transformers hard-codes bias=True); Llama reads
// attention_bias (default false). What the bundled transformer cannot compute
// is an error, never silently ignored: hidden_act other than silu, any RoPE
// scaling (rope_scaling not null, or transformers 5's rope_parameters with a
// rope_type other than "default"), sliding-window layers, Llama's mlp_bias or
// a head_dim other than hidden_size / num_attention_heads. Both the
// transformers 4 spelling (torch_dtype, rope_theta) and the transformers 5
// spelling (dtype, rope_parameters.rope_theta) are read; lmrl writes both.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/model/config.hpp"
#include "lmrl/model/parameters.hpp"
#include "lmrl/model/safetensors.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

// config.json seen through lmrl: the shapes, plus what names the architecture
// and the dtype the weights were trained in.
struct hf_config {
  transformer_config model;
  std::string model_type = "qwen2";    // "qwen2" or "llama"
  std::string torch_dtype = "float32";  // "float32", "bfloat16", "float16"
};

// Parses a config.json document; source names it in errors.
inline hf_config parse_hf_config(const json::value& doc, const std::string& source = "config.json") {
  const json::node root(doc, source);
  root.expect(json::kind::object);
  hf_config out;
  out.model_type = root.at("model_type").as_string();
  const bool qwen2 = out.model_type == "qwen2", llama = out.model_type == "llama";
  if (!qwen2 && !llama) root.at("model_type").fail("\"", out.model_type, "\" is not supported (known: qwen2, llama)");

  transformer_config& c = out.model;
  json::node field = root;
  auto integer = [&](const char* name) {
    const json::node n = root.at(name);
    const std::int64_t v = n.as_int64();
    if (v <= 0) n.fail("must be a positive integer, got ", v);
    return static_cast<index_t>(v);
  };
  c.vocab_size = integer("vocab_size");
  c.hidden_size = integer("hidden_size");
  c.num_hidden_layers = integer("num_hidden_layers");
  c.num_attention_heads = integer("num_attention_heads");
  c.intermediate_size = integer("intermediate_size");
  c.num_key_value_heads = root.maybe("num_key_value_heads", field) ? integer("num_key_value_heads") : c.num_attention_heads;
  c.max_position_embeddings = root.maybe("max_position_embeddings", field) ? integer("max_position_embeddings")
                                                                           : (qwen2 ? 32768 : 2048);
  c.rms_norm_eps = root.maybe("rms_norm_eps", field) ? field.as_double() : 1e-6;
  c.tie_word_embeddings = root.maybe("tie_word_embeddings", field) ? field.as_bool() : false;
  if (qwen2) {
    c.attention_bias = true;
  } else {
    c.attention_bias = root.maybe("attention_bias", field) ? field.as_bool() : false;
    if (root.maybe("mlp_bias", field) && field.as_bool()) field.fail("mlp_bias = true is not supported");
    if (root.maybe("head_dim", field) && field.as_int64() != c.hidden_size / c.num_attention_heads)
      field.fail("head_dim = ", field.as_int64(), " differs from hidden_size / num_attention_heads = ",
                 c.hidden_size / c.num_attention_heads, ", which the bundled transformer assumes");
  }

  // A value model (TRL's critic: *ForSequenceClassification, one label) has score.weight.
  if (root.maybe("architectures", field) && field.type() == json::kind::array && field.size() > 0) {
    const std::string arch = field[0].as_string();
    const std::string_view suffix = "ForSequenceClassification";
    c.value_head = arch.size() >= suffix.size() && arch.compare(arch.size() - suffix.size(), suffix.size(), suffix) == 0;
    json::node labels = root;
    if (c.value_head && root.maybe("id2label", labels) && labels.type() == json::kind::object && labels.size() != 1)
      labels.fail("has ", labels.size(), " labels; a value model has one");
  }

  if (root.maybe("hidden_act", field) && field.as_string() != "silu")
    field.fail("\"", field.as_string(), "\" is not supported (the bundled transformer uses silu)");

  // RoPE: rope_theta at the top (transformers 4) or in rope_parameters (5).
  c.rope_theta = 10000.0;
  if (root.maybe("rope_theta", field)) c.rope_theta = field.as_double();
  if (root.maybe("rope_scaling", field))
    field.fail("RoPE scaling is not supported (expected null, got ", json::kind_name(field.type()), ")");
  json::node rope = root;
  if (root.maybe("rope_parameters", rope)) {
    json::node n = rope;
    if (rope.maybe("rope_type", n) && n.as_string() != "default")
      n.fail("RoPE type \"", n.as_string(), "\" is not supported (only \"default\")");
    if (rope.maybe("rope_theta", n)) c.rope_theta = n.as_double();
  }

  // Sliding-window attention (Qwen2): layers >= max_window_layers slide when use_sliding_window.
  if (root.maybe("use_sliding_window", field) && field.as_bool()) {
    json::node m = root;
    const std::int64_t window_from = root.maybe("max_window_layers", m) ? m.as_int64() : 28;
    if (window_from < c.num_hidden_layers)
      field.fail("sliding-window attention (from layer ", window_from, ") is not supported");
  }
  if (root.maybe("layer_types", field))
    for (std::size_t i = 0; i < field.size(); ++i)
      if (field[i].as_string() != "full_attention")
        field[i].fail("\"", field[i].as_string(), "\" is not supported (only full_attention)");

  if (root.maybe("dtype", field) || root.maybe("torch_dtype", field)) out.torch_dtype = field.as_string();
  try {
    c.validate();
  } catch (const error& e) {
    detail::fail(source, ": ", e.what());
  }
  return out;
}

namespace detail {
// The shortest text that reads back as the same double (1e-06, 10000.0), as Python's repr writes it.
inline std::string json_double(double v) {
  if (v == std::floor(v) && std::abs(v) < 1e15) return std::to_string(static_cast<long long>(v)) + ".0";
  char buffer[32];
  const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  std::string s(buffer, end);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // stays a float for Python
  return s;
}
}  // namespace detail

inline hf_config read_hf_config(const std::string& path) { return parse_hf_config(json::parse_file(path), path); }

// The config.json text transformers reads back into the same model.
inline std::string hf_config_json(const hf_config& config) {
  const transformer_config& c = config.model;
  c.validate();
  const bool qwen2 = config.model_type == "qwen2";
  detail::require(qwen2 || config.model_type == "llama", "hf_config_json: model_type \"", config.model_type,
                  "\" is not supported (known: qwen2, llama)");
  detail::require(qwen2 ? c.attention_bias : true, "hf_config_json: a qwen2 model always has q/k/v biases; ",
                  "use model_type llama for attention_bias = false");
  const std::string theta = detail::json_double(c.rope_theta);
  std::ostringstream s;
  auto boolean = [](bool b) { return b ? "true" : "false"; };
  s << "{\n"
    << "  \"architectures\": [\"" << (qwen2 ? "Qwen2" : "Llama")
    << (c.value_head ? "ForSequenceClassification" : "ForCausalLM") << "\"],\n"
    << "  \"model_type\": \"" << config.model_type << "\",\n"
    << "  \"vocab_size\": " << c.vocab_size << ",\n"
    << "  \"hidden_size\": " << c.hidden_size << ",\n"
    << "  \"intermediate_size\": " << c.intermediate_size << ",\n"
    << "  \"num_hidden_layers\": " << c.num_hidden_layers << ",\n"
    << "  \"num_attention_heads\": " << c.num_attention_heads << ",\n"
    << "  \"num_key_value_heads\": " << c.num_key_value_heads << ",\n"
    << "  \"hidden_act\": \"silu\",\n"
    << "  \"max_position_embeddings\": " << c.max_position_embeddings << ",\n"
    << "  \"rms_norm_eps\": " << detail::json_double(c.rms_norm_eps) << ",\n"
    << "  \"rope_theta\": " << theta << ",\n"
    << "  \"rope_scaling\": null,\n"
    << "  \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": " << theta << "},\n"
    << "  \"tie_word_embeddings\": " << boolean(c.tie_word_embeddings) << ",\n";
  if (c.value_head) s << "  \"id2label\": {\"0\": \"LABEL_0\"},\n  \"label2id\": {\"LABEL_0\": 0},\n";
  if (qwen2)
    s << "  \"use_sliding_window\": false,\n";
  else
    s << "  \"attention_bias\": " << boolean(c.attention_bias) << ",\n  \"mlp_bias\": false,\n";
  s << "  \"torch_dtype\": \"" << config.torch_dtype << "\",\n"
    << "  \"dtype\": \"" << config.torch_dtype << "\"\n"
    << "}\n";
  return s.str();
}

inline void write_hf_config(const std::string& path, const hf_config& config) {
  write_file_atomically(path, hf_config_json(config));
}

namespace detail {

// The tensors of a model directory across its safetensors files.
class checkpoint_files {
 public:
  explicit checkpoint_files(const std::filesystem::path& dir) {
    const auto single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(single)) {  // transformers prefers the single file too
      add_file(single.string());
    } else if (std::filesystem::exists(index)) {
      const json::value doc = json::parse_file(index.string());
      const json::node root(doc, index.string());
      std::map<std::string, std::string> expected_file;  // tensor -> shard
      std::vector<std::string> shards;
      for (const auto& m : root.at("weight_map").as_object()) {
        const json::node file = root.at("weight_map").member_value(m);
        const std::string& shard = file.as_string();
        if (shard.find('/') != std::string::npos || shard == "..")
          file.fail("shard \"", shard, "\" must be a file name in the same directory");
        if (!expected_file.emplace(m.first, shard).second) file.fail("tensor listed twice");
        if (std::find(shards.begin(), shards.end(), shard) == shards.end()) shards.push_back(shard);
      }
      for (const auto& shard : shards) add_file((dir / shard).string());
      for (const auto& [name, shard] : expected_file) {
        const auto it = where_.find(name);
        if (it == where_.end() || std::filesystem::path(files_[it->second].source()).filename() != shard)
          fail(index.string(), ": tensor \"", name, "\" is mapped to ", shard, " but that file does not hold it");
      }
      for (const auto& [name, file] : where_)
        if (!expected_file.count(name))
          fail(files_[file].source(), ": tensor \"", name, "\" is not listed in ", index.string());
    } else {
      fail("load_hf_checkpoint: ", dir.string(), " has neither model.safetensors nor model.safetensors.index.json");
    }
  }

  const safetensors::tensor_info* find(const std::string& name, const safetensors::reader** file) const {
    const auto it = where_.find(name);
    if (it == where_.end()) return nullptr;
    *file = &files_[it->second];
    return files_[it->second].find(name);
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& f : files_)
      for (const auto& t : f.tensors()) out.push_back(t.name);
    return out;
  }

 private:
  void add_file(const std::string& path) {
    files_.push_back(safetensors::reader::from_file(path));
    const std::size_t k = files_.size() - 1;
    for (const auto& t : files_[k].tensors())
      if (!where_.emplace(t.name, k).second)
        fail("load_hf_checkpoint: tensor \"", t.name, "\" is in both ", files_[where_[t.name]].source(), " and ", path);
  }
  std::vector<safetensors::reader> files_;
  std::map<std::string, std::size_t> where_;
};

inline std::string shape_string(const std::vector<index_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace detail

// Loads config.json and the weights of a model directory, converting any
// float dtype on disk to T. Every tensor of the layout must be present with
// its shape; a tensor the layout does not know is an error, except
// lm_head.weight in a tied checkpoint when it equals the embedding (some
// exporters write it) and the rotary inv_freq buffers old Llama exports hold.
template <Real T = float>
transformer_parameters<T> load_hf_checkpoint(const std::string& directory, hf_config* config_out = nullptr) {
  const std::filesystem::path dir(directory);
  const hf_config config = read_hf_config((dir / "config.json").string());
  if (config_out != nullptr) *config_out = config;
  transformer_parameters<T> params(config.model);
  const detail::checkpoint_files files(dir);

  std::set<std::string> used;
  for (const auto& e : params.layout().entries()) {
    const safetensors::reader* file = nullptr;
    const safetensors::tensor_info* t = files.find(e.name, &file);
    if (t == nullptr)
      detail::fail("load_hf_checkpoint: ", directory, ": missing tensor \"", e.name, "\" (shape ",
                   detail::shape_string(e.shape), ")");
    if (!std::equal(t->shape.begin(), t->shape.end(), e.shape.begin(), e.shape.end()))
      detail::fail("load_hf_checkpoint: ", file->source(), ": tensor \"", e.name, "\" has shape ",
                   safetensors::detail::shape_string(t->shape), " but config.json implies ", detail::shape_string(e.shape));
    file->read(e.name, params.tensor(e.name));
    used.insert(e.name);
  }
  for (const std::string& name : files.names()) {
    if (used.count(name)) continue;
    const safetensors::reader* file = nullptr;
    const safetensors::tensor_info* t = files.find(name, &file);
    if (name.ends_with(".self_attn.rotary_emb.inv_freq")) continue;  // a buffer recomputed from rope_theta
    if (name == "lm_head.weight" && config.model.tie_word_embeddings) {
      const auto& embed = params.layout().at("model.embed_tokens.weight");
      if (!std::equal(t->shape.begin(), t->shape.end(), embed.shape.begin(), embed.shape.end()))
        detail::fail("load_hf_checkpoint: ", file->source(), ": tied lm_head.weight has shape ",
                     safetensors::detail::shape_string(t->shape), ", the embedding ", detail::shape_string(embed.shape));
      const std::vector<T> head = file->template read<T>(name);
      const std::span<T> emb = params.tensor("model.embed_tokens.weight");
      if (!std::equal(head.begin(), head.end(), emb.begin()))
        detail::fail("load_hf_checkpoint: ", file->source(),
                     ": lm_head.weight differs from model.embed_tokens.weight but config.json has "
                     "tie_word_embeddings = true");
      continue;
    }
    detail::fail("load_hf_checkpoint: ", file->source(), ": unexpected tensor \"", name, "\" (not in the ",
                 config.model_type, " layout of config.json", config.model.tie_word_embeddings ? ", which is tied" : "",
                 ")");
  }
  return params;
}

struct hf_save_options {
  safetensors::dtype dtype = safetensors::dtype::F32;  // F32 (exact) or BF16 (half the size, as Qwen ships)
  std::string model_type = "qwen2";                    // "llama" for a model without q/k/v biases
};

// Writes config.json and model.safetensors (tensors in checkpoint order,
// metadata {"format": "pt"} as transformers writes it). Each file is replaced
// atomically; the directory is created when missing.
template <Real T>
void save_hf_checkpoint(const transformer_parameters<T>& params, const std::string& directory,
                        const hf_save_options& options = {}) {
  using safetensors::dtype;
  detail::require(options.dtype == dtype::F32 || options.dtype == dtype::BF16 || options.dtype == dtype::F16,
                  "save_hf_checkpoint: dtype ", safetensors::dtype_name(options.dtype),
                  " is not a checkpoint dtype (F32, BF16, F16)");
  const std::filesystem::path dir(directory);
  std::filesystem::create_directories(dir);
  hf_config config{params.config(), options.model_type,
                   options.dtype == dtype::F32 ? "float32" : options.dtype == dtype::BF16 ? "bfloat16" : "float16"};
  const std::string config_text = hf_config_json(config);  // validates before anything is written

  safetensors::writer w;
  w.set_metadata("format", "pt");
  const std::span<const T> values = params.values();
  for (const auto& e : params.layout().entries())
    w.add(e.name, std::vector<std::int64_t>(e.shape.begin(), e.shape.end()),
          values.subspan(static_cast<std::size_t>(e.offset), static_cast<std::size_t>(e.size)), options.dtype);
  w.save((dir / "model.safetensors").string());
  write_file_atomically((dir / "config.json").string(), config_text);
}

}  // namespace lmrl
