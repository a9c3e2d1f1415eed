// safetensors: read and write the Hugging Face tensor file format, and
// lmrl::atomic_file, the crash-safe way every lmrl checkpoint file is written.
//
// The format (https://github.com/huggingface/safetensors):
//
//   8 bytes   N, unsigned little-endian
//   N bytes   a JSON object {"<name>": {"dtype": "F32", "shape": [2, 3],
//             "data_offsets": [begin, end]}, ..., "__metadata__": {"k": "v"}}
//             padded with spaces to a multiple of 8 (as the Rust crate writes it)
//   the rest  the tensors' bytes, little-endian, row-major; data_offsets are
//             relative to the start of this section
//
//   auto file = safetensors::reader::from_file("model.safetensors");
//   std::vector<float> w = file.read<float>("model.norm.weight");  // F32/F16/BF16/F64 -> float
//
//   safetensors::writer out;
//   out.add("w", {2, 3}, std::span<const float>(values), safetensors::dtype::BF16);
//   out.save("model.safetensors");   // temp file + fsync + rename + fsync(dir)
//
// Reading validates as the Rust crate does, and says which file, which tensor
// and what was expected: truncated file, header length beyond the file, a
// header that is not JSON or not an object, an unknown dtype, a negative or
// non-integer shape, data_offsets that do not match dtype x shape, that leave
// a gap, overlap or run past the data, bytes left after the last tensor,
// duplicate names, metadata values that are not strings.
//
// Conversions are exact and match torch's CPU casts bit for bit: F16/BF16 ->
// float is exact (subnormals, infinities, NaN payloads kept); float -> F16/BF16
// rounds to nearest, ties to even; overflow gives infinity; NaN stays NaN
// (sign kept, quiet bit set; F16 NaN is sign|0x7E00 as torch writes it, for
// BF16 torch's vectorized path writes 0xFFFF and its scalar path 0x7FC0 —
// lmrl writes sign|0x7FC0). A double goes to F16/BF16 through float, exactly
// as torch's .to(torch.bfloat16) of a float64 tensor does (so it can round
// twice); F64 -> float rounds once to nearest.
//
// POSIX only (open/write/fsync/rename).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lmrl/data/json.hpp"
#include "lmrl/error.hpp"
#include "lmrl/tensor/concepts.hpp"

namespace lmrl {

// ----------------------------------------------------------------- atomic_file
//
// Writes a file so that a crash, a full disk or an exception at any point
// leaves either the old file or the complete new one, never a torn mix:
// the bytes go to a temporary file in the same directory (same filesystem, so
// rename is atomic), which is fsync'ed and renamed over the target, and then
// the directory is fsync'ed so the rename itself is durable. Without commit()
// (an exception unwinds past it) the temporary file is removed.
class atomic_file {
 public:
  explicit atomic_file(std::string path) : path_(std::move(path)) {
    static std::atomic<unsigned> counter{0};
    temp_ = path_ + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) fail_errno("cannot create the temporary file " + temp_);
  }
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;
  ~atomic_file() { abandon(); }

  const std::string& path() const { return path_; }
  const std::string& temporary_path() const { return temp_; }
  std::uint64_t bytes_written() const { return written_; }

  void write(const void* data, std::size_t size) {
    require_open();
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd_, p, size);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_errno("write to " + temp_ + " failed");
      p += n;
      size -= static_cast<std::size_t>(n);
      written_ += static_cast<std::uint64_t>(n);
    }
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  // fsync, rename over the target, fsync the directory.
  void commit() {
    require_open();
    if (::fsync(fd_) != 0) fail_errno("fsync of " + temp_ + " failed");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) {
      ::unlink(temp_.c_str());
      fail_errno("close of " + temp_ + " failed");
    }
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      const int e = errno;
      ::unlink(temp_.c_str());
      errno = e;
      fail_errno("cannot rename " + temp_ + " to " + path_);
    }
    committed_ = true;
    const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
    const std::string dir = parent.empty() ? std::string(".") : parent.string();  // not dir = ".": GCC 12 -Wrestrict
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {  // the rename is done; a directory that cannot be fsync'ed is not an error
      ::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  void require_open() const {
    detail::require(fd_ >= 0 && !committed_, "atomic_file: ", path_, " is already committed or abandoned");
  }
  void abandon() noexcept {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
      ::unlink(temp_.c_str());
    }
  }
  [[noreturn]] void fail_errno(const std::string& what) {
    const int e = errno;
    abandon();
    detail::fail("atomic_file: ", what, ": ", std::strerror(e), " (the previous ", path_, " is untouched)");
  }

  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
  std::uint64_t written_ = 0;
};

