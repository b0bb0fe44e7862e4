#!/usr/bin/env bash
# Issue 14's CPU benchmark: DeltaShard's LoRA data-parallel step (bench step) against the plain PyTorch DDP
# peer (launch/peer_ddp_lora.py), DP=2, one thread per rank, fp32 and bf16, on configs/bench/cpu/ddp-lora.yaml.
# Rounds interleave the two so background drift lands on both; the table is the median over rounds.
#
# usage: launch/bench_ddp_peer.sh [ROUNDS]        (default 3)
# env:   DELTASHARD  the binary (default build/deltashard)     PYTHON  python with torch + gloo (/usr/bin/python3)
#        CONFIG      (default configs/bench/cpu/ddp-lora.yaml)  STEPS / WARMUP  timed / untimed steps (20 / 3)
#        NP          ranks (default 2)                           OUTDIR  raw output kept here (default a temp dir)
#        DTYPES      default "fp32 bf16"                         PORT    first gloo port (default 29611)
#        RUN_TIMEOUT seconds one run may take (default 300)
set -u
cd "$(dirname "$0")/.." || exit 1

rounds=${1:-3}
ds=${DELTASHARD:-build/deltashard}
py=${PYTHON:-/usr/bin/python3}
config=${CONFIG:-configs/bench/cpu/ddp-lora.yaml}
steps=${STEPS:-20}
warmup=${WARMUP:-3}
np=${NP:-2}
dtypes=${DTYPES:-fp32 bf16}
port=${PORT:-29611}
run_timeout=${RUN_TIMEOUT:-300}
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench_ddp_peer: ROUNDS must be a positive integer" >&2; exit 2; }
[[ -x $ds ]] || { echo "bench_ddp_peer: $ds is not an executable (set DELTASHARD)" >&2; exit 1; }
"$py" -c 'import torch, torch.distributed as d; assert d.is_gloo_available()' 2>/dev/null ||
  { echo "bench_ddp_peer: $py has no torch with gloo (set PYTHON)" >&2; exit 1; }
out=${OUTDIR:-$(mktemp -d /tmp/bench_ddp_peer.XXXXXX)}
mkdir -p "$out/raw" || exit 1
results=$out/results.jsonl
: >"$results"
failed=0

# One intra-op thread per rank on both sides: OMP for LibTorch/PyTorch's OpenMP pool; DeltaShard also
# reads train.threads (1 in the config, forced here too in case another config is given).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mpi=(mpirun -np "$np" --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader,tcp
     --mca btl_vader_single_copy_mechanism none -x OMP_NUM_THREADS -x MKL_NUM_THREADS)
dtypes_csv=$(echo $dtypes | tr ' ' ',')

echo "bench_ddp_peer: $rounds rounds, np $np, $steps timed + $warmup warm-up steps, $config; raw output in $out"
echo "bench_ddp_peer: $(date -u +%FT%TZ), load average: $(cut -d' ' -f1-3 /proc/loadavg), $(getconf _NPROCESSORS_ONLN) cores"

# Appends {"round", "impl", "result"} (the JSON line the command printed) or {"round", "impl", "error"}.
record() {
  local round=$1 impl=$2 log=$3 rc=$4
  local line
  line=$(grep -E '^\{' "$log" | tail -n 1)
  # 124: the run printed its result but did not exit within RUN_TIMEOUT (a gloo teardown that hangs
  # was seen once); the timed steps are over by then, so the result stands.
  if [[ ( $rc -eq 0 || $rc -eq 124 ) && -n $line ]]; then
    echo "{\"round\":$round,\"impl\":\"$impl\",\"result\":$line}" >>"$results"
  else
    echo "bench_ddp_peer: round $round $impl failed (rc $rc); see $log" >&2
    echo "{\"round\":$round,\"impl\":\"$impl\",\"error\":\"rc $rc\"}" >>"$results"
    failed=1
  fi
}

run_deltashard() {
  local round=$1 log=$out/raw/r$1-deltashard.log
  timeout -k 5 "$run_timeout" "${mpi[@]}" "$ds" bench step "$config" --methods lora --dtypes "$dtypes_csv" --random-data \
    --steps "$steps" --warmup "$warmup" --json --set train.threads=1 >"$log" 2>&1
  record "$round" deltashard "$log" $?
}

run_peer() {
  local round=$1 dt=$2 log=$out/raw/r$1-peer-$2.log
  # A fresh port each run: the previous run's sockets may still be in TIME_WAIT.
  port=$((port + 1))
  timeout -k 5 "$run_timeout" "${mpi[@]}" "$py" launch/peer_ddp_lora.py --config "$config" --dtype "$dt" --steps "$steps" \
    --warmup "$warmup" --threads 1 --port "$port" >"$log" 2>&1
  record "$round" peer "$log" $?
}

for ((r = 1; r <= rounds; r++)); do
  # Alternate who goes first, so neither always runs right after the other's warm caches or noise.
  if ((r % 2)); then
    run_deltashard "$r"
    for dt in $dtypes; do run_peer "$r" "$dt"; done
  else
    for dt in $dtypes; do run_peer "$r" "$dt"; done
    run_deltashard "$r"
  fi
  echo "bench_ddp_peer: round $r of $rounds done ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
done

"$py" - "$results" $dtypes <<'EOF'
import json, statistics, sys
path, dtypes = sys.argv[1], sys.argv[2:]
ms = {}  # (impl, dtype) -> step_ms per round
for line in open(path):
    rec = json.loads(line)
    for dt, per in rec.get("result", {}).items():
        if dt in dtypes and "lora" in per:
            ms.setdefault((rec["impl"], dt), []).append(per["lora"]["step_ms"])
med = lambda v: statistics.median(v) if v else float("nan")
print("\nLoRA DP step, median over rounds of each run's step_ms (per-rank median, max over ranks)")
print(f"{'dtype':<6} {'deltashard_ms':>14} {'peer_ms':>10} {'ds/peer':>8}  rounds  per-round ds | peer")
for dt in dtypes:
    d, p = ms.get(("deltashard", dt), []), ms.get(("peer", dt), [])
    ratio = med(d) / med(p) if d and p else float("nan")
    rounds = " ".join(f"{x:.1f}" for x in d) + " | " + " ".join(f"{x:.1f}" for x in p)
    print(f"{dt:<6} {med(d):>14.1f} {med(p):>10.1f} {ratio:>8.3f}  {min(len(d), len(p)):>6}  {rounds}")
EOF
exit $failed
