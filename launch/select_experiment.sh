#!/usr/bin/env bash
# Does weight selection help here? Teacher: the quickstart base (configs/pretrain.yaml), pretrained
# unless runs/base exists. Student: half its width and layers (configs/select_student.yaml),
# trained the same number of steps on other text: from `deltashard select` (uniform layers and
# elements) and from random initialisation. Writes the eval-loss curves as docs/select_loss.png and
# prints the steps each needs to reach the random run's final loss.
#   --ablation  also trains students selected with consecutive, random and random-inconsistent
#               elements and with the first layers, and plots all runs as docs/select_ablation.png.
set -euo pipefail
cd "$(dirname "$0")/.."
np=${DELTASHARD_NP:-2}
ablation=false
[[ "${1:-}" == --ablation ]] && ablation=true
out=runs/select
mkdir -p "$out"
if [[ ! -f runs/base/config.json ]]; then
  launch/run.sh -np "$np" build/deltashard train configs/pretrain.yaml
fi

# train_student NAME [SELECT OPTIONS...]: no options means random initialisation.
train_student() {
  local name=$1; shift
  local from=()
  if (($#)); then
    build/deltashard select --teacher runs/base --student configs/select_student.yaml --out "$out/$name.model" \
      --seed 1 "$@" > /dev/null
    from=(--set model.path="$out/$name.model")
  fi
  rm -f "$out/$name.jsonl"
  launch/run.sh -np "$np" build/deltashard train configs/select_student.yaml "${from[@]}" \
    --set log.jsonl="$out/$name.jsonl" --set checkpoint.dir="$out/${name}_ckpt" --json > "$out/$name.json"
  jq -r 'select(.eval_loss != null) | "\(.step)\t\(.eval_loss)"' "$out/$name.jsonl" > "$out/$name.eval.tsv"
}

runs=(selected random)
train_student selected --layers uniform --elements uniform
train_student random
if $ablation; then
  train_student consecutive --layers uniform --elements consecutive
  train_student random_elements --layers uniform --elements random
  train_student random_inconsistent --layers uniform --elements random-inconsistent
  train_student first_layers --layers first --elements uniform
  runs+=(consecutive random_elements random_inconsistent first_layers)
fi

target=$(tail -1 "$out/random.eval.tsv" | cut -f2)
echo "random init final eval loss $target"
printf '%-20s %10s %12s %16s\n' run "loss@0" "final loss" "steps to target"
for run in "${runs[@]}"; do
  reach=$(awk -v t="$target" '$2 <= t { print $1; exit }' "$out/$run.eval.tsv")
  printf '%-20s %10.3f %12.3f %16s\n' "$run" "$(head -1 "$out/$run.eval.tsv" | cut -f2)" \
    "$(tail -1 "$out/$run.eval.tsv" | cut -f2)" "${reach:-never}"
done

plot() {  # plot PNG TITLE RUN...
  local png=$1 title=$2; shift 2
  local cmd="" run
  for run in "$@"; do
    cmd+="${cmd:+, }\"$out/$run.eval.tsv\" using 1:2 with linespoints title \"$run\""
  done
  gnuplot <<GP
set terminal pngcairo size 800,500 font ",10" noenhanced
set output "$png"
set title "$title"
set xlabel "optimizer step"
set ylabel "eval loss (nats per byte)"
set grid
set yrange [*:4]
set arrow from graph 0, first $target to graph 1, first $target nohead dashtype 2 lc rgb "gray"
plot $cmd
GP
  echo "wrote $png"
}
plot docs/select_loss.png "student (2 layers, d_model 64) on held-out fortunes: selected from the 4-layer base vs random init" selected random
if $ablation; then
  plot docs/select_ablation.png "student on held-out fortunes: how the teacher's elements and layers are chosen" "${runs[@]}"
fi
