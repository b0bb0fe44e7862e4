#!/usr/bin/env bash
# 50 LoRA steps (r 8 on q, v) on the GPT-2-small shape with an fp32 and then a bf16 base, same seed
# and data, one thread; per-step losses in OUT/curve_{fp32,bf16}.jsonl, then the largest relative
# difference between the two curves and the median step times (docs/results.md).
# usage: launch/bench_bf16_curve.sh [OUT]   (default /tmp/bench)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-/tmp/bench}
mkdir -p "$out" && cd "$out"
for dt in fp32 bf16; do
  rm -rf ck_$dt
  OMP_NUM_THREADS=1 "$root/build/deltashard" train "$root/configs"/gpt2_small.yaml --set peft.method=lora --set peft.r=8 \
    --set 'peft.targets=[q, v]' --set train.steps=50 --set train.seq_len=64 --set train.micro_batch=2 --set train.threads=1 \
    --set train.lr=1e-3 --set train.eval_every=0 --set log.every=1 --set model.dtype=$dt --set log.jsonl="$out"/curve_$dt.jsonl \
    --set checkpoint.dir="$out"/ck_$dt > curve_$dt.log 2>&1
done
python3 - <<'PY'
import json, statistics
def steps(p):
    return {j["step"]: j for j in map(json.loads, open(p)) if "loss" in j}
a, b = steps("curve_fp32.jsonl"), steps("curve_bf16.jsonl")
common = sorted(set(a) & set(b))
rel = [abs(b[s]["loss"] - a[s]["loss"]) / abs(a[s]["loss"]) for s in common]
print(f"{len(common)} steps; largest relative loss difference {max(rel):.5f} at step {common[rel.index(max(rel))]}")
print(f"loss fp32 {a[common[0]]['loss']:.4f} -> {a[common[-1]]['loss']:.4f}, bf16 {b[common[0]]['loss']:.4f} -> {b[common[-1]]['loss']:.4f}")
print(f"median step_ms fp32 {statistics.median(a[s]['step_ms'] for s in common):.0f}, bf16 {statistics.median(b[s]['step_ms'] for s in common):.0f}")
PY
