# The launcher command of the MPI tests and benchmarks: a list that a rank
# count and a program complete ("mpiexec --oversubscribe -n" 4 ./program).
# Open MPI needs --oversubscribe for more ranks than cores, and refuses root
# unless told (containers and CI run as root); LMRL_MPI_TEST_ENV carries that.
function(lmrl_mpi_launcher out)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE version ERROR_QUIET)
  set(launch ${MPIEXEC_EXECUTABLE})
  if(version MATCHES "Open MPI|OpenRTE")
    list(APPEND launch --oversubscribe)
    set(LMRL_MPI_TEST_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1" PARENT_SCOPE)
  endif()
  list(APPEND launch ${MPIEXEC_NUMPROC_FLAG})
  set(${out} ${launch} PARENT_SCOPE)
endfunction()