// Writes a whole file atomically.
inline void write_file_atomically(const std::string& path, std::string_view contents) {
  atomic_file f(path);
  f.write(contents);
  f.commit();
}

namespace safetensors {

// ----------------------------------------------------------------- dtypes

enum class dtype { F64, F32, F16, BF16 };

inline std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::F64: return "F64";
    case dtype::F32: return "F32";
    case dtype::F16: return "F16";
    case dtype::BF16: return "BF16";
  }
  return "?";
}
inline std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::F64: return 8;
    case dtype::F32: return 4;
    case dtype::F16:
    case dtype::BF16: return 2;
  }
  return 0;
}
// false for a name this reader does not know (I8, U8, F8_E4M3, ...).
inline bool parse_dtype(std::string_view name, dtype& out) {
  for (dtype t : {dtype::F64, dtype::F32, dtype::F16, dtype::BF16})
    if (dtype_name(t) == name) {
      out = t;
      return true;
    }
  return false;
}

// ----------------------------------------------------------------- conversions

inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_float(std::uint16_t h) { return bits_float(static_cast<std::uint32_t>(h) << 16); }

// Round to nearest, ties to even (torch's c10::BFloat16 rounding).
inline std::uint16_t float_to_bf16(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x7FC0u);  // NaN
  const std::uint32_t rounding_bias = 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding_bias) >> 16);  // overflow carries into infinity
}

inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu, mantissa = h & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa x 2^-24, exact in float
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return bits_float(sign | 0x7F800000u | (mantissa << 13));  // inf, NaN (payload kept)
  return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// Round to nearest, ties to even, as torch (the FP16 library) does.
inline std::uint16_t float_to_f16(float f) {
  const std::uint32_t u = float_bits(f);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;             // NaN
  if (a >= 0x477FF000u) return sign | 0x7C00u;            // >= 65520 (halfway past 65504): infinity
  if (a >= 0x38800000u) {                                 // >= 2^-14: a normal half
    const std::uint32_t m = a - 0x38000000u;              // rebias the exponent from 127 to 15
    return static_cast<std::uint16_t>(sign | ((m + 0xFFFu + ((m >> 13) & 1u)) >> 13));
  }
  if (a <= 0x33000000u) return sign;                      // <= 2^-25 (half the smallest subnormal): zero
  // A subnormal half: units of 2^-24. The float is (2^23 + m) x 2^(e - 150).
  const std::uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126 - e;                    // 14..24
  std::uint32_t q = m >> shift;
  const std::uint32_t rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1u))) ++q;     // may carry to 0x400, the smallest normal
  return static_cast<std::uint16_t>(sign | q);
}

namespace detail {

inline void store(char* out, dtype t, double v) {
  switch (t) {
    case dtype::F64: std::memcpy(out, &v, 8); return;
    case dtype::F32: {
      const float f = static_cast<float>(v);
      std::memcpy(out, &f, 4);
      return;
    }
    case dtype::F16: {
      const std::uint16_t h = float_to_f16(static_cast<float>(v));
      std::memcpy(out, &h, 2);
      return;
    }
    case dtype::BF16: {
      const std::uint16_t h = float_to_bf16(static_cast<float>(v));
      std::memcpy(out, &h, 2);
      return;
    }
  }
}
inline void store(char* out, dtype t, float v) {
  if (t == dtype::F32) {
    std::memcpy(out, &v, 4);
    return;
  }
  store(out, t, static_cast<double>(v));  // float -> double -> float is exact
}
inline double load(const char* in, dtype t) {
  switch (t) {
    case dtype::F64: {
      double d;
      std::memcpy(&d, in, 8);
      return d;
    }
    case dtype::F32: {
      float f;
      std::memcpy(&f, in, 4);
      return f;
    }
    case dtype::F16: {
      std::uint16_t h;
      std::memcpy(&h, in, 2);
      return f16_to_float(h);
    }
    case dtype::BF16: {
      std::uint16_t h;
      std::memcpy(&h, in, 2);
      return bf16_to_float(h);
    }
  }
  return 0;
}

inline bool little_endian() {
  const std::uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace detail

// ----------------------------------------------------------------- reader

struct tensor_info {
  std::string name;
  dtype type = dtype::F32;
  std::vector<std::int64_t> shape;
  std::size_t begin = 0, end = 0;  // byte offsets in the data section

  std::int64_t numel() const {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
};

// A parsed safetensors file held in memory.
class reader {
 public:
  // The Rust crate refuses headers above 100 MB; so does this reader.
  static constexpr std::uint64_t max_header_size = 100'000'000;

  static reader from_bytes(std::vector<char> bytes, std::string source = "safetensors buffer") {
    reader r;
    r.source_ = std::move(source);
    r.bytes_ = std::move(bytes);
    r.parse();
    return r;
  }

  static reader from_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) lmrl::detail::fail("safetensors: cannot open ", path);
    in.seekg(0, std::ios::end);
    const auto size = in.tellg();
    if (size < 0) lmrl::detail::fail("safetensors: cannot read ", path);
    std::vector<char> bytes(static_cast<std::size_t>(size));
    in.seekg(0, std::ios::beg);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!in) lmrl::detail::fail("safetensors: cannot read ", path);
    return from_bytes(std::move(bytes), path);
  }

