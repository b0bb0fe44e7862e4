#!/usr/bin/env bash
# Multi-host runs on a pretend cluster of network namespaces (launch/netns_cluster.sh) through
# launch/run.sh --netns (issue 17): DP 2 x TP 2 across two hosts against one host, a clean stop and
# resume across them, a lost host, and a resume on the surviving one. Exits 77 (ctest: skipped)
# without root, ip netns or unshare.
# usage: multihost.sh CASE DELTASHARD CONFIG RUN_SH
#   CASE: same_weights | sigterm_resume | lose_host | lose_host_resume
set -euo pipefail
case_=$1 D=$2 CONFIG=$3 RUN=$4
here=$(cd "$(dirname "$0")" && pwd)
CLUSTER=$here/../launch/netns_cluster.sh

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root (ip netns, unshare)"
command -v ip >/dev/null && command -v unshare >/dev/null || skip "no ip or unshare"
# Unique names: tests may run in parallel, each with its own cluster (the same subnet is fine: each
# cluster's namespaces see only their own bridge).
export DS_NETNS_PREFIX=dsmt$$h
# A test killed outright (SIGKILL, a ctest timeout) had no chance to remove its cluster: remove
# those whose test process is gone.
for stale in $(ip netns list 2>/dev/null | awk '{print $1}' | sed -n 's/^dsmt\([0-9]*\)h-br$/\1/p'); do
  kill -0 "$stale" 2>/dev/null || DS_NETNS_PREFIX=dsmt${stale}h "$CLUSTER" down || true
done
ip netns add "${DS_NETNS_PREFIX}probe" 2>/dev/null || skip "ip netns add fails here"
# (exec mounts a sysfs of its own: a container may allow the first and not this)
probe=0; ip netns exec "${DS_NETNS_PREFIX}probe" true 2>/dev/null || probe=$?
ip netns delete "${DS_NETNS_PREFIX}probe"
[[ $probe == 0 ]] || skip "ip netns exec fails here"
unshare --uts true 2>/dev/null || skip "unshare --uts fails here"

work=$PWD/multihost_$case_
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
# The namespaces go whatever happens; a failing case stops its background run first.
trap 'kill $(jobs -p) 2>/dev/null || true; "$CLUSTER" down' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$CLUSTER" up 2 >hosts.txt || fail "netns_cluster.sh up 2"
cat hosts.txt
read -r NS0 A0 < <(sed -n 1p hosts.txt)
read -r NS1 A1 < <(sed -n 2p hosts.txt)

STEPS=12
ARGS=(--set "train.steps=$STEPS" --set train.eval_every=0 --set log.every=100 --set parallel.tp=2)
# ranks 0,1 (TP group 0) on host 0, ranks 2,3 on host 1: the DP all-reduces cross the bridge.
train_2hosts() { "$RUN" --netns --hosts "$A0:2,$A1:2" "$D" train "$CONFIG" "${ARGS[@]}" "$@"; }
train_1host() { "$RUN" -np "$1" --oversubscribe "$D" train "$CONFIG" "${ARGS[@]}" "${@:2}"; }
same_weights() {
  local s; s=$(printf 'step-%08d' "$STEPS")
  cmp "$1/$s/trainable.safetensors" "$2/$s/trainable.safetensors" || fail "$1 and $2 differ at $s"
  echo "bit-exact: $1/$s/trainable.safetensors == $2/$s/trainable.safetensors"
}
# Whether the JSONL log $1 has the record of step $2. (Slurped: jq 1.6 -e exits 0 on an empty file,
# which the log is for a moment after it is created; a line being written fails to parse.)
logged() { jq -se "any(.[]; .step == $2 and has(\"loss\"))" "$1" >/dev/null 2>&1; }
# Bytes host 1 has sent into the bridge (its veth's peer there receives them).
bridge_rx() { ip -n "$DS_NETNS_PREFIX-br" -j -s link show v1 | jq '.[0].stats64.rx.bytes'; }

