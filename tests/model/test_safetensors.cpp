// model/safetensors.hpp: the file format byte for byte, exact F16/BF16
// conversions, validation of every malformed input, atomic writes.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "lmrl/model/safetensors.hpp"
#include "support/testing.hpp"

using namespace lmrl;
using namespace lmrl::safetensors;

namespace {

std::vector<char> bytes_of(const std::string& s) { return std::vector<char>(s.begin(), s.end()); }

// A file from a header text and data bytes: 8-byte little-endian length + header + data.
std::vector<char> make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(n & 0xFF);
  return bytes_of(out + header + data);
}

std::string float_bytes(std::initializer_list<float> values) {
  std::string s;
  for (float v : values) s.append(reinterpret_cast<const char*>(&v), 4);
  return s;
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A fresh empty directory under the system temp dir.
std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("lmrl_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::size_t files_in(const std::filesystem::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

float from_bits(std::uint32_t u) { return bits_float(u); }

}  // namespace

TEST_CASE("the writer produces the bytes of Python's safetensors.numpy.save, and the reader reads them back") {
  // safetensors.numpy.save({"b": float32 [1.5, -2], "a": float16 [[1, 2, 3]]}, metadata={"format": "pt"})
  // gives (0x90 = 144 header bytes: 141 characters of JSON + 3 spaces of padding to a multiple of 8):
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F16","shape":[1,3],"data_offsets":[8,14]}}   )";
  REQUIRE(json.size() == 144);
  // data: 1.5f = 0x3FC00000, -2.0f = 0xC0000000; half 1 = 0x3C00, 2 = 0x4000, 3 = 0x4200 (little-endian)
  const std::string data = std::string("\x00\x00\xc0\x3f\x00\x00\x00\xc0", 8) + std::string("\x00\x3c\x00\x40\x00\x42", 6);
  const std::vector<char> expected = make_file(json, data);

  const std::vector<float> b = {1.5f, -2.0f};
  const std::vector<double> a = {1, 2, 3};
  writer w;
  w.set_metadata("format", "pt");
  w.add("b", {2}, std::span<const float>(b));
  w.add("a", {1, 3}, std::span<const double>(a), dtype::F16);
  CHECK(w.to_bytes() == expected);

  const reader r = reader::from_bytes(expected, "python.safetensors");
  REQUIRE(r.tensors().size() == 2);
  CHECK(r.tensors()[0].name == "b");
  CHECK(r.at("a").shape == std::vector<std::int64_t>{1, 3});
  CHECK(r.at("a").type == dtype::F16);
  CHECK(r.read<float>("b") == b);
  CHECK(r.read<double>("a") == a);
  REQUIRE(r.metadata().size() == 1);
  CHECK(r.metadata()[0] == std::pair<std::string, std::string>{"format", "pt"});
}

TEST_CASE("an empty file (no tensors) and a zero-element tensor are valid") {
  writer w;
  const std::vector<char> empty = w.to_bytes();
  // "{}" padded to 8 bytes: "{}      "
  CHECK(std::string(empty.begin() + 8, empty.end()) == "{}      ");
  CHECK(reader::from_bytes(empty).tensors().empty());
  const std::vector<float> none;
  w.add("z", {0, 4}, std::span<const float>(none));
  const reader r = reader::from_bytes(w.to_bytes());
  CHECK(r.at("z").numel() == 0);
  CHECK(r.read<float>("z").empty());
}

TEST_CASE("bf16: exact widening, round to nearest even, overflow to infinity, NaN stays NaN") {
  CHECK(float_to_bf16(1.0f) == 0x3F80);
  // 1 + 2^-8 is halfway between bf16 1 (0x3F80) and 1 + 2^-7 (0x3F81): ties go to the even 0x3F80
  CHECK(float_to_bf16(1.0f + 0x1p-8f) == 0x3F80);
  // 1 + 3*2^-8 is halfway between 0x3F81 and 0x3F82: to the even 0x3F82
  CHECK(float_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);
  // just above halfway rounds up
  CHECK(float_to_bf16(1.0f + 0x1p-8f + 0x1p-23f) == 0x3F81);
  CHECK(float_to_bf16(-2.0f) == 0xC000);
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7F80);  // rounds past bf16's max to +inf
  CHECK(float_to_bf16(-INFINITY) == 0xFF80);
  CHECK(float_to_bf16(std::nanf("")) == 0x7FC0);
  CHECK(float_to_bf16(-std::nanf("")) == 0xFFC0);
  CHECK(float_to_bf16(from_bits(0x7F800001)) == 0x7FC0);  // a signalling NaN whose payload is below bf16's bits
  CHECK(float_to_bf16(0x1p-130f) == 0x0008);            // float subnormal 2^-130 = bit 19 -> bf16 bit 3, exact
  CHECK(float_to_bf16(-0.0f) == 0x8000);
  CHECK(bf16_to_float(0x3F81) == 1.0f + 0x1p-7f);
  CHECK(bf16_to_float(0x0001) == 0x1p-133f);             // smallest bf16 subnormal
  CHECK(std::isnan(bf16_to_float(0x7FC1)));
  // Every bf16 pattern widens and narrows back to itself (NaNs: stay NaN with their sign).
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(h));
    CHECK(float_bits(f) == h << 16);
    if (std::isnan(f)) {
      CHECK(std::isnan(bf16_to_float(float_to_bf16(f))));
      CHECK((float_to_bf16(f) & 0x8000) == (h & 0x8000));
    } else if (float_to_bf16(f) != h) {
      FAIL("bf16 pattern ", h, " does not round-trip");
    }
  }
}

