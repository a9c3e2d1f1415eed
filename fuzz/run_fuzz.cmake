# Runs one libFuzzer target for a short fixed budget on a scratch copy of its
# seed corpus (the checked-in seeds are never written to). Fails on any finding:
# libFuzzer exits non-zero on a crash, a sanitizer report, an uncaught exception,
# an out-of-memory or a timeout, and leaves the input in WORK/artifacts/.
#   cmake -DFUZZER=<exe> -DSEEDS=<dir> -DWORK=<dir> -DSECONDS=20 -P run_fuzz.cmake
foreach(var FUZZER SEEDS WORK SECONDS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzz.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT EXISTS ${FUZZER})
  message(FATAL_ERROR "run_fuzz.cmake: ${FUZZER} is not built")
endif()
file(GLOB seeds ${SEEDS}/*)
if(NOT seeds)
  message(FATAL_ERROR "run_fuzz.cmake: no seed inputs in ${SEEDS}")
endif()

set(corpus ${WORK}/corpus)
file(REMOVE_RECURSE ${corpus})
file(MAKE_DIRECTORY ${corpus} ${WORK}/artifacts)
file(COPY ${seeds} DESTINATION ${corpus})

execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
          -artifact_prefix=${WORK}/artifacts/ ${corpus}
  WORKING_DIRECTORY ${WORK}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "run_fuzz.cmake: ${FUZZER} found a problem (exit ${rc}); the input is in ${WORK}/artifacts/")
endif()