  const std::string& source() const { return source_; }
  // In header order.
  const std::vector<tensor_info>& tensors() const { return tensors_; }
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }

  const tensor_info* find(std::string_view name) const {
    for (const auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  const tensor_info& at(std::string_view name) const {
    const tensor_info* t = find(name);
    if (t == nullptr) lmrl::detail::fail("safetensors: ", source_, ": no tensor named \"", name, "\"");
    return *t;
  }
  // The raw little-endian bytes of a tensor.
  std::span<const char> raw(const tensor_info& t) const {
    return std::span<const char>(bytes_.data() + data_start_ + t.begin, t.end - t.begin);
  }

  // Converts a tensor's elements into out (out.size() must be its numel).
  template <Real T>
  void read(std::string_view name, std::span<T> out) const {
    const tensor_info& t = at(name);
    lmrl::detail::require(static_cast<std::int64_t>(out.size()) == t.numel(), "safetensors: ", source_, ": tensor \"",
                          name, "\" has ", t.numel(), " elements (shape ", detail::shape_string(t.shape),
                          ") but the output has ", out.size());
    const char* p = bytes_.data() + data_start_ + t.begin;
    const std::size_t step = dtype_size(t.type);
    if constexpr (std::is_same_v<T, float>) {
      if (t.type == dtype::F32 && detail::little_endian()) {
        if (!out.empty()) std::memcpy(out.data(), p, out.size() * sizeof(float));
        return;
      }
    }
    for (std::size_t k = 0; k < out.size(); ++k) out[k] = static_cast<T>(detail::load(p + k * step, t.type));
  }
  template <Real T>
  std::vector<T> read(std::string_view name) const {
    std::vector<T> out(static_cast<std::size_t>(at(name).numel()));
    read(name, std::span<T>(out));
    return out;
  }

 private:
  template <class... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    lmrl::detail::fail("safetensors: ", source_, ": ", std::forward<Parts>(parts)...);
  }

  void parse() {
    lmrl::detail::require(detail::little_endian(), "safetensors: only little-endian machines are supported");
    const std::uint64_t size = bytes_.size();
    if (size < 8) fail("truncated file: ", size, " bytes, expected at least 8 (the header length)");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes_[static_cast<std::size_t>(i)]);
    if (n > max_header_size) fail("header length ", n, " is above the limit of ", max_header_size, " bytes");
    if (n > size - 8)
      fail("header length ", n, " runs past the end of the file (", size, " bytes, so at most ", size - 8, ")");
    data_start_ = 8 + static_cast<std::size_t>(n);
    const std::string_view text(bytes_.data() + 8, static_cast<std::size_t>(n));
    json::value header;
    try {
      header = json::parse(text, source_ + " (header)");
    } catch (const lmrl::error& e) {
      fail("the header is not valid JSON: ", e.what());
    }
    if (!header.is_object()) fail("the header is ", json::kind_name(header.type()), ", expected a JSON object");

    const std::uint64_t data_size = size - data_start_;
    for (const auto& [name, v] : header.as_object()) {
      if (name == "__metadata__") {
        if (seen_metadata_) fail("duplicate \"__metadata__\"");
        seen_metadata_ = true;
        if (!v.is_object()) fail("\"__metadata__\" is ", json::kind_name(v.type()), ", expected an object of strings");
        for (const auto& [key, value] : v.as_object()) {
          if (!value.is_string())
            fail("\"__metadata__\".\"", key, "\" is ", json::kind_name(value.type()), ", expected a string");
          metadata_.emplace_back(key, value.as_string());
        }
        continue;
      }
      if (find(name) != nullptr) fail("duplicate tensor name \"", name, "\"");
      tensors_.push_back(parse_tensor(name, v, data_size));
    }

    // The tensors must tile the data section exactly: sorted by begin, each
    // starts where the previous one ended, the last ends at the end of the file.
    std::vector<const tensor_info*> order;
    for (const auto& t : tensors_) order.push_back(&t);
    std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    std::size_t expected = 0;
    const tensor_info* previous = nullptr;
    for (const tensor_info* t : order) {
      if (t->begin < expected)
        fail("tensor \"", t->name, "\" (bytes [", t->begin, ", ", t->end, ")) overlaps tensor \"", previous->name,
             "\" (bytes [", previous->begin, ", ", previous->end, "))");
      if (t->begin > expected)
        fail("tensor \"", t->name, "\" starts at byte ", t->begin, " but the previous tensor ends at ", expected,
             " (a gap in the data)");
      expected = t->end;
      previous = t;
    }
    if (expected != data_size)
      fail("the tensors cover ", expected, " bytes of data but the file has ", data_size,
           " after the header (trailing bytes)");
  }

  tensor_info parse_tensor(const std::string& name, const json::value& v, std::uint64_t data_size) const {
    if (!v.is_object()) fail("tensor \"", name, "\": expected an object, got ", json::kind_name(v.type()));
    tensor_info t;
    t.name = name;
    const json::value* type = v.find("dtype");
    if (type == nullptr || !type->is_string()) fail("tensor \"", name, "\": missing \"dtype\" string");
    if (!parse_dtype(type->as_string(), t.type))
      fail("tensor \"", name, "\": unknown dtype \"", type->as_string(), "\" (this reader knows F64, F32, F16, BF16)");
    const json::value* shape = v.find("shape");
    if (shape == nullptr || !shape->is_array()) fail("tensor \"", name, "\": missing \"shape\" array");
    std::uint64_t numel = 1;
    for (const auto& s : shape->as_array()) {
      if (!s.is_number() || !s.as_number().is_integer || s.as_number().integer < 0)
        fail("tensor \"", name, "\": shape entries must be non-negative integers");
      const auto extent = static_cast<std::uint64_t>(s.as_number().integer);
      if (extent != 0 && numel > std::numeric_limits<std::uint64_t>::max() / 8 / extent)
        fail("tensor \"", name, "\": shape is too large");
      numel *= extent;
      t.shape.push_back(s.as_number().integer);
    }
    const json::value* offsets = v.find("data_offsets");
    if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2)
      fail("tensor \"", name, "\": missing \"data_offsets\" [begin, end]");
    std::int64_t be[2];
    for (int i = 0; i < 2; ++i) {
      const json::value& o = offsets->as_array()[static_cast<std::size_t>(i)];
      if (!o.is_number() || !o.as_number().is_integer || o.as_number().integer < 0)
        fail("tensor \"", name, "\": data_offsets must be two non-negative integers");
      be[i] = o.as_number().integer;
    }
    const auto begin = static_cast<std::uint64_t>(be[0]), end = static_cast<std::uint64_t>(be[1]);
    if (end < begin) fail("tensor \"", name, "\": data_offsets [", begin, ", ", end, "] end before they begin");
    const std::uint64_t expected = numel * dtype_size(t.type);
    if (end - begin != expected)
      fail("tensor \"", name, "\": data_offsets [", begin, ", ", end, "] hold ", end - begin, " bytes but ",
           dtype_name(t.type), " x ", detail::shape_string(t.shape), " needs ", expected);
    if (end > data_size)
      fail("tensor \"", name, "\": data_offsets [", begin, ", ", end, "] run past the data (", data_size,
           " bytes after the header)");
    t.begin = static_cast<std::size_t>(begin);
    t.end = static_cast<std::size_t>(end);
    return t;
  }

  std::string source_;
  std::vector<char> bytes_;
  std::size_t data_start_ = 0;
  std::vector<tensor_info> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  bool seen_metadata_ = false;
};

