#!/usr/bin/env bash
# Preemption and failure tests with real processes (issue 17, and the checkpoint swap of issue 19):
# signals through launch/run.sh, stop_after, a killed rank, corrupted checkpoints, NaN losses, a
# failing write, and a SIGKILL at every rename and unlink of a save. A run is signalled at a known
# step through the fault hook step.wait_signal:N (it waits before step N until a stop signal has
# arrived), found by polling its JSONL log, so nothing here depends on timing. Weights are compared
# with cmp against an uninterrupted run's trainable.safetensors: bit for bit.
# usage: faults.sh CASE DELTASHARD CONFIG RUN_SH
set -uo pipefail
case_=$1 D=$2 CONFIG=$3 RUN=$4
EXPECT_ERROR=$(dirname "$0")/expect_error.sh
work=$PWD/faults_$case_
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
# 12 steps, no evaluation in between; the reference is the same run without interruption.
STEPS=12 GRACE=""
# mpirun's teardown after a lost rank or an MPI_Abort sleeps twice the grace (docs/operations.md);
# at 1 s the other rank is ended before it would print its own copy of the error.
[[ $case_ == sigkill_rank || $case_ == nan_stop ]] && GRACE="--grace 1"
[[ $case_ == crash_* ]] && STEPS=8
ARGS=(--set train.steps=$STEPS --set train.eval_every=0 --set log.every=100)

# A failing case stops its background run too (run.sh turns SIGTERM into a clean stop), so no run
# is left waiting at step.wait_signal.
fail() { echo "FAIL: $*"; kill $(jobs -p) 2>/dev/null; exit 1; }
# Runs `train` under run.sh at np 2 (background when $bg is set).
train2() { "$RUN" -np 2 --oversubscribe $GRACE "$D" train "$CONFIG" "${ARGS[@]}" "$@"; }
train1() { "$D" train "$CONFIG" "${ARGS[@]}" "$@"; }
# The trainable weights at the final step of two roots are the same bytes.
same_weights() {
  local s; s=$(printf 'step-%08d' "$STEPS")
  cmp "$1/$s/trainable.safetensors" "$2/$s/trainable.safetensors" || fail "$1 and $2 differ at $s"
  echo "bit-exact: $1/$s/trainable.safetensors == $2/$s/trainable.safetensors"
}
# Waits until the JSONL log $1 has a record of step $2, while process $3 lives. (Slurped: jq 1.6 -e
# exits 0 on an empty file, which the log is for a moment after it is created.)
wait_step() {
  until jq -se "any(.[]; .step == $2 and has(\"loss\"))" "$1" >/dev/null 2>&1; do
    kill -0 "$3" 2>/dev/null || fail "the run ended before step $2"
    sleep 0.1
  done
}

signal_resume() {  # $1: the signal sent to mpirun
  train2 --out ref --json >/dev/null || fail "reference run"
  # run.sh itself in the background (not through a function, whose subshell would get the signal).
  DELTASHARD_FAULT=step.wait_signal:5 "$RUN" -np 2 --oversubscribe "$D" train "$CONFIG" "${ARGS[@]}" --out run \
    --set log.jsonl="$work/run.jsonl" >out.txt 2>err.txt &
  local pid=$!
  wait_step run.jsonl 4 $pid
  kill -"$1" $pid
  wait $pid; local rc=$?
  cat err.txt
  [[ $rc == 75 ]] || fail "exit $rc after SIG$1, expected 75"
  # run.sh passes SIGTERM and SIGINT on to mpirun as SIGUSR1, the signal mpirun forwards at once.
  grep -q "stopped by SIGUSR1 after step 5 of $STEPS" err.txt || fail "no stop message"
  [[ -f run/step-00000005/deltashard.json ]] || fail "no checkpoint at step 5"
  [[ ! -e run/step-00000006 ]] || fail "a checkpoint past step 5"
  # Output to a file: grep -q on a pipe would close it early, and mpirun aborts on SIGPIPE.
  train2 --out run --resume auto >resume.txt || fail "resume"
  grep -q "resuming from $work/run/step-00000005" resume.txt || fail "resumed from another step"
  same_weights ref run
}

case $case_ in
sigterm_resume) signal_resume TERM ;;
sigusr1_resume) signal_resume USR1 ;;

