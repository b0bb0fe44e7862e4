#!/usr/bin/env bash
# Does weight selection help here? Teacher: the quickstart base (configs/pretrain.yaml, pretrained
# unless runs/base exists). Student: half its width and layers (configs/select_student.yaml),
# trained the same number of steps twice on other text: from `deltashard select` (uniform layers
# and elements) and from random initialisation. Writes the eval-loss curves of both runs as
# docs/select_loss.png and prints how many steps each needs to reach the random run's final loss.
set -euo pipefail
cd "$(dirname "$0")/.."
np=${DELTASHARD_NP:-2}
out=runs/select
mkdir -p "$out"
if [[ ! -f runs/base/config.json ]]; then
  launch/run.sh -np "$np" build/deltashard train configs/pretrain.yaml
fi
build/deltashard select --teacher runs/base --student configs/select_student.yaml --out "$out/student" \
  --layers uniform --elements uniform
rm -f "$out/selected.jsonl" "$out/random.jsonl"
launch/run.sh -np "$np" build/deltashard train configs/select_student.yaml --set model.path="$out/student" \
  --set log.jsonl="$out/selected.jsonl" --set checkpoint.dir="$out/selected_ckpt" --json > "$out/selected.json"
launch/run.sh -np "$np" build/deltashard train configs/select_student.yaml \
  --set log.jsonl="$out/random.jsonl" --set checkpoint.dir="$out/random_ckpt" --json > "$out/random.json"

# Eval records: step and eval_loss, one file per run.
for run in selected random; do
  jq -r 'select(.eval_loss != null) | "\(.step)\t\(.eval_loss)"' "$out/$run.jsonl" > "$out/$run.eval.tsv"
done
target=$(tail -1 "$out/random.eval.tsv" | cut -f2)
reach() { awk -v t="$target" '$2 <= t { print $1; exit }' "$1"; }
sel_steps=$(reach "$out/selected.eval.tsv")
rnd_steps=$(reach "$out/random.eval.tsv")
echo "random init final eval loss $target: reached at step $rnd_steps; weight selection reaches it at step ${sel_steps:-never}"
echo "final eval loss: selected $(tail -1 "$out/selected.eval.tsv" | cut -f2), random $target"

gnuplot <<GP
set terminal pngcairo size 800,500 font ",10" noenhanced
set output "docs/select_loss.png"
set title "student (2 layers, d_model 64) on held-out fortunes: weight selection vs random init"
set xlabel "optimizer step"
set ylabel "eval loss (nats per byte)"
set grid
set arrow from graph 0, first $target to graph 1, first $target nohead dashtype 2 lc rgb "gray"
plot "$out/selected.eval.tsv" using 1:2 with linespoints title "weight selection from the 4-layer d_model-128 base", \
     "$out/random.eval.tsv" using 1:2 with linespoints title "random initialisation"
GP
echo "wrote docs/select_loss.png"
