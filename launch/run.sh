#!/usr/bin/env bash
# Starts deltashard (or any command) under mpirun with sane defaults:
#   launch/run.sh -np 4 build/deltashard train configs/quickstart.yaml
#   launch/run.sh -np 16 --hostfile launch/hostfile.example build/deltashard train CONFIG
# Options before the command: -np N, --hostfile FILE, --oversubscribe, --bind (bind ranks to cores),
# --mpi "extra mpirun args". Under Slurm (SLURM_JOB_ID set and DELTASHARD_USE_SRUN=1) it uses srun.
set -euo pipefail

np=1; hostfile=""; oversubscribe=0; bind="none"; extra=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -np|-n) np="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --oversubscribe) oversubscribe=1; shift ;;
    --bind) bind="core"; shift ;;
    --mpi) extra="$2"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { echo "run.sh: no command given (see --help)" >&2; exit 2; }

if [[ -n "${SLURM_JOB_ID:-}" && "${DELTASHARD_USE_SRUN:-0}" == 1 ]]; then
  exec srun --ntasks="$np" --kill-on-bad-exit=1 "$@"
fi

args=(-np "$np" --bind-to "$bind" -x PATH -x OMP_NUM_THREADS)
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
exec mpirun "${args[@]}" "$@"
