#!/usr/bin/env bash
# The quickstart campaign on the fortunes text (Debian package `fortunes`):
#   1. pretrain a small GPT-style base (method full) on one part of the text, unless runs/base exists;
#   2. LoRA-fine-tune that frozen base on other fortune files with 2 data-parallel ranks;
#   3. merge the LoRA delta into a new model directory and check it evaluates the same.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
mkdir -p runs
np=${DELTASHARD_NP:-2}

if [[ -f runs/base/config.json ]]; then
  echo "== base model: reusing runs/base (delete it to pretrain again)"
else
  echo "== 1. pretraining the base model (method full) -> runs/base"
  launch/run.sh -np "$np" build/deltashard train configs/pretrain.yaml
fi

echo "== 2. LoRA fine-tuning of the frozen base on other fortune files, $np data-parallel ranks"
launch/run.sh -np "$np" build/deltashard train configs/quickstart.yaml

echo "== 3. merging W0 + (alpha/r) B A into runs/merged"
build/deltashard merge configs/quickstart.yaml --checkpoint runs/lora --out runs/merged
echo "   unmerged: $(build/deltashard eval configs/quickstart.yaml --checkpoint runs/lora --json)"
echo "   merged:   $(build/deltashard eval configs/quickstart.yaml --checkpoint runs/lora --merged --json)"
echo "quickstart done: checkpoint runs/lora (trainable.safetensors), merged model runs/merged, metrics runs/quickstart.jsonl"
