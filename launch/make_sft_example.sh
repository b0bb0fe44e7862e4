#!/usr/bin/env bash
# The instruction fine-tuning example (docs/data.md): builds an arithmetic JSONL dataset, pretrains
# a byte-level base with an end-of-text token (vocab 257) on fortunes text unless runs/sft_base
# exists, LoRA-fine-tunes it on the records (configs/sft_example.yaml), then asks
# `generate --template plain` 20 held-out questions and counts the answers in the trained format
# ("A + B = C", ending with end-of-text, not repeating the question).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DELTASHARD:-build/deltashard}
np=${DELTASHARD_NP:-1}
# Extra options for both runs, e.g. DELTASHARD_SET="--set train.threads=1" on a busy machine.
read -r -a extra <<<"${DELTASHARD_SET:-}"
mkdir -p runs/sft

# Every pair a, b < 100 once, shuffled with a fixed seed: the first 20 are held out for
# generation, the next 4000 are records (the last 10% of them the held-out loss's).
awk 'BEGIN { srand(7); n = 0; for (a = 0; a < 100; a++) for (b = 0; b < 100; b++) { k[n] = a " " b; n++ }
             for (i = n - 1; i > 0; i--) { j = int(rand() * (i + 1)); t = k[i]; k[i] = k[j]; k[j] = t }
             for (i = 0; i < 4020; i++) { split(k[i], p, " ");
               if (i < 20) print "Add " p[1] " and " p[2] "." > "runs/sft/heldout_prompts.txt";
               else printf "{\"prompt\": \"Add %d and %d.\", \"completion\": \"%d + %d = %d\"}\n", p[1], p[2], p[1], p[2], p[1] + p[2] > "runs/sft/arith.jsonl" } }'
echo "== data: $(wc -l < runs/sft/arith.jsonl) records, $(wc -l < runs/sft/heldout_prompts.txt) held-out prompts"
if [[ -f runs/sft_base/latest ]]; then
  echo "== base: reusing runs/sft_base"
else
  echo "== pretraining a byte-level base with vocab 257 -> runs/sft_base"
  launch/run.sh -np "$np" "$D" train configs/pretrain.yaml --set model.vocab_size=257 --set train.steps=200 \
    --set checkpoint.dir=runs/sft_base --set log.jsonl=runs/sft_base.jsonl "${extra[@]}"
fi

"$D" data configs/sft_example.yaml --show 2
echo "== LoRA SFT on the records"
launch/run.sh -np "$np" "$D" train configs/sft_example.yaml "${extra[@]}" --json | tail -1 > runs/sft/train_summary.json
jq -c '{eval_loss_before, eval_loss_after, ratio: (.eval_loss_after / .eval_loss_before)}' runs/sft/train_summary.json

echo "== generate --template plain on the held-out prompts"
ok=0
while read -r q; do
  out=$("$D" generate --model runs/sft_base --checkpoint runs/sft_lora --template plain --prompt "$q" \
        --max-new-tokens 16 --json)
  text=$(jq -r .text <<<"$out")
  ended=$(jq -r .ended <<<"$out")
  if [[ $ended == true && $text =~ ^[0-9]+\ \+\ [0-9]+\ =\ [0-9]+$ && $text != *"$q"* ]]; then ok=$((ok + 1)); fi
  printf '%-22s -> %-20s ended=%s\n' "$q" "$text" "$ended"
done < runs/sft/heldout_prompts.txt
echo "in format: $ok / 20"
