// train/task.hpp: the grpo_zero task's text forms, splits and corpus.
#include "lmrl/train/task.hpp"

#include <set>
#include <string>

#include "lmrl/reward/extract.hpp"
#include "lmrl/reward/format.hpp"
#include "support/testing.hpp"

using namespace lmrl;

TEST_CASE("a problem, its worked steps and both completions, by hand") {
  zero_task_options running;
  running.step_format = "running";
  const zero_task task(running), rewrite;
  const zero_problem p = task.make({47, 18, 93, 25});
  CHECK(p.expression == "47+18+93+25");
  CHECK(p.answer == "183");
  CHECK(p.prompt == "Think in <think> </think>, then answer in <answer> </answer>. User: 47+18+93+25. Assistant: <think>");
  CHECK(task.worked_steps(p) == "47+18=65\n65+93=158\n158+25=183");
  CHECK(rewrite.worked_steps(p) == "47+18+93+25\n=65+93+25\n=158+25\n=183");
  zero_task_options remaining_options;
  remaining_options.step_format = "remaining";
  const zero_task remaining(remaining_options);
  CHECK(remaining.worked_steps(p) == "47+18+93+25\n47+18=65 +93+25\n65+93=158 +25\n158+25=183");
  CHECK(is_strict_format(remaining.worked_completion(p, false), true));
  CHECK(task.worked_completion(p) ==
        "\n47+18=65\n65+93=158\n158+25=183\n</think>\n<answer>\n183\n</answer><|endoftext|>");
  CHECK(zero_task::direct_completion(p, false) == "\n\n</think>\n<answer>\n183\n</answer>");
  // Both keep the strict R1 format and carry the answer where the reward reads it.
  for (const std::string& c : {task.worked_completion(p, false), rewrite.worked_completion(p, false),
                               zero_task::direct_completion(p, false)}) {
    CHECK(is_strict_format(c, true));
    CHECK(extract_answer_tag(c) == std::optional<std::string>("183"));
  }
  CHECK(completion_thinks(task.worked_completion(p)));
  CHECK(completion_thinks(rewrite.worked_completion(p)));
  CHECK_FALSE(completion_thinks(zero_task::direct_completion(p)));
  CHECK(completion_thinks("\n12+3=15\n15+"));  // truncated while thinking
  CHECK_FALSE(completion_thinks(" \n "));
  const auto ex = task.example(p, true);
  CHECK(ex.text.substr(0, ex.completion_offset) == p.prompt);
  CHECK(ex.text.substr(ex.completion_offset) == task.worked_completion(p));
}

TEST_CASE("generators: deterministic per seed, operands in range, held-out problems never in the train split") {
  zero_task_options o;
  zero_task_generator a(o, 5), b(o, 5), c(o, 6);
  const auto pa = a.take(50), pb = b.take(50), pc = c.take(50);
  int same = 0;
  for (std::size_t k = 0; k < pa.size(); ++k) {
    CHECK(pa[k].expression == pb[k].expression);
    same += pa[k].expression == pc[k].expression;
    REQUIRE(pa[k].operands.size() == 4);
    for (auto x : pa[k].operands) CHECK((x >= 10 && x <= 99));
    CHECK(data::split_of(pa[k].expression, o.split) == data::split::train);
  }
  CHECK(same < 5);
  const auto held = zero_held_out(o, 300);
  std::set<std::string> distinct;
  for (const auto& p : held) {
    distinct.insert(p.expression);
    CHECK(data::split_of(p.expression, o.split) == data::split::test);
  }
  CHECK(distinct.size() == 300);
  CHECK(zero_held_out(o, 300)[17].expression == held[17].expression);
}

