# Installs lmrl into a temporary prefix, then configures, builds and runs a
# consumer project against it with find_package, and once more through
# add_subdirectory. Run by ctest (packaging/consumer).
set(work ${LMRL_WORK_DIR})
file(REMOVE_RECURSE ${work})
file(MAKE_DIRECTORY ${work})

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

set(gen -G Ninja)
find_program(ninja ninja)
if(NOT ninja)
  set(gen "")
endif()

run_step(${CMAKE_COMMAND} ${gen} -S ${LMRL_SOURCE_DIR} -B ${work}/lib -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
         -DLMRL_BUILD_TESTS=OFF -DLMRL_BUILD_EXAMPLES=OFF -DLMRL_BUILD_BENCHMARKS=OFF
         -DCMAKE_INSTALL_PREFIX=${work}/prefix)
run_step(${CMAKE_COMMAND} --install ${work}/lib)
if(NOT EXISTS ${work}/prefix/lib/cmake/lmrl/lmrlConfigVersion.cmake)
  message(FATAL_ERROR "install wrote no lmrlConfigVersion.cmake")
endif()

run_step(${CMAKE_COMMAND} ${gen} -S ${LMRL_SOURCE_DIR}/tests/consumer -B ${work}/installed
         -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_PREFIX_PATH=${work}/prefix)
run_step(${CMAKE_COMMAND} --build ${work}/installed)
run_step(${work}/installed/consumer)

run_step(${CMAKE_COMMAND} ${gen} -S ${LMRL_SOURCE_DIR}/tests/consumer -B ${work}/subdirectory
         -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DLMRL_SOURCE_DIR=${LMRL_SOURCE_DIR})
run_step(${CMAKE_COMMAND} --build ${work}/subdirectory)
run_step(${work}/subdirectory/consumer)
