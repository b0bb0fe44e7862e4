#!/usr/bin/env bash
# Cross-checks the ledger against Open MPI's own accounting: runs `deltashard train --json` under
# mpirun with the monitoring components on (at exit each rank prints, per communicator, the bytes
# and calls of its collectives) and compares rank 0's figures on the named DeltaShard communicators
# with the run totals of rank 0's ledger (run_comm in the JSON summary).
# Open MPI's coll monitoring counts a collective as if its payload went to each of the n-1 peers
# (all_reduce, broadcast: the buffer; all_gather, reduce_scatter: this rank's piece, where the
# ledger's reduce_scatter payload is the whole buffer; a barrier is a call of 0 bytes); the
# ledger's figures are converted to that definition, exactly. Exits non-zero on any difference, printing both sides.
# usage: monitoring_check.sh MPIEXEC NP DELTASHARD CONFIG [--set k=v ...]
set -euo pipefail
mpiexec=$1 np=$2 bin=$3 config=$4
shift 4
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
# --output-filename keeps each rank's output apart (interleaved lines would mix the blocks).
# parallel.timeout_s=0: no watchdog, so no arrival announcements (dist/arrivals.h), whose
# MPI_Comm_dup agrees on a context id through Open MPI's own small all-reduces, outside the ledger.
"$mpiexec" -np "$np" --oversubscribe --bind-to none --mca btl self,vader,tcp \
  --mca pml_monitoring_enable 1 --mca pml_monitoring_enable_output 1 --output-filename "$dir/out" \
  "$bin" train "$config" --json --set parallel.timeout_s=0 "$@" >/dev/null 2>&1 || {
  cat "$dir"/out/*/rank.0/std* 2>/dev/null; echo "monitoring_check: the run failed"; exit 1; }
rank0=$(ls -d "$dir"/out/*/rank.0)
summary=$(grep -m1 '^{"method"' "$rank0/stdout") || { cat "$rank0"/std*; echo "monitoring_check: no JSON summary"; exit 1; }
report=$(cat "$rank0"/std*)
status=0 checked=0
for group in world tp dp; do
  want=$(jq -r ".run_comm.$group as \$g | [\$g.by_op | to_entries[]
      | {calls: .value.calls, bytes: ((if .key == \"reduce_scatter\" then .value.bytes / \$g.group_size else .value.bytes end) * (\$g.group_size - 1))}]
      | \"\(map(.calls) | add // 0) \(map(.bytes) | add // 0 | floor)\"" <<<"$summary")
  got=$(awk -v name="deltashard.$group" -F'\t' '
    $1 == "D" { inblock = ($2 == name); if (inblock) found = 1; next }
    inblock && ($1 == "O2A" || $1 == "A2O" || $1 == "A2A") {
      split($3, b, " "); split($4, m, " "); bytes += b[1]; calls += m[1] }
    END { if (!found) print "absent"; else print calls, bytes }' <<<"$report")
  if [[ $got == absent ]]; then
    echo "deltashard.$group: not in Open MPI's monitoring output"; status=1; continue
  fi
  checked=$((checked + 1))
  printf 'deltashard.%-6s ledger (Open MPI definitions) %-20s | Open MPI monitoring %s   [calls bytes]\n' \
    "$group" "$want" "$got"
  [[ $want == "$got" ]] || status=1
done
[[ $checked -gt 0 ]] || status=1
if [[ $status == 0 ]]; then echo "monitoring_check: ledger and Open MPI agree"; else echo "monitoring_check: MISMATCH"; fi
exit $status
