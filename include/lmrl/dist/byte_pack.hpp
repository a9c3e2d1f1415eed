// Packing numbers and arrays into one byte buffer and reading them back, for
// all_gather of variable-length records (a rank's rollouts: token ids,
// log-probs, flags, reward components). Same machine layout on every rank
// (one build, one architecture), so values travel as their raw bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "lmrl/error.hpp"

namespace lmrl {

class byte_writer {
 public:
  template <class T>
    requires std::is_trivially_copyable_v<T>
  void put(const T& value) {
    append(&value, sizeof(T));
  }
  // A length, then the elements.
  template <class T>
    requires std::is_trivially_copyable_v<T>
  void put_array(std::span<const T> values) {
    put<std::uint64_t>(values.size());
    append(values.data(), values.size_bytes());
  }
  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  void append(const void* p, std::size_t n) {
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n);
    if (n > 0) std::memcpy(bytes_.data() + at, p, n);
  }
  std::vector<std::byte> bytes_;
};

class byte_reader {
 public:
  explicit byte_reader(std::span<const std::byte> bytes, std::string what = "byte_reader")
      : bytes_(bytes), what_(std::move(what)) {}

  template <class T>
    requires std::is_trivially_copyable_v<T>
  T get() {
    need(sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return value;
  }
  template <class T>
    requires std::is_trivially_copyable_v<T>
  std::vector<T> get_array() {
    const auto n = get<std::uint64_t>();
    detail::require(n <= (bytes_.size() - at_) / sizeof(T), what_, ": an array of ", n, " elements of ", sizeof(T),
                    " bytes overruns the ", bytes_.size() - at_, " bytes left");
    std::vector<T> values(static_cast<std::size_t>(n));
    std::memcpy(values.data(), bytes_.data() + at_, values.size() * sizeof(T));
    at_ += values.size() * sizeof(T);
    return values;
  }
  bool done() const { return at_ == bytes_.size(); }

 private:
  void need(std::size_t n) const {
    detail::require(bytes_.size() - at_ >= n, what_, ": reading ", n, " bytes at offset ", at_, " of ", bytes_.size());
  }
  std::span<const std::byte> bytes_;
  std::string what_;
  std::size_t at_ = 0;
};

}  // namespace lmrl
