#!/usr/bin/env bash
# Training on a GPU as users run it: a few LoRA steps of the tiny model with a bf16 base on
# train.device cuda (NCCL chosen by parallel.backend auto), then eval and generate on the GPU.
# Exits 77 (ctest: skipped) where LibTorch sees no CUDA device.
# usage: gpu_smoke.sh DELTASHARD CONFIG
set -uo pipefail
bin=$1 config=$2
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
out=$("$bin" train "$config" --set train.device=cuda --set model.dtype=bf16 --set peft.method=full \
      --set train.steps=3 --set checkpoint.dir="$dir/base" --json 2>&1)
rc=$?
if [[ $rc -ne 0 ]] && grep -q "sees no CUDA device" <<<"$out"; then echo "SKIP: no CUDA device"; exit 77; fi
[[ $rc -eq 0 ]] || { echo "$out"; echo "gpu_smoke: full fine-tuning on cuda failed"; exit 1; }
jq -e '.device == "cuda" and .dtype == "bf16" and .eval_loss_after < .eval_loss_before' <<<"$out" || exit 1
"$bin" train "$config" --set model.path="$dir/base" --set train.device=cuda --set model.dtype=bf16 \
  --set train.steps=3 --set checkpoint.dir="$dir/lora" --json | jq -e '.device == "cuda" and .trainable_params > 0' || exit 1
"$bin" generate --model "$dir/base" --checkpoint "$dir/lora" --device cuda --dtype bf16 --prompt-ids 116,104,101 \
  --max-new-tokens 4 --json | jq -e '(.ids | length) == 4' || exit 1
echo "gpu_smoke: passed"
