// The CPU emulator's stand-in for CUB's device radix sort (tests/emulator/):
// found before the CUDA toolkit's on the emulated tests' include path. Same
// contract for the calls lmrl makes: a null scratch pointer asks the scratch
// size; otherwise the pairs are sorted by bits [begin_bit, end_bit) of the
// key, stably, as a radix sort is.
#pragma once

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <vector>

namespace cub {

struct DeviceRadixSort {
  template <class Key, class Value>
  static cudaError_t SortPairs(void* scratch, std::size_t& scratch_bytes, const Key* keys_in, Key* keys_out,
                               const Value* values_in, Value* values_out, int n, int begin_bit = 0,
                               int end_bit = static_cast<int>(sizeof(Key) * 8), cudaStream_t stream = nullptr) {
    if (scratch == nullptr) {
      scratch_bytes = 256;
      return cudaSuccess;
    }
    namespace emu = lmrl_cuda_emulator;
    const auto count = static_cast<std::size_t>(n);
    emu::require_device(scratch, scratch_bytes, "cub::DeviceRadixSort::SortPairs (scratch)");
    emu::require_device(keys_in, count * sizeof(Key), "cub::DeviceRadixSort::SortPairs (keys in)");
    emu::require_device(keys_out, count * sizeof(Key), "cub::DeviceRadixSort::SortPairs (keys out)");
    emu::require_device(values_in, count * sizeof(Value), "cub::DeviceRadixSort::SortPairs (values in)");
    emu::require_device(values_out, count * sizeof(Value), "cub::DeviceRadixSort::SortPairs (values out)");
    emu::submit(stream, [=] {
      const auto bits = [&](Key k) {
        const int width = end_bit - begin_bit;
        const auto u = static_cast<unsigned long long>(k) >> begin_bit;
        return width >= 64 ? u : u & ((1ull << width) - 1);
      };
      std::vector<std::size_t> order(count);
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return bits(keys_in[a]) < bits(keys_in[b]); });
      std::vector<Key> keys(count);
      std::vector<Value> values(count);
      for (std::size_t i = 0; i < count; ++i) {
        keys[i] = keys_in[order[i]];
        values[i] = values_in[order[i]];
      }
      std::copy(keys.begin(), keys.end(), keys_out);
      std::copy(values.begin(), values.end(), values_out);
    });
    return cudaSuccess;
  }
};

}  // namespace cub