TEST_CASE("f16: exact widening incl. subnormals, round to nearest even, overflow past 65504") {
  CHECK(float_to_f16(1.0f) == 0x3C00);
  CHECK(float_to_f16(-2.0f) == 0xC000);
  CHECK(float_to_f16(65504.0f) == 0x7BFF);                // the largest half
  CHECK(float_to_f16(65519.996f) == 0x7BFF);              // below the halfway point 65520
  CHECK(float_to_f16(65520.0f) == 0x7C00);                // halfway, 0x7BFF is odd: rounds to infinity
  CHECK(float_to_f16(0x1p-14f) == 0x0400);                // smallest normal
  CHECK(float_to_f16(0x1p-24f) == 0x0001);                // smallest subnormal
  CHECK(float_to_f16(0x1p-25f) == 0x0000);                // halfway between 0 and 2^-24: to the even 0
  CHECK(float_to_f16(-0x1p-25f) == 0x8000);
  CHECK(float_to_f16(0x1.8p-25f) == 0x0001);              // 0.75 * 2^-24 rounds up
  CHECK(float_to_f16(3 * 0x1p-25f) == 0x0002);            // 1.5 units: halfway between 1 and 2, to the even 2
  CHECK(float_to_f16(5 * 0x1p-25f) == 0x0002);            // 2.5 units: to the even 2
  CHECK(float_to_f16(0x1p-14f - 0x1p-26f) == 0x0400);     // 1023.75 units: carries into the smallest normal
  CHECK(float_to_f16(1.0f + 0x1p-11f) == 0x3C00);         // halfway above 1 (10 mantissa bits): to even
  CHECK(float_to_f16(1.0f + 3 * 0x1p-11f) == 0x3C02);
  CHECK(float_to_f16(0.1f) == 0x2E66);                    // 0.1 = 0x2E66.66..: rounds down
  CHECK(float_to_f16(INFINITY) == 0x7C00);
  CHECK(float_to_f16(std::nanf("")) == 0x7E00);
  CHECK(float_to_f16(-std::nanf("")) == 0xFE00);          // torch writes -NaN as 0xFE00 too
  CHECK(f16_to_float(0x0001) == 0x1p-24f);
  CHECK(f16_to_float(0x03FF) == 1023 * 0x1p-24f);
  CHECK(f16_to_float(0x7BFF) == 65504.0f);
  CHECK(f16_to_float(0xFC00) == -INFINITY);
  CHECK(std::signbit(f16_to_float(0x8000)));
  CHECK(float_bits(f16_to_float(0x7C01)) == 0x7F802000);  // NaN payload kept
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = f16_to_float(static_cast<std::uint16_t>(h));
    if (std::isnan(f)) {
      CHECK(std::isnan(f16_to_float(float_to_f16(f))));
    } else if (float_to_f16(f) != h) {
      FAIL("f16 pattern ", h, " does not round-trip");
    }
  }
}

