#!/usr/bin/env bash
# A rank that stops (SIGSTOP) before a collective must be named by every other rank's timeout
# message, and the job must end. Runs tests/timeout_probe.cpp's `stop` mode:
#   stall_check.sh MPIEXEC NP K PROBE [mpiexec flags...]
# A stopped process outlives mpirun's abort unless resumed or killed: the ranks write their pids,
# and the exit trap resumes and kills whichever of them is still there.
set -u
mpiexec=$1 np=$2 k=$3 probe=$4
shift 4
dir=$(mktemp -d)
cleanup() {
  for f in "$dir"/pid.*; do
    [[ -e $f ]] || continue
    pid=$(cat "$f")
    # Only our probe: the pid may have been reused once the rank exited.
    if grep -q timeout_probe "/proc/$pid/cmdline" 2>/dev/null; then
      kill -CONT "$pid" 2>/dev/null
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  rm -rf "$dir"
}
trap cleanup EXIT

# The ranks time out after 2 s; 40 s is far beyond any abort, and below ctest's TIMEOUT.
timeout -k 5 40 "$mpiexec" -np "$np" "$@" "$probe" stop "$k" "$dir" > "$dir/out" 2>&1
rc=$?
cat "$dir/out"
fail=0
if [[ $rc == 0 || $rc == 124 || $rc == 137 ]]; then
  echo "stall_check: mpiexec exited with $rc: expected the job to abort" >&2
  fail=1
fi
for ((r = 0; r < np; r++)); do
  [[ $r == "$k" ]] && continue
  want="^deltashard: error: rank $r: all_reduce #42 \(tag dp.grads, group dp of $np, phase other\) did not complete within 2 s: rank $k has not arrived \(last announced collective 41 of 42\); aborting the job$"
  if ! grep -Eq "$want" "$dir/out"; then
    echo "stall_check: no line from rank $r naming rank $k" >&2
    fail=1
  fi
done
if grep -Eq "^deltashard: error: rank $k: .*has not arrived" "$dir/out"; then
  echo "stall_check: the stopped rank $k blamed a peer" >&2
  fail=1
fi
[[ $fail == 0 ]] && echo "stall_check: every other rank named rank $k"
exit $fail