stop_after_resume)
  train2 --out ref --json >/dev/null || fail "reference run"
  train2 --out run --stop-after 7 --json >/dev/null 2>err.txt; rc=$?
  cat err.txt
  [[ $rc == 75 ]] || fail "exit $rc at --stop-after, expected 75"
  grep -q "stopped at train.stop_after after step 7 of $STEPS" err.txt || fail "no stop message"
  train2 --out run --resume auto --json >/dev/null || fail "resume"
  same_weights ref run
  ;;

sigkill_rank)
  train2 --out ref --json >/dev/null || fail "reference run"
  DELTASHARD_FAULT=step.wait_signal:7 "$RUN" -np 2 --oversubscribe $GRACE "$D" train "$CONFIG" "${ARGS[@]}" --out run \
    --set checkpoint.every=3 --set log.jsonl="$work/run.jsonl" >out.txt 2>err.txt &
  pid=$!
  wait_step run.jsonl 6 $pid
  until [[ -f run/step-00000006/deltashard.json ]]; do kill -0 $pid || fail "ended early"; sleep 0.1; done
  rank1=""
  mpirun_pid=$(pgrep -P $pid mpirun)
  for c in $(pgrep -P "$mpirun_pid"); do
    grep -qz '^OMPI_COMM_WORLD_RANK=1$' /proc/$c/environ 2>/dev/null && rank1=$c
  done
  [[ -n $rank1 ]] || fail "rank 1 not found among mpirun's children"
  kill -KILL "$rank1"
  wait $pid; rc=$?
  cat err.txt
  [[ $rc != 0 ]] || fail "the job exited 0 after rank 1 was killed"
  echo "job exit $rc after SIGKILL of rank 1 (pid $rank1)"
  "$D" eval "$CONFIG" --checkpoint run --json | jq -e '.eval_loss > 0' || fail "the last checkpoint does not load"
  train2 --out run --resume auto >resume.txt || fail "resume"
  grep -q "resuming from $work/run/step-00000006" resume.txt || fail "resumed from another step"
  same_weights ref run
  ;;

corrupt_checkpoint)
  train1 --out ref --json >/dev/null || fail "reference run"
  train1 --out run --stop-after 6 --set checkpoint.every=2 --set checkpoint.keep=3 --json >/dev/null 2>/dev/null
  [[ -f run/step-00000004/deltashard.json && -f run/step-00000002/deltashard.json ]] || fail "checkpoints 2, 4, 6"
  # One byte altered, the size kept: the checksum finds it.
  printf '\x01' | dd of=run/step-00000006/trainable.safetensors bs=1 seek=200 conv=notrunc status=none
  "$EXPECT_ERROR" --code 3 "run/step-00000006/trainable.safetensors: altered: xxh64" \
    "$D" eval "$CONFIG" --checkpoint run || fail "altered file"
  # --resume auto falls back to step 4 and says so, then ends bit-exact.
  train1 --out run --resume auto --json >/dev/null 2>err.txt || { cat err.txt; fail "resume past the altered one"; }
  cat err.txt
  grep -q "warning: .*step-00000006/trainable.safetensors: altered.*falling back to the previous complete checkpoint .*step-00000004" \
    err.txt || fail "no fallback message"
  same_weights ref run
  # Truncated: named, with both sizes.
  truncate -s 100 "run/step-$(printf %08d $STEPS)/optimizer.safetensors"
  "$EXPECT_ERROR" --code 3 "optimizer.safetensors: truncated: 100 bytes" \
    "$D" train "$CONFIG" "${ARGS[@]}" --resume "run/step-$(printf %08d $STEPS)" || fail "truncated file"
  # Every complete checkpoint broken: an error, never a fresh start.
  for s in run/step-*/; do truncate -s 10 "$s/trainable.safetensors"; done
  # (after one warning per fallback)
  "$D" train "$CONFIG" "${ARGS[@]}" --out run --resume auto >/dev/null 2>err.txt; rc=$?
  cat err.txt
  [[ $rc == 3 ]] && tail -1 err.txt | grep -q "none valid.*refusing to start fresh" || fail "all broken: exit $rc"
  # Nothing at all: a fresh start.
  train1 --out fresh --resume auto >fresh.txt || fail "fresh run"
  grep -q "starting fresh" fresh.txt || fail "fresh start"
  same_weights ref fresh
  ;;