TEST_CASE("f16 and bf16 rounding picks the nearest value, ties to even, over a sweep of floats") {
  // A property check independent of the bit tricks: for floats spread over the
  // whole range, the chosen 16-bit value is at least as close as both neighbours,
  // and on a tie its last bit is 0.
  auto check = [](auto narrow, auto widen, const char* what) {
    int bad = 0;
    for (std::uint64_t u = 0; u < 0x7F800000u; u += 997) {  // all finite positive floats, every 997th pattern
      const float x = from_bits(static_cast<std::uint32_t>(u));
      const std::uint16_t h = narrow(x);
      const double v = widen(h);
      if (std::isinf(v)) continue;  // overflow: checked by hand above
      const double err = std::abs(static_cast<double>(x) - v);
      for (int d : {-1, 1}) {
        if (h == 0 && d < 0) continue;
        const double n = widen(static_cast<std::uint16_t>(h + d));
        if (std::isinf(n) || std::isnan(n)) continue;
        const double other = std::abs(static_cast<double>(x) - n);
        if (other < err || (other == err && (h & 1))) ++bad;
      }
    }
    INFO(what);
    CHECK(bad == 0);
  };
  check(float_to_f16, f16_to_float, "f16");
  check(float_to_bf16, bf16_to_float, "bf16");
}

TEST_CASE("a double goes to BF16/F16 through float, as torch's .to(torch.bfloat16) of a float64 tensor does") {
  // 1 + 2^-8 + 2^-40 is just above the bf16 halfway point 1 + 2^-8, but as a
  // float it is exactly 1 + 2^-8, which ties to even: 1.0. torch gives 1.0 too.
  const std::vector<double> x = {1.0 + 0x1p-8 + 0x1p-40, 1.0 + 0x1p-11 + 0x1p-40};
  writer w;
  w.add("bf", {2}, std::span<const double>(x), dtype::BF16);
  w.add("h", {2}, std::span<const double>(x), dtype::F16);
  w.add("f64", {2}, std::span<const double>(x), dtype::F64);
  const reader r = reader::from_bytes(w.to_bytes());
  CHECK(r.read<double>("bf")[0] == 1.0);
  CHECK(r.read<double>("h")[0] == 1.0 + 0x1p-8);  // f16 holds 1 + 2^-8 exactly
  CHECK(r.read<double>("h")[1] == 1.0);           // 1 + 2^-11 + 2^-40 -> float 1 + 2^-11 -> tie -> 1.0
  CHECK(r.read<double>("f64") == x);              // F64 is exact
  CHECK(r.read<float>("f64")[1] == static_cast<float>(x[1]));
}

TEST_CASE("F32 round trip is bit-identical, including -0, subnormals, infinities and NaN payloads") {
  const std::vector<float> v = {0.0f, -0.0f, 1e-45f, -1.17549e-38f, 3.4028235e38f, INFINITY, -INFINITY,
                                from_bits(0x7FC00001), from_bits(0xFF800123), 0.1f, -7.25f};
  writer w;
  w.add("v", {static_cast<std::int64_t>(v.size())}, std::span<const float>(v));
  const std::vector<float> back = reader::from_bytes(w.to_bytes()).read<float>("v");
  REQUIRE(back.size() == v.size());
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(float_bits(back[i]) == float_bits(v[i]));

  // BF16 save/load equals rounding each value to bf16.
  writer b;
  b.add("v", {static_cast<std::int64_t>(v.size())}, std::span<const float>(v), dtype::BF16);
  const std::vector<float> rounded = reader::from_bytes(b.to_bytes()).read<float>("v");
  for (std::size_t i = 0; i < v.size(); ++i) CHECK(float_bits(rounded[i]) == float_bits(bf16_to_float(float_to_bf16(v[i]))));
}

