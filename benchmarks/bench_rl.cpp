// Benchmarks of the rl/ layer: advantage estimators, KL estimators, policy
// objectives, loss aggregation and the fused log-prob. Each topic's cases are
// in benchmarks/rl/<topic>.hpp; this file is the one program.
#include <benchmark/benchmark.h>

#if __has_include("rl/advantages_bench.hpp")
#include "rl/advantages_bench.hpp"
#endif
#if __has_include("rl/kl_bench.hpp")
#include "rl/kl_bench.hpp"
#endif
#if __has_include("rl/objectives_bench.hpp")
#include "rl/objectives_bench.hpp"
#endif
#if __has_include("rl/aggregation_bench.hpp")
#include "rl/aggregation_bench.hpp"
#endif
#if __has_include("rl/logprob_bench.hpp")
#include "rl/logprob_bench.hpp"
#endif

BENCHMARK_MAIN();
