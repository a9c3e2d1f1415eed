#!/usr/bin/env bash
# A rank killed mid-run stops the whole job with the launcher's error (no
# hang), the last checkpoint survives, and the restarted job finishes with the
# same parameters and records, bit for bit, as a job never interrupted. A rank
# that throws stops the job too, with its message.
# Usage: kill_and_resume.sh RUN_PROGRAM WORK_DIR LAUNCHER... (the launcher
# takes a rank count and the program after it: "mpiexec --oversubscribe -n").
set -uo pipefail
run=$1 work=$2
shift 2
launch=("$@")
fail() { echo "kill_and_resume: $*" >&2; exit 1; }
rm -rf "$work" && mkdir -p "$work"

"${launch[@]}" 2 "$run" "$work/whole" 6 > "$work/whole.log" 2>&1 || { cat "$work/whole.log"; fail "the uninterrupted run failed"; }

# Rank 1 dies as step 5 begins (checkpoints at 2 and 4).
timeout 300 "${launch[@]}" 2 "$run" "$work/resumed" 6 1 5 > "$work/killed.log" 2>&1
code=$?
cat "$work/killed.log"
[ "$code" -ne 124 ] || fail "the job hung after rank 1 died (killed by timeout)"
[ "$code" -ne 0 ] || fail "the job whose rank 1 died exited with status 0"
grep -Eq "rank 1.*(signal 9|Killed)|signal 9" "$work/killed.log" || fail "the launcher did not say that rank 1 was killed"
[ -f "$work/resumed/checkpoint-4/model.safetensors" ] || fail "checkpoint-4 is missing after the kill"
[ ! -e "$work/resumed/checkpoint-6" ] || fail "checkpoint-6 exists although the job died at step 5"
echo "kill_and_resume: the job stopped with status $code after rank 1 was killed; checkpoint-4 is intact"

# Rank 1 throws as step 5 begins: the program names the error and ends the job.
timeout 300 "${launch[@]}" 2 "$run" "$work/threw" 6 1 5 throw > "$work/threw.log" 2>&1
code=$?
cat "$work/threw.log"
[ "$code" -ne 124 ] || fail "the job hung after rank 1 threw (killed by timeout)"
[ "$code" -ne 0 ] || fail "the job whose rank 1 threw exited with status 0"
grep -q "injected failure on rank 1 at step 5" "$work/threw.log" || fail "the job did not print rank 1's error"
echo "kill_and_resume: the job stopped with status $code and rank 1's error after it threw"

"${launch[@]}" 2 "$run" "$work/resumed" 6 > "$work/resumed.log" 2>&1 || { cat "$work/resumed.log"; fail "the restarted run failed"; }
cmp "$work/whole/checkpoint-6/model.safetensors" "$work/resumed/checkpoint-6/model.safetensors" ||
  fail "the restarted run's parameters differ from the uninterrupted run's"
cmp "$work/whole/checkpoint-6/optimizer.safetensors" "$work/resumed/checkpoint-6/optimizer.safetensors" ||
  fail "the restarted run's optimizer state differs"
cmp "$work/whole/records.txt" "$work/resumed/records.txt" || fail "the restarted run's records differ"
[ "$(wc -l < "$work/resumed/records.txt")" -eq 6 ] || fail "the restarted run does not log 6 steps"
echo "kill_and_resume: the restarted job equals the uninterrupted one (parameters, optimizer, 6 records)"
