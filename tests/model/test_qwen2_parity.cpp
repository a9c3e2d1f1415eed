// Parity with Hugging Face transformers' Qwen2ForCausalLM: the checkpoints in
// tests/data/qwen2_{tied,untied}/ (written by save_pretrained, see
// tools/make_qwen2_reference.py) are loaded through load_hf_checkpoint and must
// give transformers' logits, next-token log-probs, entropies and parameter
// gradients, through lmrl::transformer (full forward and backward over padded
// batches) and through the KV-cache decoder of generate.hpp (forward only).
//
// Index maps: HF's logits[b, t] (predicting token t + 1) is our logits row
// b*T + t; HF's logp[b, t] = log p(tokens[b, t+1] | tokens[b, <=t]) over
// [B x T-1] is our logp[b, t + 1] (our column 0 has no prediction and is 0);
// the same for entropies and for the loss weights w, u.
//
// Tolerance: float32 throughout on both sides, different summation orders, so
// each tensor must match to 1e-4 of its largest magnitude:
//   max |lmrl - transformers| <= 1e-4 * max |transformers|.
// (Measured errors are around 1e-6 relative; a wrong tensor, a transposed
// weight, a missing bias or an off-by-one position is off by 1e-1 or more.)
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lmrl/model/generate.hpp"
#include "lmrl/model/hf_checkpoint.hpp"
#include "lmrl/model/transformer.hpp"
#include "lmrl/tensor/dense.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

constexpr double tolerance = 1e-4;

struct qwen2_reference {
  std::string kind;
  std::vector<testing::reference_case> cases;
  const testing::reference_case& at(const std::string& name) const {
    for (const auto& c : cases)
      if (c.name == name) return c;
    throw error("qwen2 reference: no case " + name);
  }
};

qwen2_reference load(const std::string& kind) { return {kind, testing::load_reference(kind + "/reference.txt")}; }

// max |a - b| and max |b| over the entries where use is true.
void check_close(const std::vector<double>& ours, const std::vector<double>& theirs, const std::string& what,
                 const std::vector<bool>& use = {}) {
  REQUIRE(ours.size() == theirs.size());
  double err = 0, scale = 0;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    if (!use.empty() && !use[i]) continue;
    scale = std::max(scale, std::abs(theirs[i]));
    const double e = std::abs(ours[i] - theirs[i]);
    if (!(e <= err)) {  // also catches NaN
      err = e;
      worst = i;
    }
  }
  INFO(what, ": max error ", err, " at ", worst, " (ours ", ours[worst], ", transformers ", theirs[worst],
       "), max magnitude ", scale);
  CHECK(scale > 0);
  CHECK(err <= tolerance * scale);
}

}  // namespace

TEST_CASE("the cached decoder on a loaded Qwen2 checkpoint gives transformers' logits, log-probs and entropies") {
  for (const char* kind : {"qwen2_tied", "qwen2_untied"}) {
    INFO(kind);
    const qwen2_reference ref = load(kind);
    const auto params = load_hf_checkpoint<float>(std::string(LMRL_TEST_DATA_DIR) + "/" + kind);
    const index_t vocab = params.config().vocab_size;
    for (const char* batch : {"plain", "padded"}) {
      INFO(batch);
      const auto& c = ref.at(batch);
      const auto B = static_cast<index_t>(c.at("shape")[0]), T = static_cast<index_t>(c.at("shape")[1]);
      const auto& tokens = c.at("tokens");
      const auto& mask = c.at("attention_mask");
      // One pass: each sequence's real tokens (left padding dropped; the
      // decoder's positions count real tokens, as position_ids = cumsum(mask) - 1).
      std::vector<cached_token> rows;
      std::vector<index_t> flat;  // b * T + t of each row
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < T; ++t)
          if (mask[static_cast<std::size_t>(b * T + t)] == 1) {
            rows.push_back({b, static_cast<std::int32_t>(tokens[static_cast<std::size_t>(b * T + t)]), true});
            flat.push_back(b * T + t);
          }
      cached_decoder<float> decoder(params);
      decoder.reset(B, T);
      const matrix_view<const float> logits = decoder.forward(rows);
      REQUIRE(logits.shape[0] == static_cast<index_t>(rows.size()));
      REQUIRE(logits.shape[1] == vocab);

      std::vector<double> ours(static_cast<std::size_t>(B * T * vocab), 0.0);
      std::vector<bool> real(ours.size(), false);
      for (std::size_t r = 0; r < rows.size(); ++r)
        for (index_t v = 0; v < vocab; ++v) {
          const auto k = static_cast<std::size_t>(flat[r] * vocab + v);
          ours[k] = logits(static_cast<index_t>(r), v);
          real[k] = true;
        }
      check_close(ours, c.at("logits"), "logits", real);

      // log p(x_{t+1} | x_{<=t}) and the entropy of that distribution, from our
      // logits, against HF's [B x T-1] (both context and target real).
      std::vector<double> logp(static_cast<std::size_t>(B * (T - 1)), 0.0), entropy(logp.size(), 0.0);
      std::vector<bool> both(logp.size(), false);
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t + 1 < T; ++t) {
          const auto k = static_cast<std::size_t>(b * (T - 1) + t);
          both[k] = mask[static_cast<std::size_t>(b * T + t)] == 1 && mask[static_cast<std::size_t>(b * T + t + 1)] == 1;
          if (!both[k]) continue;
          const double* z = ours.data() + (b * T + t) * vocab;
          const double m = *std::max_element(z, z + vocab);
          double sum = 0, weighted = 0;
          for (index_t v = 0; v < vocab; ++v) sum += std::exp(z[v] - m), weighted += std::exp(z[v] - m) * (z[v] - m);
          const double lse = m + std::log(sum);
          logp[k] = z[static_cast<index_t>(tokens[static_cast<std::size_t>(b * T + t + 1)])] - lse;
          entropy[k] = std::log(sum) - weighted / sum;
        }
      check_close(logp, c.at("logp"), "log-probs", both);
      check_close(entropy, c.at("entropy"), "entropies", both);
    }
  }
}

