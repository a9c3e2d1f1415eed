// checkpoint: crash-safe checkpoint directories.
//
//   <output_dir>/checkpoint-<step>/   model.safetensors, optimizer.safetensors,
//                                     ref_model.safetensors, trainer_state.json,
//                                     config.json, metrics.jsonl, ...
//   <output_dir>/latest               "checkpoint-<step>\n"
//
// A checkpoint is written into a hidden temporary directory, every file
// fsync'ed (atomic_file), then the directory is renamed to its final name, the
// output directory fsync'ed, and only then does `latest` (itself written
// atomically) point at it; older checkpoints are removed last. A crash or
// SIGKILL at any moment leaves `latest` naming a complete checkpoint, never a
// torn one: the last good checkpoint is never destroyed before the new one is
// durable. Leftover temporary directories are removed by the next save.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lmrl/error.hpp"
#include "lmrl/model/safetensors.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

namespace detail {

inline void fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse to open directories
  ::fsync(fd);
  ::close(fd);
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), "checkpoint: cannot read \"", path, "\"");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// "model" -> optimizer.safetensors (the policy's, as before); "critic" -> critic_optimizer.safetensors.
inline std::string optimizer_file(const std::string& name) {
  return name == "model" ? "optimizer.safetensors" : name + "_optimizer.safetensors";
}

}  // namespace detail

// Checks before any training that `dir` can be created and written (a probe
// file is created, fsync'ed and removed). Throws naming the directory and the reason.
inline void require_writable_directory(const std::string& dir, const char* what = "output_dir") {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) detail::fail(what, " \"", dir, "\" cannot be created: ", ec.message());
  detail::require(fs::is_directory(dir, ec), what, " \"", dir, "\" is not a directory");
  const std::string probe = (fs::path(dir) / (".write_probe." + std::to_string(::getpid()))).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) detail::fail(what, " \"", dir, "\" is not writable: ", std::strerror(errno));
  const bool ok = ::write(fd, "ok", 2) == 2 && ::fsync(fd) == 0;
  ::close(fd);
  ::unlink(probe.c_str());
  detail::require(ok, what, " \"", dir, "\" is not writable (writing a probe file failed)");
}

// Builds one checkpoint directory; commit() makes it the latest.
class checkpoint_writer {
 public:
  checkpoint_writer(std::string output_dir, std::int64_t step) : output_dir_(std::move(output_dir)), step_(step) {
    namespace fs = std::filesystem;
    remove_stale_temporaries(output_dir_);
    name_ = "checkpoint-" + std::to_string(step_);
    temp_ = (fs::path(output_dir_) / (".tmp-" + name_ + "-" + std::to_string(::getpid()))).string();
    std::error_code ec;
    fs::remove_all(temp_, ec);
    fs::create_directories(temp_, ec);
    if (ec) detail::fail("checkpoint_writer: cannot create \"", temp_, "\": ", ec.message());
  }
  checkpoint_writer(const checkpoint_writer&) = delete;
  checkpoint_writer& operator=(const checkpoint_writer&) = delete;
  ~checkpoint_writer() {
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove_all(temp_, ec);
    }
  }

  const std::string& directory() const { return temp_; }
  const std::string& name() const { return name_; }

  void write_file(const std::string& file, std::string_view contents) {
    write_file_atomically((std::filesystem::path(temp_) / file).string(), contents);
  }

  // Tensors in a safetensors file, stored in their own precision (F32 or F64)
  // so a restore is bit-exact.
  template <Real T>
  void write_tensors(const std::string& file, const std::vector<std::pair<std::string, std::span<const T>>>& tensors,
                     const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
    safetensors::writer w;
    const auto type = sizeof(T) == sizeof(float) ? safetensors::dtype::F32 : safetensors::dtype::F64;
    for (const auto& [name, data] : tensors)
      w.add<T>(name, {static_cast<std::int64_t>(data.size())}, data, type);
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);
    w.save((std::filesystem::path(temp_) / file).string());
  }

  // Renames the directory into place, points `latest` at it, and removes the
  // checkpoints older than the newest `keep` (0 keeps all).
  void commit(int keep = 1) {
    namespace fs = std::filesystem;
    detail::fsync_directory(temp_);
    const std::string final_dir = (fs::path(output_dir_) / name_).string();
    std::error_code ec;
    if (fs::exists(final_dir, ec)) {
      // Saving the same step again (a resumed run): move the old one aside
      // first; `latest` may point at it until the new one is in place.
      const std::string aside = final_dir + ".old-" + std::to_string(::getpid());
      fs::remove_all(aside, ec);
      fs::rename(final_dir, aside, ec);
      if (ec) detail::fail("checkpoint_writer: cannot move \"", final_dir, "\" aside: ", ec.message());
      fs::rename(temp_, final_dir, ec);
      if (ec) detail::fail("checkpoint_writer: cannot rename \"", temp_, "\" to \"", final_dir, "\": ", ec.message());
      fs::remove_all(aside, ec);
    } else {
      fs::rename(temp_, final_dir, ec);
      if (ec) detail::fail("checkpoint_writer: cannot rename \"", temp_, "\" to \"", final_dir, "\": ", ec.message());
    }
    detail::fsync_directory(output_dir_);
    write_file_atomically((fs::path(output_dir_) / "latest").string(), name_ + "\n");
    committed_ = true;
    if (keep > 0) {
      std::vector<std::pair<std::int64_t, fs::path>> all;
      for (const auto& e : fs::directory_iterator(output_dir_, ec)) {
        const std::string n = e.path().filename().string();
        if (!e.is_directory() || n.rfind("checkpoint-", 0) != 0) continue;
        const std::string digits = n.substr(11);
        if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
          continue;
        all.emplace_back(std::stoll(digits), e.path());
      }
      std::sort(all.begin(), all.end());
      for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < all.size(); ++i)
        if (all[i].second.filename() != name_) fs::remove_all(all[i].second, ec);
    }
  }

  static void remove_stale_temporaries(const std::string& output_dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(output_dir, ec))
      if (e.path().filename().string().rfind(".tmp-checkpoint-", 0) == 0) fs::remove_all(e.path(), ec);
  }

 private:
  std::string output_dir_;
  std::int64_t step_;
  std::string name_;
  std::string temp_;
  bool committed_ = false;
};