// ----------------------------------------------------------------- writer

// Collects tensors (by reference: the data must outlive save/to_bytes) and
// writes them in the order added, converting to each tensor's dtype.
class writer {
 public:
  // Called after each chunk reaches the temporary file with the bytes written
  // so far; throwing aborts the save (used to test that an interrupted save
  // keeps the previous file).
  using progress_hook = std::function<void(std::uint64_t bytes_written)>;

  template <Real T>
  void add(std::string name, std::vector<std::int64_t> shape, std::span<const T> data, dtype type = dtype::F32) {
    std::int64_t numel = 1;
    for (auto s : shape) {
      lmrl::detail::require(s >= 0, "safetensors::writer::add: tensor \"", name, "\" has a negative extent in shape ",
                            detail::shape_string(shape));
      numel *= s;
    }
    lmrl::detail::require(numel == static_cast<std::int64_t>(data.size()), "safetensors::writer::add: tensor \"", name,
                          "\" has shape ", detail::shape_string(shape), " (", numel, " elements) but ", data.size(),
                          " values");
    lmrl::detail::require(!name.empty() && name != "__metadata__", "safetensors::writer::add: invalid tensor name \"",
                          name, "\"");
    for (const auto& e : entries_)
      lmrl::detail::require(e.name != name, "safetensors::writer::add: duplicate tensor name \"", name, "\"");
    entries_.push_back({std::move(name), std::move(shape), type, data});
  }
  void set_metadata(std::string key, std::string value) {
    for (auto& [k, v] : metadata_)
      if (k == key) {
        v = std::move(value);
        return;
      }
    metadata_.emplace_back(std::move(key), std::move(value));
  }
  std::size_t size() const { return entries_.size(); }