TEST_CASE("reads the checkpoint transformers' save_pretrained wrote") {
  const reader tied = reader::from_file(std::string(LMRL_TEST_DATA_DIR) + "/qwen2_tied/model.safetensors");
  CHECK(tied.find("lm_head.weight") == nullptr);
  CHECK(tied.at("model.embed_tokens.weight").shape == std::vector<std::int64_t>{64, 32});
  CHECK(tied.at("model.layers.1.self_attn.k_proj.bias").shape == std::vector<std::int64_t>{16});
  CHECK(tied.at("model.layers.0.mlp.down_proj.weight").type == dtype::F32);
  CHECK(tied.tensors().size() == 1 + 2 * 12 + 1);  // embed, 12 per layer (with q/k/v biases), norm
  // Writing the tensors back in the file's offset order reproduces the data section exactly.
  std::vector<const tensor_info*> order;
  for (const auto& t : tied.tensors()) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  std::vector<std::vector<float>> values;
  for (auto* t : order) values.push_back(tied.read<float>(t->name));
  writer w;
  w.set_metadata("format", "pt");
  for (std::size_t i = 0; i < order.size(); ++i) w.add(order[i]->name, order[i]->shape, std::span<const float>(values[i]));
  const std::vector<char> original = read_all(std::string(LMRL_TEST_DATA_DIR) + "/qwen2_tied/model.safetensors");
  const std::vector<char> ours = w.to_bytes();
  const auto data_size = static_cast<std::ptrdiff_t>(order.back()->end);
  CHECK(data_size == 4 * 17696);  // the tied model's 17,696 parameters
  REQUIRE(ours.size() >= static_cast<std::size_t>(data_size));
  CHECK(std::equal(original.end() - data_size, original.end(), ours.end() - data_size));
  CHECK(reader::from_bytes(ours).read<float>("model.norm.weight") == tied.read<float>("model.norm.weight"));
}

TEST_CASE("malformed files are errors naming the file, the tensor and what was expected") {
  const std::string ok_data = float_bytes({1, 2});
  auto parse = [](const std::vector<char>& bytes) { return reader::from_bytes(bytes, "bad.safetensors"); };
  auto header = [](const std::string& body) { return "{" + body + "}"; };
  const std::string a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

  CHECK_THROWS_WITH_AS(parse(bytes_of(std::string("\x10\x00\x00", 3))), doctest::Contains("bad.safetensors: truncated file: 3 bytes"),
                       error);
  std::vector<char> too_long = make_file(header(a), ok_data);
  too_long[0] = static_cast<char>(0xFF);
  CHECK_THROWS_WITH_AS(parse(too_long), doctest::Contains("header length 255 runs past the end of the file"), error);
  too_long[5] = 1;  // 2^40 + 255
  CHECK_THROWS_WITH_AS(parse(too_long), doctest::Contains("above the limit"), error);
  CHECK_THROWS_WITH_AS(parse(make_file("{\"a\": [1,", "")), doctest::Contains("the header is not valid JSON"), error);
  CHECK_THROWS_WITH_AS(parse(make_file("[1, 2]  ", "")), doctest::Contains("the header is an array, expected a JSON object"),
                       error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]})"), "xx")),
                       doctest::Contains("tensor \"a\": unknown dtype \"I8\""), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"), ok_data)),
                       doctest::Contains("tensor \"a\": shape entries must be non-negative integers"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), ok_data)),
                       doctest::Contains("tensor \"a\": data_offsets [0, 8] hold 8 bytes but F32 x [3] needs 12"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), ok_data)),
                       doctest::Contains("end before they begin"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), ok_data)),
                       doctest::Contains("tensor \"a\": data_offsets [4, 12] run past the data (8 bytes after the header)"),
                       error);
  CHECK_THROWS_WITH_AS(
      parse(make_file(header(a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), ok_data)),
      doctest::Contains("tensor \"b\" (bytes [4, 8)) overlaps tensor \"a\""), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), ok_data)),
                       doctest::Contains("tensor \"a\" starts at byte 4 but the previous tensor ends at 0"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(a), ok_data + "xyz")),
                       doctest::Contains("the tensors cover 8 bytes of data but the file has 11"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(a + "," + a), ok_data)), doctest::Contains("duplicate tensor name \"a\""),
                       error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(a + R"(,"__metadata__":{"n":1})"), ok_data)),
                       doctest::Contains("\"__metadata__\".\"n\" is a number, expected a string"), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"shape":[2],"data_offsets":[0,8]})"), ok_data)),
                       doctest::Contains("tensor \"a\": missing \"dtype\""), error);
  CHECK_THROWS_WITH_AS(parse(make_file(header(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0]})"), ok_data)),
                       doctest::Contains("tensor \"a\": missing \"data_offsets\""), error);
  CHECK_THROWS_WITH_AS(reader::from_file("/nonexistent/x.safetensors"),
                       doctest::Contains("cannot open /nonexistent/x.safetensors"), error);

  const reader r = parse(make_file(header(a), ok_data));
  CHECK_THROWS_WITH_AS(r.at("b"), doctest::Contains("bad.safetensors: no tensor named \"b\""), error);
  std::vector<float> three(3);
  CHECK_THROWS_WITH_AS(r.read("a", std::span<float>(three)),
                       doctest::Contains("tensor \"a\" has 2 elements (shape [2]) but the output has 3"), error);

  writer w;
  const std::vector<float> v = {1, 2, 3};
  CHECK_THROWS_WITH_AS(w.add("x", {2, 2}, std::span<const float>(v)),
                       doctest::Contains("tensor \"x\" has shape [2, 2] (4 elements) but 3 values"), error);
  w.add("x", {3}, std::span<const float>(v));
  CHECK_THROWS_WITH_AS(w.add("x", {3}, std::span<const float>(v)), doctest::Contains("duplicate tensor name \"x\""),
                       error);
}

