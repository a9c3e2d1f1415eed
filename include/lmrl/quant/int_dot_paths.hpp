// The paths of the integer dot products (int_dot.hpp) and of the Q8_0
// activation quantizer (q8_0_rows.hpp): which instructions compute them,
// chosen at run time by what this CPU has (the tests are built without
// -march=native and check every path this CPU has against the scalar one, bit
// for bit):
//   scalar        plain C++, every platform
//   avx2          vpmaddubsw + vpmaddwd (llama.cpp's sign trick for signed codes), 256-bit
//   avx_vnni      vpdpbusd, 256-bit, VEX form (AVX-VNNI: Alder Lake and later, also without AVX-512)
//   avx512_vnni   vpdpbusd, 512-bit: two blocks per register (AVX512-VNNI + BW + VL)
// best_int_dot_path() is the last of these the CPU has. All x86 paths also
// need FMA and F16C (every AVX2 CPU has them). xsimd 8.1 has no byte
// multiply-add, so these are intrinsics in functions compiled for their
// instruction set (__attribute__((target))), not the whole build: the
// LMRL_INT_DOT_* macros below are those attributes, one per path.
#pragma once

#include <ostream>
#include <sstream>
#include <span>
#include <vector>

#include "lmrl/error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LMRL_INT_DOT_X86 1
#include <cpuid.h>
#include <immintrin.h>
// A function compiled for a path's instruction set (FMA and F16C with every one).
#define LMRL_INT_DOT_AVX2 __attribute__((target("avx2,fma,f16c")))
#define LMRL_INT_DOT_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline
#define LMRL_INT_DOT_AVX512_VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define LMRL_INT_DOT_AVX_VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#else
#define LMRL_INT_DOT_X86 0
#endif

namespace lmrl {

enum class int_dot_path { scalar, avx2, avx512_vnni, avx_vnni };

inline const char* to_string(int_dot_path path) {
  switch (path) {
    case int_dot_path::scalar:
      return "scalar";
    case int_dot_path::avx2:
      return "avx2";
    case int_dot_path::avx512_vnni:
      return "avx512_vnni";
    case int_dot_path::avx_vnni:
      return "avx_vnni";
  }
  return "unknown";
}
inline std::ostream& operator<<(std::ostream& out, int_dot_path path) { return out << to_string(path); }

namespace detail {
inline std::vector<int_dot_path> detect_int_dot_paths() {
  std::vector<int_dot_path> paths{int_dot_path::scalar};
#if LMRL_INT_DOT_X86
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
  // __builtin_cpu_supports also checks that the OS saves the wide registers
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (!avx2) return paths;
  paths.push_back(int_dot_path::avx2);
  const bool avx_vnni = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4)) != 0;
  if (avx_vnni) paths.push_back(int_dot_path::avx_vnni);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512vnni"))
    paths.push_back(int_dot_path::avx512_vnni);
#endif
  return paths;
}
}  // namespace detail

// The paths this CPU runs: scalar first, the fastest last.
inline std::span<const int_dot_path> supported_int_dot_paths() {
  static const std::vector<int_dot_path> paths = detail::detect_int_dot_paths();
  return paths;
}
inline int_dot_path best_int_dot_path() { return supported_int_dot_paths().back(); }

namespace detail {
inline void require_int_dot_path(const char* function, int_dot_path path) {
  for (int_dot_path p : supported_int_dot_paths())
    if (p == path) return;
  std::ostringstream have;
  for (int_dot_path p : supported_int_dot_paths()) have << ' ' << to_string(p);
  fail(function, ": this CPU has no ", to_string(path), " path (it has:", have.str(), ")");
}
}  // namespace detail

}  // namespace lmrl
