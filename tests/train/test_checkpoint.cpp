// checkpoint: atomic directories, `latest`, exact tensors, the old checkpoint
// survives an interrupted save, writable-directory check.
#include "lmrl/train/checkpoint.hpp"

#include <unistd.h>

#include <filesystem>
#include <vector>

#include "lmrl/train/signals.hpp"
#include "support/testing.hpp"

using namespace lmrl;
namespace fs = std::filesystem;

static std::string fresh_dir(const char* name) {
  const auto p = fs::temp_directory_path() / (std::string("lmrl_t1_ckpt_") + std::to_string(::getpid()) + name);
  fs::remove_all(p);
  return p.string();
}

TEST_CASE("checkpoint_writer: commit, latest, exact tensors, keep the newest") {
  const std::string dir = fresh_dir("a");
  require_writable_directory(dir);
  CHECK_FALSE(latest_checkpoint(dir).has_value());
  const std::vector<double> w = {0.1, -1e-300, 3.0};
  for (int step : {2, 4}) {
    checkpoint_writer c(dir, step);
    c.write_tensors<double>("model.safetensors", {{"w", std::span<const double>(w)}});
    c.write_file("trainer_state.json", "{\"step\": " + std::to_string(step) + "}");
    c.commit(1);
  }
  const auto latest = latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  CHECK(fs::path(*latest).filename() == "checkpoint-4");
  CHECK_FALSE(fs::exists(fs::path(dir) / "checkpoint-2"));  // keep = 1
  const auto file = safetensors::reader::from_file(*latest + "/model.safetensors");
  std::vector<double> back(3);
  read_checkpoint_tensor<double>(file, "w", back);
  CHECK(back == w);  // bit for bit (F64)
  fs::remove_all(dir);
}

TEST_CASE("checkpoint_writer: a save that fails before commit keeps the last good checkpoint") {
  const std::string dir = fresh_dir("b");
  require_writable_directory(dir);
  {
    checkpoint_writer c(dir, 1);
    c.write_file("trainer_state.json", "{}");
    c.commit();
  }
  try {
    checkpoint_writer c(dir, 2);
    c.write_file("trainer_state.json", "{}");
    throw error("simulated crash while saving");
  } catch (const error&) {
  }
  const auto latest = latest_checkpoint(dir);
  REQUIRE(latest.has_value());
  CHECK(fs::path(*latest).filename() == "checkpoint-1");
  CHECK_FALSE(fs::exists(fs::path(dir) / "checkpoint-2"));
  // A temporary directory left by a SIGKILL is ignored and cleaned by the next save.
  fs::create_directories(fs::path(dir) / ".tmp-checkpoint-9-1");
  { checkpoint_writer c(dir, 3); }
  CHECK_FALSE(fs::exists(fs::path(dir) / ".tmp-checkpoint-9-1"));
  fs::remove_all(dir);
}

TEST_CASE("require_writable_directory: a file in the way fails with the path") {
  const std::string dir = fresh_dir("c");
  fs::create_directories(dir);
  { std::ofstream(dir + "/file") << "x"; }
  CHECK_THROWS_WITH_AS(require_writable_directory(dir + "/file/sub"), doctest::Contains("cannot be created"), error);
  CHECK_THROWS_WITH_AS(require_writable_directory(dir + "/file"), doctest::Contains("file\" cannot be created"), error);
  fs::remove_all(dir);
}

TEST_CASE("signals: the stop flag") {
  clear_stop_request();
  CHECK_FALSE(stop_requested());
  request_stop();
  CHECK(stop_requested());
  CHECK(stop_signal_number() == SIGINT);
  clear_stop_request();
}
