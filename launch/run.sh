#!/usr/bin/env bash
# Starts deltashard (or any command) under mpirun with sane defaults:
#   launch/run.sh -np 4 build/deltashard train configs/quickstart.yaml
#   launch/run.sh -np 16 --hostfile launch/hostfile.example build/deltashard train CONFIG
# Options before the command: -np N, --hostfile FILE, --oversubscribe, --bind (bind ranks to cores),
# --grace S (Open MPI's odls_base_sigkill_timeout: seconds between mpirun's SIGTERM and SIGKILL when
# it tears a job down; default 1, Open MPI's own, so a dead rank ends the job in about 2 s; a clean
# stop through this script does not depend on it), --mpi "extra mpirun args". Under Slurm (SLURM_JOB_ID set
# and DELTASHARD_USE_SRUN=1) it uses srun. mpirun runs with -q: an error is the rank's one line,
# not buried under Open MPI's abort banner. SIGTERM, SIGINT and SIGUSR1 to this script stop the run
# cleanly (a checkpoint, exit 75). Signals and exit codes: docs/operations.md.
set -euo pipefail

np=1; hostfile=""; oversubscribe=0; bind="none"; extra=""; grace=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n) np="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --bind) bind="core"; shift ;;
    --grace) grace="$2"; shift 2 ;;
    --mpi) extra="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "run.sh: no command given (see --help)" >&2; exit 2; }

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
if [[ $oversubscribe == 1 || ( -z "$hostfile" && $np -gt $cores ) ]]; then args+=(--oversubscribe); fi
[[ -n "$hostfile" ]] && args+=(--hostfile "$hostfile")
[[ $(id -u) == 0 ]] && args+=(--allow-run-as-root)
# Shared-memory transport without kernel-assisted copies: works in containers without ptrace rights.
args+=(--mca btl self,vader,tcp --mca btl_vader_single_copy_mechanism none)
# shellcheck disable=SC2206
[[ -n "$extra" ]] && args+=($extra)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# mpirun forwards SIGUSR1 to every rank at once, but meets SIGTERM and SIGINT with its teardown
# (SIGCONT, grace, SIGTERM, grace, SIGKILL): those reach it from here as SIGUSR1, a clean stop.
mpirun "${args[@]}" "$@" &
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
if [[ $own_status == 1 ]]; then rm -f "$status_file"; fi
exit "$rc"