TEST_CASE("lmrl::transformer on a loaded Qwen2 checkpoint gives transformers' logits, log-probs, entropies and gradients") {
  for (const char* kind : {"qwen2_tied", "qwen2_untied"}) {
    INFO(kind);
    const qwen2_reference ref = load(kind);
    transformer<float> model(load_hf_checkpoint<float>(std::string(LMRL_TEST_DATA_DIR) + "/" + kind));
    const index_t vocab = model.config().vocab_size;
    model.zero_grad();
    for (const char* name : {"plain", "padded"}) {
      INFO(name);
      const auto& c = ref.at(name);
      const auto B = static_cast<index_t>(c.at("shape")[0]), T = static_cast<index_t>(c.at("shape")[1]);
      const auto& mask = c.at("attention_mask");
      dense<std::int32_t, 2> tokens({B, T});
      dense<float, 2> attention({B, T}), grad_logp({B, T}), grad_entropy({B, T});
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t < T; ++t) {
          tokens(b, t) = static_cast<std::int32_t>(c.at("tokens")[static_cast<std::size_t>(b * T + t)]);
          attention(b, t) = static_cast<float>(mask[static_cast<std::size_t>(b * T + t)]);
        }
      for (index_t b = 0; b < B; ++b)
        for (index_t t = 0; t + 1 < T; ++t) {
          grad_logp(b, t + 1) = static_cast<float>(c.at("w")[static_cast<std::size_t>(b * (T - 1) + t)]);
          grad_entropy(b, t + 1) = static_cast<float>(c.at("u")[static_cast<std::size_t>(b * (T - 1) + t)]);
        }
      const token_batch<float> batch{tokens.view(), attention.view()};

      dense<float, 2> logits({B * T, vocab});
      model.logits(batch, logits.view());
      std::vector<double> ours(logits.data(), logits.data() + logits.size());
      std::vector<bool> real(ours.size());
      for (std::size_t k = 0; k < real.size(); ++k) real[k] = mask[k / static_cast<std::size_t>(vocab)] == 1;
      check_close(ours, c.at("logits"), "logits", real);

      dense<float, 2> logp({B, T}), entropy({B, T});
      model.log_probs(batch, logp.view(), entropy.view());
      std::vector<double> lp(static_cast<std::size_t>(B * (T - 1))), ent(lp.size());
      std::vector<bool> both(lp.size());
      for (index_t b = 0; b < B; ++b) {
        CHECK(logp(b, 0) == 0.0f);  // no prediction for the first position
        for (index_t t = 0; t + 1 < T; ++t) {
          const auto k = static_cast<std::size_t>(b * (T - 1) + t);
          lp[k] = logp(b, t + 1);
          ent[k] = entropy(b, t + 1);
          both[k] = attention(b, t) == 1 && attention(b, t + 1) == 1;
          if (!both[k]) {
            CHECK(logp(b, t + 1) == 0.0f);  // padding gets 0
            CHECK(entropy(b, t + 1) == 0.0f);
          }
        }
      }
      check_close(lp, c.at("logp"), "log-probs", both);
      check_close(ent, c.at("entropy"), "entropies", both);

      // Gradients accumulate over the two batches, as the reference's one loss sums them.
      model.backward(batch, grad_logp.view(), grad_entropy.view());
    }
    const auto& g = ref.at("gradients");
    std::size_t compared = 0;
    for (const auto& e : model.parameters().layout().entries()) {
      INFO(e.name);
      const auto grads = model.gradients().subspan(static_cast<std::size_t>(e.offset), static_cast<std::size_t>(e.size));
      check_close(std::vector<double>(grads.begin(), grads.end()), g.at("grad." + e.name), "gradient of " + e.name);
      ++compared;
    }
    CHECK(compared == (std::string(kind) == "qwen2_tied" ? 26u : 27u));
  }
}
