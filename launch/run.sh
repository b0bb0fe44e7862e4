#!/usr/bin/env bash
# Starts deltashard (or any command) under mpirun with sane defaults:
#   launch/run.sh -np 4 build/deltashard train configs/quickstart.yaml
#   launch/run.sh -np 16 --hostfile launch/hostfile.example build/deltashard train CONFIG
#   launch/run.sh -np 4 --hosts node01,node02 --if 10.0.0.0/24 build/deltashard train CONFIG
#   launch/run.sh -np 4 --netns --hosts 10.77.0.1,10.77.0.2 build/deltashard train CONFIG
# Options before the command: -np N, --hostfile FILE, --oversubscribe, --bind (bind ranks to cores),
# --grace S (Open MPI's odls_base_sigkill_timeout: seconds between mpirun's SIGTERM and SIGKILL when
# it tears a job down; default 1, Open MPI's own, so a dead rank ends the job in about 2 s; a clean
# stop through this script does not depend on it), --mpi "extra mpirun args". Under Slurm (SLURM_JOB_ID set
# and DELTASHARD_USE_SRUN=1) it uses srun. mpirun runs with -q: an error is the rank's one line,
# not buried under Open MPI's abort banner. SIGTERM, SIGINT and SIGUSR1 to this script stop the run
# cleanly (a checkpoint, exit 75). Signals and exit codes: docs/operations.md.
# Multi-host (docs/operations.md, "Multi-host"): --hosts H1[:n],H2[:n],... places n ranks on each
# host in order (ranks 0..n-1 on H1, so a TP group stays on one host; without :n, -np is split
# evenly), started over ssh. --if NET (a CIDR or interface names, comma-separated) pins both Open
# MPI's TCP transport and its runtime's connections to that network. --netns: the hosts are
# addresses of launch/netns_cluster.sh's namespaces; mpirun runs in the first one's namespace,
# reaches the others through launch/netns_agent.sh instead of ssh, and every byte between ranks
# goes over TCP on the cluster's subnet (the default --if).
set -euo pipefail

np=""; hostfile=""; oversubscribe=0; bind="none"; extra=""; grace=1; hosts=""; ifnet=""; netns=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n) np="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --hosts) hosts="$2"; shift 2 ;;
    --if) ifnet="$2"; shift 2 ;;
    --netns) netns=1; shift ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --bind) bind="core"; shift ;;
    --grace) grace="$2"; shift 2 ;;
    --mpi) extra="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "run.sh: no command given (see --help)" >&2; exit 2; }
die() { echo "run.sh: $*" >&2; exit 2; }
[[ -z $hosts || -z $hostfile ]] || die "give --hosts or --hostfile, not both"
[[ $netns == 0 || -n $hosts ]] || die "--netns needs --hosts (the addresses launch/netns_cluster.sh up printed)"

