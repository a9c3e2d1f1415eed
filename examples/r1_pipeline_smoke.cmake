# Runs r1_pipeline end to end on a tiny budget (bases of 20 pretraining steps,
# one or two steps per stage, 16 held-out problems; rejection sampling keeps
# any completion, since bases that small solve nothing) and checks what it
# wrote: every stage's model and stage.json, the two JSONL datasets read back
# as SFT records, the report's rows; then runs the same command again, which
# must find every stage done and rebuild the same table. EXTRA: more flags
# (--device;cuda: the same on the GPU, by r1_pipeline_cuda).
file(REMOVE_RECURSE ${WORK})
# One thread: ctest may run other tests beside it, and OpenMP's spinning threads on busy cores crawl.
set(ENV{OMP_NUM_THREADS} 1)
# The budget's flags, one line, shared with scripts/gpu-check.sh's r1 stage.
file(READ ${CMAKE_CURRENT_LIST_DIR}/r1_pipeline_smoke_flags.txt budget)
separate_arguments(budget UNIX_COMMAND "${budget}")
set(args --output_dir ${WORK} ${budget} ${EXTRA})
execute_process(COMMAND ${PIPELINE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "r1_pipeline failed (${rc}):\n${out}\n${err}")
endif()

foreach(stage bases/teacher_base bases/student_base seed-5/r1_zero seed-5/r1_cold_start seed-5/r1_rl seed-5/r1_sft2
        seed-5/r1_final seed-5/student_rl seed-5/student_seq_distill seed-5/student_logit_kd)
  foreach(f config.json model.safetensors stage.json)
    if(NOT EXISTS ${WORK}/${stage}/${f})
      message(FATAL_ERROR "${stage} lacks ${f}:\n${out}")
    endif()
  endforeach()
endforeach()
# 8 prompts x 2 samples, all kept but duplicates; one general example per ten.
# (lines counted as newlines: a completion may hold ';', CMake's list separator)
file(READ ${WORK}/seed-5/r1_rejection_sampled.jsonl records)
string(REGEX MATCHALL "\n" lines "${records}")
list(LENGTH lines n)
if(n LESS 2 OR n GREATER 18 OR NOT records MATCHES "\"source\": \"rejection_sampling\"")
  message(FATAL_ERROR "r1_rejection_sampled.jsonl has ${n} records:\n${records}")
endif()
file(READ ${WORK}/seed-5/teacher_traces.jsonl traces)
if(NOT traces MATCHES "\"prompt\": \" ?User: [0-9+]+\\. Assistant: <think>\", \"completion\": ")
  message(FATAL_ERROR "teacher_traces.jsonl does not hold prompt-completion records:\n${traces}")
endif()

file(READ ${WORK}/report.md first)
foreach(row "R1-Zero: GRPO" "R1: cold-start SFT" "R1: \\+ second RL stage" "student: GRPO alone"
        "student: SFT on R1's traces" "student: logit distillation from R1")
  if(NOT first MATCHES "\\| ${row} \\| 1 \\|")
    message(FATAL_ERROR "report.md lacks the row \"${row}\":\n${first}")
  endif()
endforeach()
if(NOT first MATCHES "Distillation against RL on the student" OR NOT first MATCHES "### Problem "
   OR NOT first MATCHES "seed 5, R1's SFT data: rejection sampling: 8 prompts, 16 completions")
  message(FATAL_ERROR "report.md lacks the distillation comparison, the datasets or the samples:\n${first}")
endif()

execute_process(COMMAND ${PIPELINE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE again ERROR_VARIABLE err)
string(REGEX MATCHALL "done before" done "${again}")
list(LENGTH done d)
if(NOT rc EQUAL 0 OR NOT d EQUAL 8)
  message(FATAL_ERROR "the second run should find the 8 stages done (${d} found, rc ${rc}):\n${again}\n${err}")
endif()
file(READ ${WORK}/report.md second)
string(REGEX REPLACE "\n## Sample.*" "" first_table "${first}")
string(REGEX REPLACE "\n## Sample.*" "" second_table "${second}")
if(NOT first_table STREQUAL second_table)
  message(FATAL_ERROR "the resumed run's report differs:\n${first_table}\n---\n${second_table}")
endif()
message(STATUS "r1_pipeline smoke: ${n} rejection-sampled records")
