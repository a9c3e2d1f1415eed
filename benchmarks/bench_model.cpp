// Benchmarks of the model/ layer: tokenizers. Encode throughput (MB/s of
// UTF-8 text) of the Hugging Face byte-level BPE tokenizers (Qwen3,
// DeepSeek-V3) on the reference corpus repeated to about 4 MB, the byte
// tokenizer, and loading tokenizer.json. Paths are found from this file's
// location: <repo>/tests/data and <repo>/../shared/tokenizers (override the
// latter with the environment variable LMRL_SHARED_DIR).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "lmrl/data/json.hpp"
#include "lmrl/model/tokenizer.hpp"

namespace {

std::filesystem::path repo_root() {
  return std::filesystem::absolute(std::filesystem::path(__FILE__)).parent_path().parent_path();
}

std::string shared_tokenizers() {
  if (const char* env = std::getenv("LMRL_SHARED_DIR")) return std::string(env) + "/tokenizers";
  return (repo_root().parent_path() / "shared" / "tokenizers").string();
}

// The reference corpus of tests/data/tokenizer_<name>.txt joined by newlines,
// repeated to at least target bytes (what tools/make_tokenizer_reference.py --bench uses).
const std::string& corpus(const std::string& name, std::size_t target = 4u << 20) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  std::ifstream in(repo_root() / "tests" / "data" / ("tokenizer_" + name + ".txt"));
  std::string line, one;
  bool first = true;
  while (std::getline(in, line)) {
    if (line.rfind("t ", 0) != 0) continue;
    if (!first) one += '\n';
    one += lmrl::json::parse(line.substr(2)).as_string();
    first = false;
  }
  std::string text;
  const std::size_t copies = one.empty() ? 0 : std::max<std::size_t>(1, target / one.size());
  for (std::size_t k = 0; k < copies; ++k) text += one + "\n";
  return cache.emplace(name, std::move(text)).first->second;
}

const lmrl::bpe_tokenizer& tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<lmrl::bpe_tokenizer>> cache;
  auto it = cache.find(name);
  if (it == cache.end())
    it = cache.emplace(name, std::make_unique<lmrl::bpe_tokenizer>(lmrl::bpe_tokenizer::from_file(
                                 shared_tokenizers() + "/" + name + "/tokenizer.json"))).first;
  return *it->second;
}

void encode_bench(benchmark::State& state, const std::string& name) {
  const auto& tok = tokenizer(name);
  const std::string& text = corpus(name);
  std::vector<std::int32_t> ids;
  for (auto _ : state) {
    ids.clear();
    tok.encode(text, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(ids.size());
}

void BM_encode_qwen3(benchmark::State& state) { encode_bench(state, "qwen3"); }
void BM_encode_deepseek_v3(benchmark::State& state) { encode_bench(state, "deepseek_v3"); }

void BM_decode_qwen3(benchmark::State& state) {
  const auto& tok = tokenizer("qwen3");
  const std::string& text = corpus("qwen3");
  const auto ids = tok.encode(text);
  for (auto _ : state) benchmark::DoNotOptimize(tok.decode(ids));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text.size()));
}

void BM_encode_byte_tokenizer(benchmark::State& state) {
  const std::string& text = corpus("qwen3");
  std::vector<std::int32_t> ids;
  for (auto _ : state) {
    ids.clear();
    lmrl::byte_tokenizer::encode(text, ids);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text.size()));
}

void BM_load_qwen3(benchmark::State& state) {
  const std::string path = shared_tokenizers() + "/qwen3/tokenizer.json";
  for (auto _ : state) benchmark::DoNotOptimize(lmrl::bpe_tokenizer::from_file(path).vocab_size());
}

void BM_json_parse_qwen3(benchmark::State& state) {
  std::ifstream in(shared_tokenizers() + "/qwen3/tokenizer.json", std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (auto _ : state) benchmark::DoNotOptimize(lmrl::json::parse(text).size());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(text.size()));
}

}  // namespace

BENCHMARK(BM_encode_qwen3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_deepseek_v3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_decode_qwen3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_encode_byte_tokenizer)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_json_parse_qwen3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_load_qwen3)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