TEST_CASE("a save that fails midway leaves the previous file intact and no temporary file") {
  const auto dir = scratch_dir("safetensors_atomic");
  const std::string path = (dir / "model.safetensors").string();
  std::vector<float> old_values(1000), new_values(3'000'000);  // 12 MB: written in several 1 MiB chunks
  for (std::size_t i = 0; i < old_values.size(); ++i) old_values[i] = static_cast<float>(i);
  for (std::size_t i = 0; i < new_values.size(); ++i) new_values[i] = -static_cast<float>(i);
  writer old_file;
  old_file.add("w", {1000}, std::span<const float>(old_values));
  old_file.save(path);
  const std::vector<char> before = read_all(path);
  CHECK(before == old_file.to_bytes());

  writer new_file;
  new_file.add("w", {3000, 1000}, std::span<const float>(new_values));
  std::uint64_t seen = 0;
  auto crash = [&](std::uint64_t written) {
    seen = written;
    if (written > 4'000'000) throw std::runtime_error("simulated crash");
  };
  CHECK_THROWS_AS(new_file.save(path, crash), std::runtime_error);
  CHECK(seen > 4'000'000);
  CHECK(seen < 12'000'000);  // it really stopped midway
  CHECK(read_all(path) == before);
  CHECK(files_in(dir) == 1);  // the temporary file was removed
  CHECK(reader::from_file(path).read<float>("w") == old_values);

  // The target is a directory: the rename fails, nothing is lost, nothing is left behind.
  std::filesystem::create_directory(dir / "taken");
  CHECK_THROWS_WITH_AS(old_file.save((dir / "taken").string()), doctest::Contains("cannot rename"), error);
  CHECK(std::filesystem::is_directory(dir / "taken"));
  CHECK(files_in(dir) == 2);
  // The directory does not exist: the temporary file cannot even be created.
  CHECK_THROWS_WITH_AS(old_file.save((dir / "missing" / "m.safetensors").string()),
                       doctest::Contains("cannot create the temporary file"), error);

  // A complete save replaces the file.
  new_file.save(path);
  CHECK(reader::from_file(path).read<float>("w") == new_values);
  CHECK(files_in(dir) == 2);
  std::filesystem::remove_all(dir);
}