// The directory `latest` names, if it is complete (has the marker file); else nullopt.
inline std::optional<std::string> latest_checkpoint(const std::string& output_dir,
                                                    const std::string& marker = "trainer_state.json") {
  namespace fs = std::filesystem;
  const fs::path latest = fs::path(output_dir) / "latest";
  std::error_code ec;
  if (!fs::exists(latest, ec)) return std::nullopt;
  std::string name = detail::read_text_file(latest.string());
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  const fs::path dir = fs::path(output_dir) / name;
  if (name.empty() || !fs::exists(dir / marker, ec)) return std::nullopt;
  return dir.string();
}

// Reads a tensor written by write_tensors into `out` (same length), exactly.
template <Real T>
void read_checkpoint_tensor(const safetensors::reader& file, std::string_view name, std::span<T> out) {
  file.read<T>(name, out);
}

// A trainer's parameters and optimizer state in a checkpoint directory:
// model.safetensors ("parameters") and optimizer.safetensors ("exp_avg",
// "exp_avg_sq", the optimizer's step count in its metadata). Optimizer is
// adamw<T> or anything with the same state accessors.
template <Real T, class Optimizer>
void write_model_and_optimizer(checkpoint_writer& w, std::span<const T> params, const Optimizer& optimizer,
                               const std::string& name = "model") {
  w.write_tensors<T>(name + ".safetensors", {{"parameters", params}});
  w.write_tensors<T>(detail::optimizer_file(name), {{"exp_avg", optimizer.exp_avg()}, {"exp_avg_sq", optimizer.exp_avg_sq()}},
                     {{"step", std::to_string(optimizer.step_count())}});
}

// Restores what write_model_and_optimizer wrote, exactly; `optimizer_steps`
// is the step count the optimizer resumes from.
template <Real T, class Optimizer>
void read_model_and_optimizer(const std::string& dir, std::span<T> params, Optimizer& optimizer,
                              std::int64_t optimizer_steps, const std::string& name = "model") {
  safetensors::reader::from_file(dir + "/" + name + ".safetensors").read<T>("parameters", params);
  const auto opt = safetensors::reader::from_file(dir + "/" + detail::optimizer_file(name));
  optimizer.load_state(optimizer_steps, std::span<const T>(opt.read<T>("exp_avg")),
                       std::span<const T>(opt.read<T>("exp_avg_sq")));
}

}  // namespace lmrl