nan_skip)
  DELTASHARD_FAULT=step.nan:3 train2 --out run --set log.jsonl="$work/run.jsonl" --json >out.json || fail "run"
  jq -e '.skipped_steps == 1 and .steps == '$STEPS out.json || fail "summary"
  jq -se '(map(select(.step == 2 and has("loss")))[0].skipped_steps == 0) and
          (map(select(.step == 3 and has("loss")))[0].skipped_steps == 1) and
          (map(select(.step == '$STEPS' and has("loss")))[0].skipped_steps == 1)' run.jsonl || fail "jsonl"
  ;;

nan_stop)
  for policy in "train.nonfinite=stop" "train.max_skipped=0"; do
    rm -rf run
    DELTASHARD_FAULT=step.nan:3 "$EXPECT_ERROR" --code 1 \
      "step 3: the loss or gradient norm is not finite" \
      "$RUN" -np 2 --oversubscribe $GRACE "$D" train "$CONFIG" "${ARGS[@]}" --out run --set "$policy" || fail "$policy"
    # The last good state: two steps done, saved as step 2, and it loads.
    [[ -f run/step-00000002/deltashard.json ]] || fail "$policy: no checkpoint of the last good state"
    [[ $(jq -r .step run/step-00000002/state.json) == 2 ]] || fail "$policy: state.json step"
    "$D" eval "$CONFIG" --checkpoint run --json | jq -e '.eval_loss > 0' || fail "$policy: load"
  done
  ;;

write_fails)
  # The Nth file write fails as a full disk would, for every write of a run with a checkpoint every
  # 4 steps: each time one clear line (exit 3), and what was complete before still loads.
  train1 --out ref --json >/dev/null || fail "reference run"
  n=1
  while :; do
    rm -rf run
    DELTASHARD_FAULT=write.enospc:$n "$D" train "$CONFIG" "${ARGS[@]}" --out run --set checkpoint.every=4 \
      >/dev/null 2>err.txt; rc=$?
    [[ $rc == 0 ]] && break
    [[ $rc == 3 && $(wc -l <err.txt) == 1 ]] || { cat err.txt; fail "write $n: exit $rc"; }
    grep -q "No space left on device" err.txt || { cat err.txt; fail "write $n: message"; }
    if ls -d run/step-*/deltashard.json >/dev/null 2>&1; then
      "$D" eval "$CONFIG" --checkpoint run --json >/dev/null || fail "write $n: the previous checkpoint does not load"
    fi
    echo "write $n: $(cat err.txt)"
    n=$((n + 1))
  done
  echo "every one of $((n - 1)) writes failed cleanly"
  [[ $n -gt 10 ]] || fail "only $((n - 1)) writes"
  ;;

crash_rename|crash_unlink)
  # SIGKILL at the Nth rename (unlink) of a resumed run, twice in a row, then the run completes:
  # the newest complete checkpoint is never lost, and the end is bit-exact.
  point=${case_#crash_}
  train1 --out ref --json >/dev/null || fail "reference run"
  train1 --out base --stop-after 6 --set checkpoint.every=2 >/dev/null 2>&1
  n=1
  while :; do
    rm -rf run && cp -r base run
    killed=0
    for attempt in 1 2; do
      DELTASHARD_FAULT=$point:$n train1 --out run --resume auto --set checkpoint.every=2 >/dev/null 2>err.txt
      rc=$?
      [[ $rc == 137 ]] && killed=$((killed + 1))
      [[ $rc == 0 || $rc == 137 ]] || { cat err.txt; fail "$point $n attempt $attempt: exit $rc"; }
    done
    [[ $killed == 0 ]] && break
    train1 --out run --resume auto >/dev/null 2>err.txt || { cat err.txt; fail "$point $n: no loadable checkpoint"; }
    same_weights ref run >/dev/null
    n=$((n + 1))
  done
  echo "killed at each of $((n - 1)) ${point}s, twice in a row: every time a checkpoint loaded and the end was bit-exact"
  [[ $n -gt 3 ]] || fail "only $((n - 1)) ${point}s"
  ;;

*) fail "unknown case $case_" ;;
esac
echo "PASS $case_"