  // The header bytes (length prefix included), padded with spaces to a multiple of 8.
  std::string header() const {
    std::string json = "{";
    bool first = true;
    if (!metadata_.empty()) {
      json += "\"__metadata__\":{";
      for (std::size_t i = 0; i < metadata_.size(); ++i) {
        if (i) json += ',';
        json::append_string(json, metadata_[i].first);
        json += ':';
        json::append_string(json, metadata_[i].second);
      }
      json += '}';
      first = false;
    }
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      if (!first) json += ',';
      first = false;
      json::append_string(json, e.name);
      json += ":{\"dtype\":\"";
      json += dtype_name(e.type);
      json += "\",\"shape\":[";
      for (std::size_t i = 0; i < e.shape.size(); ++i) {
        if (i) json += ',';
        json += std::to_string(e.shape[i]);
      }
      const std::uint64_t bytes = e.numel() * dtype_size(e.type);
      json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
      offset += bytes;
    }
    json += '}';
    json.append((8 - json.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    std::uint64_t n = json.size();
    for (int i = 0; i < 8; ++i, n >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xFF);
    return out + json;
  }

  std::vector<char> to_bytes() const {
    std::vector<char> out;
    emit([&](const char* p, std::size_t n) { out.insert(out.end(), p, p + n); });
    return out;
  }

  // Atomic: the previous file at path survives any failure (see atomic_file).
  void save(const std::string& path, const progress_hook& hook = {}) const {
    atomic_file f(path);
    emit([&](const char* p, std::size_t n) {
      f.write(p, n);
      if (hook) hook(f.bytes_written());
    });
    f.commit();
  }

 private:
  struct entry {
    std::string name;
    std::vector<std::int64_t> shape;
    dtype type;
    std::variant<std::span<const float>, std::span<const double>> data;
    std::uint64_t numel() const {
      return std::visit([](auto s) { return static_cast<std::uint64_t>(s.size()); }, data);
    }
  };

  // Streams the file in chunks of at most 1 MiB.
  template <class Sink>
  void emit(Sink&& sink) const {
    lmrl::detail::require(detail::little_endian(), "safetensors: only little-endian machines are supported");
    const std::string h = header();
    sink(h.data(), h.size());
    std::vector<char> chunk(1 << 20);
    for (const auto& e : entries_) {
      const std::size_t step = dtype_size(e.type);
      std::visit(
          [&](auto values) {
            std::size_t used = 0;
            for (std::size_t k = 0; k < values.size(); ++k) {
              detail::store(chunk.data() + used, e.type, values[k]);
              used += step;
              if (used + step > chunk.size()) {
                sink(chunk.data(), used);
                used = 0;
              }
            }
            if (used > 0) sink(chunk.data(), used);
          },
          e.data);
    }
  }

  std::vector<entry> entries_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace safetensors
}  // namespace lmrl
