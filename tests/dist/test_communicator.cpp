// dist/communicator.hpp, any_communicator.hpp, byte_pack.hpp: the one-process
// model, the type-erased holder, the shard arithmetic and the byte packing
// that the data-parallel trainer's all_gather carries, and split_communicator.
#include "lmrl/dist/communicator.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "lmrl/dist/any_communicator.hpp"
#include "lmrl/dist/byte_pack.hpp"

using namespace lmrl;

TEST_CASE("shard_of: contiguous slices in rank order, lengths differing by at most one, covering 0..n") {
  for (std::int64_t n : {0, 1, 3, 7, 8, 13, 100})
    for (int size : {1, 2, 3, 4, 8}) {
      std::int64_t next = 0, shortest = n, longest = 0;
      for (int r = 0; r < size; ++r) {
        const shard s = shard_of(n, r, size);
        CHECK(s.begin == next);
        next = s.end;
        shortest = std::min(shortest, s.count());
        longest = std::max(longest, s.count());
      }
      CHECK(next == n);
      CHECK(longest - shortest <= 1);
    }
  CHECK(shard_of(10, 0, 4).count() == 3);  // 3, 3, 2, 2: the first n % size ranks take one more
  CHECK(shard_of(10, 3, 4).begin == 8);
}

TEST_CASE("single_process: rank 0 of 1, every collective the identity") {
  single_process one;
  CHECK(one.rank() == 0);
  CHECK(one.size() == 1);
  std::vector<float> x{1.5f, -2.0f};
  one.all_reduce(std::span<float>(x), reduce_op::sum);
  CHECK(x == std::vector<float>{1.5f, -2.0f});
  CHECK(all_reduce_value<double>(one, 3.25, reduce_op::max) == 3.25);
  const std::vector<std::byte> mine{std::byte{1}, std::byte{2}, std::byte{3}};
  const auto all = one.all_gather(mine);
  REQUIRE(all.size() == 1);
  CHECK(all[0] == mine);
}

namespace {
// A communicator that records what reaches it, to check any_communicator forwards each call; with `device`, one
// that reduces device memory (as NCCL does).
struct recording {
  std::vector<std::string>* calls;
  bool device = false;
  int my_rank = 2;
  int rank() const { return my_rank; }
  int size() const { return 5; }
  bool reduces_device_memory() const { return device; }
  template <class T>
  void all_reduce_device(std::span<T> x, reduce_op) {
    calls->push_back("all_reduce_device " + std::to_string(x.size()));
    for (auto& v : x) v = v * 3;
  }
  template <class T>
  void all_reduce(std::span<T> x, reduce_op op) {
    calls->push_back("all_reduce " + std::to_string(x.size()) + (op == reduce_op::max ? " max" : " other"));
    for (auto& v : x) v = v * 2;
  }
  void broadcast(std::span<std::byte> b, int root) { calls->push_back("broadcast " + std::to_string(b.size()) + " from " + std::to_string(root)); }
  std::vector<std::vector<std::byte>> all_gather(std::span<const std::byte> mine) {
    calls->push_back("all_gather " + std::to_string(mine.size()));
    return {};
  }
  void barrier() { calls->push_back("barrier"); }
};
}  // namespace

TEST_CASE("any_communicator: forwards every collective to the model it holds, copies share it") {
  std::vector<std::string> calls;
  any_communicator a = recording{&calls};
  const any_communicator copy = a;
  CHECK(copy.rank() == 2);
  CHECK(copy.size() == 5);
  std::vector<std::int64_t> k{4};
  a.all_reduce(std::span<std::int64_t>(k), reduce_op::max);
  CHECK(k[0] == 8);
  std::vector<std::byte> b(3);
  a.broadcast(b, 1);
  a.all_gather(b);
  a.barrier();
  CHECK(calls == std::vector<std::string>{"all_reduce 1 max", "broadcast 3 from 1", "all_gather 3", "barrier"});
  CHECK(any_communicator{}.size() == 1);  // the default is single_process
  single_process one;
  CHECK(any_communicator::borrowing(one).rank() == 0);
}

TEST_CASE("split_communicator: host collectives to one, device all-reduces to the other, any_communicator forwards") {
  std::vector<std::string> host_calls, device_calls;
  recording host{&host_calls}, device{&device_calls, true};
  any_communicator a = split_communicator<recording, recording>(host, device);
  CHECK(a.rank() == 2);
  CHECK(a.size() == 5);
  CHECK(a.reduces_device_memory());
  std::vector<double> gradient{1, 2};
  a.all_reduce_device(std::span<double>(gradient), reduce_op::sum);
  std::vector<float> x{3};
  a.all_reduce(std::span<float>(x), reduce_op::max);
  a.barrier();
  CHECK(gradient == std::vector<double>{3, 6});
  CHECK(x == std::vector<float>{6});
  CHECK(device_calls == std::vector<std::string>{"all_reduce_device 2"});
  CHECK(host_calls == std::vector<std::string>{"all_reduce 1 max", "barrier"});

  recording not_device{&device_calls}, other_rank{&device_calls, true, 3};
  CHECK_THROWS_WITH_AS((split_communicator<recording, recording>(host, not_device)),
                       doctest::Contains("does not reduce device memory"), error);
  CHECK_THROWS_WITH_AS((split_communicator<recording, recording>(host, other_rank)),
                       doctest::Contains("is rank 2 of 5, the device one rank 3 of 5"), error);
  // A communicator that does not reduce device memory says so, and refuses to.
  for (any_communicator plain : {any_communicator{}, any_communicator(not_device)}) {
    CHECK_FALSE(plain.reduces_device_memory());
    CHECK_THROWS_WITH_AS(plain.all_reduce_device(std::span<double>(gradient), reduce_op::sum),
                         doctest::Contains("does not reduce device memory"), error);
  }
  CHECK(gradient == std::vector<double>{3, 6});
}

TEST_CASE("byte_writer and byte_reader: values and arrays round-trip, reading past the end is an error") {
  byte_writer w;
  w.put<std::uint64_t>(3);
  const std::vector<std::int32_t> ids{5, -1, 70000};
  const std::vector<float> lp{-0.5f, -1.25f};
  w.put_array<std::int32_t>(ids);
  w.put_array<float>(lp);
  w.put<double>(0.125);
  byte_reader r(w.bytes(), "test");
  CHECK(r.get<std::uint64_t>() == 3);
  CHECK(r.get_array<std::int32_t>() == ids);
  CHECK(r.get_array<float>() == lp);
  CHECK(r.get<double>() == 0.125);
  CHECK(r.done());
  CHECK_THROWS_WITH_AS(r.get<std::uint8_t>(), doctest::Contains("test: reading 1 bytes"), error);
  // a length that claims more elements than the bytes hold
  byte_writer bad;
  bad.put<std::uint64_t>(1000);
  byte_reader rb(bad.bytes(), "rollouts");
  CHECK_THROWS_WITH_AS(rb.get_array<float>(), doctest::Contains("overruns"), error);
}
