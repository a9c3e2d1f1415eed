# Runs variant_bench for two variants (GRPO and PPO with its critic) on a tiny
# budget and checks what it wrote: one CSV row per variant with every column,
# the Markdown table, and a plot with a line per variant in each panel.
file(REMOVE_RECURSE ${WORK})
execute_process(
  COMMAND ${BENCH} --variants grpo,ppo --seeds 3 --output_dir ${WORK} --pretrain_steps 30 --max_steps 2
          --eval_steps 1 --heldout 16 --per_device_train_batch_size 16 ${EXTRA}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "variant_bench failed (${rc}):\n${out}\n${err}")
endif()

file(STRINGS ${WORK}/table.csv lines)
list(LENGTH lines n)
if(NOT n EQUAL 3)
  message(FATAL_ERROR "table.csv has ${n} lines, expected a header and 2 rows:\n${lines}")
endif()
# Fields are counted by their commas (a CMake list would drop the empty ones).
function(count_commas text out)
  string(REGEX MATCHALL "," commas "${text}")
  list(LENGTH commas n)
  set(${out} ${n} PARENT_SCOPE)
endfunction()
list(GET lines 0 header)
count_commas("${header}" columns)
foreach(k 1 2)
  list(GET lines ${k} row)
  count_commas("${row}" c)
  if(NOT c EQUAL columns)
    message(FATAL_ERROR "row ${k} of table.csv has ${c} commas, the header ${columns}: ${row}")
  endif()
endforeach()
list(GET lines 1 grpo_row)
list(GET lines 2 ppo_row)
if(NOT grpo_row MATCHES "^grpo,1," OR NOT ppo_row MATCHES "^ppo,1,")
  message(FATAL_ERROR "unexpected rows:\n${grpo_row}\n${ppo_row}")
endif()
# PPO's last two columns (critic seconds and state MiB) are positive, GRPO's are 0.
if(NOT ppo_row MATCHES ",[0-9.e+-]+,[1-9][0-9.e+-]*$" OR NOT grpo_row MATCHES ",0,0$")
  message(FATAL_ERROR "the critic's cost is not where expected:\n${grpo_row}\n${ppo_row}")
endif()

file(READ ${WORK}/table.md md)
if(NOT md MATCHES "\\| grpo \\| 1 \\|" OR NOT md MATCHES "\\| ppo \\| 1 \\|")
  message(FATAL_ERROR "table.md lacks a row per variant:\n${md}")
endif()

file(READ ${WORK}/curves.svg svg)
string(REGEX MATCHALL "<polyline" polylines "${svg}")
list(LENGTH polylines p)
if(NOT svg MATCHES "^<svg" OR NOT p EQUAL 4 OR NOT svg MATCHES ">grpo<" OR NOT svg MATCHES ">ppo<")
  message(FATAL_ERROR "curves.svg should hold 2 panels x 2 variants (${p} polylines found)")
endif()
foreach(run grpo/seed3 ppo/seed3)
  if(NOT EXISTS ${WORK}/runs/${run}/metrics.jsonl OR NOT EXISTS ${WORK}/runs/${run}/summary.json)
    message(FATAL_ERROR "runs/${run} lacks metrics.jsonl or summary.json")
  endif()
endforeach()
message(STATUS "variant_bench smoke: ${lines}")