TEST_CASE("corpus: worked and practice shares, practice lines in the step form with correct sums") {
  zero_task_options o;
  o.operands = 3;
  o.step_format = "running";
  zero_corpus corpus(o, 0.25, 9, 0.4, 5);
  int worked = 0, practice = 0, direct = 0;
  const int n = 4000;
  for (int k = 0; k < n; ++k) {
    const corpus_example e = corpus.next();
    if (e.practice) {
      ++practice;
      CHECK(e.completion_offset == 0);
      // "\na+b=c" x 5 with c = a + b, a <= 2 * 99, b two digits
      std::size_t pos = 0;
      int lines = 0;
      while (pos < e.text.size()) {
        REQUIRE(e.text[pos] == '\n');
        const auto end = e.text.find('\n', pos + 1);
        const std::string line = e.text.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
        const auto plus = line.find('+'), eq = line.find('=');
        REQUIRE((plus != std::string::npos && eq != std::string::npos));
        const long a = std::stol(line.substr(0, plus)), b = std::stol(line.substr(plus + 1, eq - plus - 1));
        CHECK(std::stol(line.substr(eq + 1)) == a + b);
        CHECK((a >= 10 && a <= 198 && b >= 10 && b <= 99));
        ++lines;
        pos = end == std::string::npos ? e.text.size() : end;
      }
      CHECK(lines == 5);
    } else {
      (e.worked ? worked : direct) += 1;
      CHECK(e.text.find("Assistant: <think>") + std::string("Assistant: <think>").size() == e.completion_offset);
      CHECK(completion_thinks(e.text.substr(e.completion_offset)) == e.worked);
    }
  }
  CHECK(practice / double(n) == doctest::Approx(0.4).epsilon(0.1));
  CHECK(worked / double(worked + direct) == doctest::Approx(0.25).epsilon(0.15));
  CHECK_THROWS_WITH_AS(zero_corpus(o, 1.5, 1), doctest::Contains("worked_fraction = 1.5"), lmrl::error);
  CHECK_THROWS_WITH_AS(zero_corpus(o, 0.5, 1, -0.1), doctest::Contains("practice_fraction = -0.1"), lmrl::error);
  o.step_format = "columns";
  CHECK_THROWS_WITH_AS(zero_task{o}, doctest::Contains("step_format = \"columns\""), lmrl::error);
  o.step_format = "rewrite";
  o.digits = 12;
  CHECK_THROWS_WITH_AS(zero_task{o}, doctest::Contains("digits = 12"), lmrl::error);
}

TEST_CASE("rewrite practice packs are whole worked chains of training problems, each line correct") {
  zero_task_options o;  // rewrite, four 2-digit numbers
  const zero_task task(o);
  data::task_rng rng(3);
  const std::string pack = practice_pack(task, rng, 7);  // 7 steps -> three chains of three steps
  // Split into lines; a chain starts with an expression without '=' and ends with a single number.
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < pack.size()) {
    REQUIRE(pack[pos] == '\n');
    const auto end = pack.find('\n', pos + 1);
    lines.push_back(pack.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1));
    pos = end == std::string::npos ? pack.size() : end;
  }
  REQUIRE(lines.size() == 3 * 4);
  const auto numbers = [](std::string line) {
    if (!line.empty() && line[0] == '=') line.erase(0, 1);
    std::vector<long> xs;
    std::size_t at = 0;
    while (at <= line.size()) {
      const auto plus = line.find('+', at);
      xs.push_back(std::stol(line.substr(at, plus == std::string::npos ? std::string::npos : plus - at)));
      if (plus == std::string::npos) break;
      at = plus + 1;
    }
    return xs;
  };
  for (std::size_t chain = 0; chain < 3; ++chain) {
    CHECK(lines[chain * 4].find('=') == std::string::npos);
    CHECK(data::split_of(lines[chain * 4], o.split) == data::split::train);  // never a held-out problem
    for (std::size_t k = 1; k < 4; ++k) {
      const auto prev = numbers(lines[chain * 4 + k - 1]), cur = numbers(lines[chain * 4 + k]);
      CHECK(lines[chain * 4 + k][0] == '=');
      REQUIRE(cur.size() + 1 == prev.size());
      CHECK(cur[0] == prev[0] + prev[1]);  // the first two numbers added
      for (std::size_t j = 1; j < cur.size(); ++j) CHECK(cur[j] == prev[j + 1]);  // the rest copied
    }
  }
  // 300 more chains: with a tenth of all problems held out, drawing them without the split would give ~30.
  int held_out = 0;
  for (int k = 0; k < 300; ++k) {
    const std::string one = practice_pack(task, rng, 1);  // one chain: "\n<expression>\n=..."
    held_out += data::split_of(one.substr(1, one.find('\n', 1) - 1), o.split) == data::split::test;
  }
  CHECK(held_out == 0);
}
