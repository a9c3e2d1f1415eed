// train/sft.hpp: prompt-completion examples are tokenized with the loss
// starting at the completion, epochs visit every example once in a seeded
// shuffle, and supervised fine-tuning learns a task from its completions
// alone, packed or not.
#include "lmrl/train/sft.hpp"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "support/model_shapes.hpp"
#include "support/testing.hpp"

using namespace lmrl;

namespace {

// Letters a..p are ids 0..15; '|' is 16.
std::vector<std::int32_t> encode_letters(std::string_view s) {
  std::vector<std::int32_t> ids;
  for (char ch : s) ids.push_back(ch == '|' ? 16 : ch - 'a');
  return ids;
}

// Prompt "xyz|" -> completion "zyx": reverse three letters.
std::vector<pretrain_example> reversal_dataset(std::size_t n, std::uint64_t seed) {
  data::task_rng gen(seed);
  std::vector<pretrain_example> out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string prompt;
    for (int k = 0; k < 3; ++k) prompt += static_cast<char>('a' + data::uniform_below(gen, 16));
    const std::string completion(prompt.rbegin(), prompt.rend());
    out.push_back(sft_tokenize(prompt + "|", completion, encode_letters));
  }
  return out;
}

}  // namespace

TEST_CASE("sft_tokenize: prompt and completion encoded apart, the loss from the completion's first token") {
  const pretrain_example e = sft_tokenize("abc|", "cba", encode_letters);
  CHECK(e.tokens == std::vector<std::int32_t>{0, 1, 2, 16, 2, 1, 0});
  CHECK(e.loss_from == 4);
  CHECK_THROWS_WITH_AS(sft_tokenize("abc|", "", encode_letters), doctest::Contains("encodes to no token"),
                       lmrl::error);
}

TEST_CASE("epoch_sampler: every epoch is a permutation, seeded, and epochs differ") {
  std::vector<pretrain_example> examples;
  for (std::int32_t i = 0; i < 10; ++i) examples.push_back({{i, i}, 1});
  epoch_sampler a(examples, 3), b(examples, 3), c(examples, 4);
  std::vector<std::int32_t> first, second, other;
  for (int k = 0; k < 10; ++k) first.push_back(a().tokens[0]);
  for (int k = 0; k < 10; ++k) second.push_back(a().tokens[0]);
  for (int k = 0; k < 10; ++k) other.push_back(c().tokens[0]);
  CHECK(a.epoch() == 2);
  CHECK(std::set<std::int32_t>(first.begin(), first.end()).size() == 10);
  CHECK(std::set<std::int32_t>(second.begin(), second.end()).size() == 10);
  CHECK(first != second);
  CHECK(first != other);
  for (int k = 0; k < 10; ++k) CHECK(b().tokens[0] == first[static_cast<std::size_t>(k)]);
  CHECK_THROWS_AS(epoch_sampler({}, 1), lmrl::error);
}

TEST_CASE("sft_steps_for_epochs rounds up to whole batches") {
  CHECK(sft_steps_for_epochs(1, 100, 32) == 4);
  CHECK(sft_steps_for_epochs(3, 64, 32) == 6);
  CHECK(sft_steps_for_epochs(0.01, 10, 32) == 1);
  CHECK_THROWS_AS(sft_steps_for_epochs(0, 10, 32), lmrl::error);
}

TEST_CASE("supervised fine-tuning learns to reverse three letters from the completions alone, packed or not") {
  const auto train = reversal_dataset(512, 1), test = reversal_dataset(64, 2);
  for (const bool packing : {false, true}) {
    CAPTURE(packing);
    transformer<float> model(testing::transformer_shape(17, 32, 2, 4, 2, 64), 5);
    pretrain_config c;
    c.steps = 600;
    c.batch_size = 32;
    c.lr = 1e-2;
    c.log_every = 600;
    c.packing = packing;
    c.max_length = 32;  // four 7-token examples per row
    const double before = next_token_loss(model, test, false);
    const pretrain_result r = supervised_fine_tune(model, train, c, 7);
    const double after = next_token_loss(model, test, false);
    INFO("held-out completion NLL ", before, " -> ", after);
    CHECK(before > 2.0);   // about log(17) = 2.8 at the start
    CHECK(after < 0.25);   // the reversal is learned on unseen prompts
    REQUIRE(r.records.size() == 1);
    CHECK(r.records[0].step == 600);
  }
  std::vector<pretrain_example> nothing = {{{1, 2, 3}, 3}};
  CHECK_THROWS_WITH_AS(supervised_fine_tune(*std::make_unique<transformer<float>>(
                                                testing::transformer_shape(17, 32, 2, 4, 2, 64), 5),
                                            nothing, pretrain_config{}, 1),
                       doctest::Contains("nothing to learn"), lmrl::error);
}