# --hosts: Open MPI's --host list with every host's slots, and -np their sum when not given.
host_list=() first_host=""
if [[ -n $hosts ]]; then
  IFS=, read -ra hs <<<"$hosts"
  given=0 total=0
  for h in "${hs[@]}"; do [[ $h == *:* ]] && given=$((given + 1)); done
  if [[ $given == 0 ]]; then
    [[ -n $np ]] || die "--hosts without :slots needs -np"
    (( np % ${#hs[@]} == 0 )) || die "-np $np does not split evenly over ${#hs[@]} hosts (give HOST:n)"
  elif [[ $given != "${#hs[@]}" ]]; then
    die "--hosts: give :slots for every host or for none"
  fi
  for h in "${hs[@]}"; do
    [[ -n $h ]] || die "--hosts: an empty host name in '$hosts'"
    if [[ $h == *:* ]]; then n=${h##*:}; h=${h%:*}; else n=$((np / ${#hs[@]})); fi
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "--hosts: '$n' slots for $h is not a positive integer"
    host_list+=("$h:$n"); total=$((total + n))
    [[ -n $first_host ]] || first_host=$h
  done
  np=${np:-$total}
  (( np <= total )) || die "-np $np is more than the $total slots of --hosts"
fi
np=${np:-1}
if [[ $netns == 1 ]]; then
  here=$(cd "$(dirname "$0")" && pwd)
  export DS_NETNS_PREFIX=${DS_NETNS_PREFIX:-ds-host}
  # Before any file is made: an address no namespace owns is a one-line error.
  ns0=$("$here/netns_cluster.sh" ns "$first_host") || exit 2
fi

if [[ -n "${SLURM_JOB_ID:-}" && "${DELTASHARD_USE_SRUN:-0}" == 1 ]]; then
  exec srun --ntasks="$np" --kill-on-bad-exit=1 "$@"
fi

args=(-q -np "$np" --bind-to "$bind" -x PATH -x OMP_NUM_THREADS --mca odls_base_sigkill_timeout "$grace")
# mpirun meets a rank that exits non-zero, even after MPI_Finalize, with its teardown of the others,
# which sleeps twice the grace whether or not they have exited. So under this script a stopped run's
# ranks exit 0 and rank 0 writes the code (75) to DELTASHARD_STATUS_FILE, which this script returns.
own_status=0
if [[ -z ${DELTASHARD_STATUS_FILE:-} ]]; then
  DELTASHARD_STATUS_FILE=$(mktemp "${TMPDIR:-/tmp}/deltashard-status.XXXXXX") own_status=1
fi
status_file=$DELTASHARD_STATUS_FILE
: >"$status_file"
export DELTASHARD_STATUS_FILE=$status_file
args+=(-x DELTASHARD_STATUS_FILE)
# The fault hook of the crash tests reaches remote ranks too.
[[ -n "${DELTASHARD_FAULT:-}" ]] && args+=(-x DELTASHARD_FAULT)
# More ranks than cores (this 2-core machine, CI) needs --oversubscribe.
cores=$(nproc)
if [[ $oversubscribe == 1 || ( -z "$hostfile" && -z "$hosts" && $np -gt $cores ) ]]; then args+=(--oversubscribe); fi
[[ -n "$hostfile" ]] && args+=(--hostfile "$hostfile")
# Fill each host's slots before the next (--map-by slot): ranks 0..n-1 on the first host, so the
# consecutive ranks of a TP group share a host and only DP traffic crosses hosts.
if [[ -n $hosts ]]; then
  args+=(--host "$(IFS=,; echo "${host_list[*]}")" --map-by slot)
fi
[[ $(id -u) == 0 ]] && args+=(--allow-run-as-root)
launcher=()
if [[ $netns == 0 ]]; then
  # Shared-memory transport without kernel-assisted copies: works in containers without ptrace rights.
  args+=(--mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none)
else
  ifnet=${ifnet:-${DS_NETNS_SUBNET:-10.77.0}.0/24}
  # TCP only: the "hosts" share this machine's /dev/shm, and vader would carry the ranks of one
  # host past the network under test. The agent enters a host's namespace where ssh would log in.
  args+=(--mca btl tcp,self --mca plm_rsh_agent "$here/netns_agent.sh")
  # mpirun runs on the first host, named like the others (netns_agent.sh says why); every exec
  # keeps the pid, so $pid below is mpirun's own and the signal forwarding works as on one host.
  launcher=(ip netns exec "$ns0" unshare --uts bash -c 'hostname "$0" && exec "$@"' "$ns0")
  # netns_agent.sh writes "ADDRESS NAMESPACE SIGNAL" here for a host whose daemon was killed.
  DS_NETNS_LOST=$(mktemp "${TMPDIR:-/tmp}/deltashard-lost.XXXXXX")
  export DS_NETNS_LOST
fi
# Both of Open MPI's TCP users: the BTL (the ranks' data) and the OOB (mpirun and its daemons),
# which would otherwise use any interface that routes, e.g. the management network or docker0.
[[ -n $ifnet ]] && args+=(--mca btl_tcp_if_include "$ifnet" --mca oob_tcp_if_include "$ifnet")
# shellcheck disable=SC2206
[[ -n "$extra" ]] && args+=($extra)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# mpirun forwards SIGUSR1 to every rank at once, but meets SIGTERM and SIGINT with its teardown
# (SIGCONT, grace, SIGTERM, grace, SIGKILL): those reach it from here as SIGUSR1, a clean stop.
"${launcher[@]}" mpirun "${args[@]}" "$@" &
pid=$!
trap 'kill -USR1 $pid 2>/dev/null' USR1 TERM INT
trap 'kill -USR2 $pid 2>/dev/null' USR2
# wait returns early when a trapped signal arrives; wait again for mpirun's own exit status.
while :; do
  rc=0
  wait $pid || rc=$?
  kill -0 $pid 2>/dev/null || break
done
if [[ $rc == 0 && -s $status_file ]]; then rc=$(<"$status_file"); fi
# A lost host, named with its ranks (--hosts fills hosts in order), as one line each. mpirun exits
# 137 when it meets the agent's exit first and 205 when it notices the lost connection first
# (measured: 2 of 15 runs, 1 s sooner); run.sh returns 128 + the signal either way.
if [[ -n ${DS_NETNS_LOST:-} ]]; then
  lost_rc=""
  while read -r addr lost_ns sig; do
    first=0
    for h in "${host_list[@]}"; do
      n=${h##*:}
      if [[ ${h%:*} == "$addr" ]]; then
        last=$((first + n - 1)); (( last < np )) || last=$((np - 1))
        if (( first == last )); then ranks="rank $first"; else ranks="ranks $first-$last"; fi
        echo "run.sh: lost host $addr ($lost_ns) with $ranks: its daemon ended by signal $sig" >&2
      fi
      first=$((first + n))
    done
    lost_rc=${lost_rc:-$((128 + sig))}
  done <"$DS_NETNS_LOST"
  rc=${lost_rc:-$rc}
  rm -f "$DS_NETNS_LOST"
fi
if [[ $own_status == 1 ]]; then rm -f "$status_file"; fi
exit "$rc"