# Kills every process of host 1 while the run is held before step 7 with checkpoint 6 complete;
# the job must end within 60 s with exit 137 and run.sh's line naming host 1's ranks.
lose_host() {
  DELTASHARD_FAULT=step.wait_signal:7 train_2hosts --out run --set checkpoint.every=3 \
    --set log.jsonl="$work/run.jsonl" >out.txt 2>err.txt &
  local pid=$! t0 t1 rc
  until [[ -f run/step-00000006/deltashard.json ]] && logged run.jsonl 6; do
    kill -0 $pid 2>/dev/null || { cat err.txt; fail "the run ended before step 6"; }
    sleep 0.1
  done
  # Where the ranks' traffic goes: every established TCP socket of the 4 ranks is in a host
  # namespace, between cluster addresses (ranks) or on that namespace's own loopback (each rank's
  # PMIx link to its local daemon); the machine's own namespace holds none of them.
  local pids="" p
  for p in $(ip netns pids "$NS0") $(ip netns pids "$NS1"); do
    if [[ $(cat /proc/"$p"/comm 2>/dev/null) == deltashard ]]; then pids+=" $p"; fi
  done
  [[ $(wc -w <<<"$pids") == 4 ]] || fail "expected 4 ranks in the namespaces, found:$pids"
  for p in $pids; do
    if ss -tnpH | grep -q "pid=$p,"; then fail "rank pid $p has a socket in the root namespace"; fi
  done
  ip netns exec "$NS0" ss -tnpH state established | grep '"deltashard"' >ss0.txt || fail "no socket on host 0"
  ip netns exec "$NS1" ss -tnpH state established | grep '"deltashard"' >ss1.txt || fail "no socket on host 1"
  cat ss0.txt ss1.txt
  if awk '{print $3; print $4}' ss0.txt ss1.txt | grep -Ev '^(10\.77\.0\.[0-9]+|127\.0\.0\.1):'; then
    fail "a rank's socket outside 10.77.0.0/24 and loopback"
  fi
  awk '{print $4}' ss0.txt | grep -q "^$A1:" || fail "no connection from a rank on host 0 to host 1"
  echo "the ranks' sockets: $(cat ss0.txt ss1.txt | wc -l) established, all in 10.77.0.0/24 or loopback, none in the root namespace"

  local victims; victims=$(ip netns pids "$NS1" | tr '\n' ' ')
  echo "killing every process of $NS1: $victims"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  kill -KILL $victims
  while kill -0 $pid 2>/dev/null; do
    (( $(date +%s) - ${t0%.*} < 60 )) || fail "the job still runs 60 s after host 1 was lost"
    sleep 0.05
  done
  rc=0; wait $pid || rc=$?
  t1=$(date +%s.%N)
  cat err.txt
  printf 'the job ended %.2f s after host 1 was killed, exit %d\n' "$(bc <<<"$t1 - $t0")" $rc
  [[ $rc == 137 ]] || fail "exit $rc after host 1 was lost, expected 137 (128 + SIGKILL)"
  grep -qx "run.sh: lost host $A1 ($NS1) with ranks 2-3: its daemon ended by signal 9" err.txt || fail "no line naming ranks 2-3"
  [[ -z $(ip netns pids "$NS0") ]] || fail "processes left on host 0: $(ip netns pids "$NS0" | tr '\n' ' ')"
}

case $case_ in
same_weights)
  # (a) The same run on one host (np 4) and across two: the same final weights, bit for bit.
  train_1host 4 --out one --json >/dev/null || fail "one-host run"
  before=$(bridge_rx)
  train_2hosts --out two --json >two.json || fail "two-host run"
  sent=$(( $(bridge_rx) - before ))
  dp=$(jq '.run_comm.dp.bytes' two.json)
  echo "host 1 sent $sent bytes over the bridge; the DP ledger of one rank: $dp bytes"
  (( sent > 2 * dp )) || fail "less traffic over the bridge than ranks 2 and 3's DP all-reduces"
  same_weights one two
  ;;

lose_host) lose_host ;;

sigterm_resume)
  # run.sh's clean stop across hosts: SIGTERM to it while the run waits before step 5 stops every
  # rank on both hosts after step 5 (exit 75); resumed across the hosts, it ends bit for bit as one
  # host's uninterrupted run.
  train_1host 4 --out ref --json >/dev/null || fail "one-host run"
  DELTASHARD_FAULT=step.wait_signal:5 "$RUN" --netns --hosts "$A0:2,$A1:2" "$D" train "$CONFIG" "${ARGS[@]}" \
    --out run --set log.jsonl="$work/run.jsonl" >out.txt 2>err.txt &
  pid=$!
  until logged run.jsonl 4; do
    kill -0 $pid 2>/dev/null || { cat err.txt; fail "the run ended before step 4"; }
    sleep 0.1
  done
  t0=$(date +%s.%N)
  kill -TERM $pid
  rc=0; wait $pid || rc=$?
  printf 'run.sh returned %d %.2f s after SIGTERM\n' $rc "$(bc <<<"$(date +%s.%N) - $t0")"
  cat err.txt
  [[ $rc == 75 ]] || fail "exit $rc after SIGTERM, expected 75"
  grep -q "stopped by SIGUSR1 after step 5 of $STEPS" err.txt || fail "no stop message"
  [[ -f run/step-00000005/deltashard.json && ! -e run/step-00000006 ]] || fail "not checkpoint 5 alone"
  train_2hosts --out run --resume auto >resume.txt 2>&1 || { cat resume.txt; fail "resume across the hosts"; }
  grep -q "resuming from $work/run/step-00000005" resume.txt || fail "resumed from another step"
  same_weights ref run
  ;;

lose_host_resume)
  # (c) After (b), --resume auto on the surviving host at DP 1 x TP 2: from checkpoint 6 to the end,
  # and bit for bit the weights of the same schedule on one host (np 4 to step 6, then np 2).
  lose_host
  "$RUN" --netns --hosts "$A0:2" "$D" train "$CONFIG" "${ARGS[@]}" --out run --resume auto \
    --json >resume.json 2>resume.err || { cat resume.err; fail "resume on host 0"; }
  # (.steps: the steps this run did, 7 to 12)
  jq -e ".steps == $STEPS - 6 and .dp == 1 and .tp == 2" resume.json || fail "resume summary: $(cat resume.json)"
  [[ -f run/step-$(printf %08d $STEPS)/deltashard.json ]] || fail "no checkpoint at step $STEPS"
  rc=0; train_1host 4 --out ref --stop-after 6 --set checkpoint.every=3 --json >/dev/null 2>&1 || rc=$?
  [[ $rc == 75 && -f ref/step-00000006/deltashard.json ]] || fail "reference to step 6: exit $rc"
  train_1host 2 --out ref --resume auto --json >/dev/null || fail "reference resume"
  same_weights ref run
  ;;

*) fail "unknown case $case_" ;;
esac
echo "PASS $case_"
