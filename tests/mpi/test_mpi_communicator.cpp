// dist/mpi.hpp: every collective against its definition, on however many
// ranks the job has: sums, maxima and minima (bucketed arrays longer than a
// bucket), broadcast, variable-length all_gather, and the errors.
#include "lmrl/dist/mpi.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "lmrl/dist/any_communicator.hpp"
#include "mpi/world.hpp"

using namespace lmrl;
using lmrl::testing::world;

TEST_CASE("mpi all_reduce: sum, max and min of every element, over several buckets, the same bits on every rank") {
  auto& w = world();
  const int R = w.size(), me = w.rank();
  mpi_communicator small(lmrl::testing::session(), MPI_COMM_WORLD, 1024);  // 256 floats a bucket
  for (const std::size_t n : {std::size_t{1}, std::size_t{255}, std::size_t{1000}, std::size_t{4099}}) {
    std::vector<float> x(n), hi(n), lo(n);
    std::vector<double> d(n);
    std::vector<std::int64_t> k(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = hi[i] = lo[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + me) * (me + 1));
      d[i] = 0.1 * static_cast<double>(i) + me;
      k[i] = static_cast<std::int64_t>(i) * (me + 1);
    }
    small.all_reduce(std::span<float>(x), reduce_op::sum);
    small.all_reduce(std::span<float>(hi), reduce_op::max);
    small.all_reduce(std::span<float>(lo), reduce_op::min);
    small.all_reduce(std::span<double>(d), reduce_op::sum);
    small.all_reduce(std::span<std::int64_t>(k), reduce_op::sum);
    for (std::size_t i = 0; i < n; ++i) {
      double sum = 0, mx = -1e300, mn = 1e300;
      for (int r = 0; r < R; ++r) {
        const double v = static_cast<float>(std::sin(0.37 * static_cast<double>(i) + r) * (r + 1));
        sum += v, mx = std::max(mx, v), mn = std::min(mn, v);
      }
      CHECK(x[i] == doctest::Approx(sum).epsilon(1e-5));
      CHECK(hi[i] == static_cast<float>(mx));
      CHECK(lo[i] == static_cast<float>(mn));
      CHECK(d[i] == doctest::Approx(0.1 * static_cast<double>(i) * R + R * (R - 1) / 2.0).epsilon(1e-12));
      CHECK(k[i] == static_cast<std::int64_t>(i) * R * (R + 1) / 2);
    }
    // every rank holds the same bits
    auto theirs = w.all_gather(std::as_bytes(std::span<const float>(x)));
    for (const auto& part : theirs)
      CHECK(std::equal(part.begin(), part.end(), std::as_bytes(std::span<const float>(x)).begin()));
  }
}

TEST_CASE("mpi broadcast and all_gather: root's bytes everywhere, every rank's variable-length bytes in rank order") {
  auto& w = world();
  const int R = w.size(), me = w.rank();
  for (int root = 0; root < R; ++root) {
    std::vector<std::byte> b(37, std::byte(me));
    w.broadcast(std::span<std::byte>(b), root);
    for (auto v : b) CHECK(v == std::byte(root));
  }
  std::vector<std::byte> mine(static_cast<std::size_t>(3 * me), std::byte(me + 1));  // rank 0 sends nothing
  any_communicator any = any_communicator::borrowing(w);
  const auto all = any.all_gather(mine);
  REQUIRE(static_cast<int>(all.size()) == R);
  for (int r = 0; r < R; ++r) {
    CHECK(all[static_cast<std::size_t>(r)].size() == static_cast<std::size_t>(3 * r));
    for (auto v : all[static_cast<std::size_t>(r)]) CHECK(v == std::byte(r + 1));
  }
  CHECK(any.rank() == me);
  CHECK(any.size() == R);
  any.barrier();
  CHECK_THROWS_WITH_AS(w.broadcast(std::span<std::byte>(mine), R), doctest::Contains("root"), error);
}
