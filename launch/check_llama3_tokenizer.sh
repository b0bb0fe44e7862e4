#!/usr/bin/env bash
# Checks `deltashard tokenize` with LLaMA 3's tokenizer.json against npm's llama3-tokenizer-js, id
# by id: the valid UTF-8 lines of the fortune files (or the files given), then lines of special
# tokens and corner cases, encoded as one text by both. When TOKENIZER_JSON does not exist it is
# made from the package by launch/make_llama3_tokenizer.py. Skips (exit 0, with a message) when
# node or the package is missing.
# usage: launch/check_llama3_tokenizer.sh TOKENIZER_JSON [TEXT_FILE...]
# env:   DELTASHARD (default build/deltashard); LLAMA3_JS, the package's directory (default
#        ./node_modules/llama3-tokenizer-js, then the one under `npm root -g`)
set -euo pipefail
cd "$(dirname "$0")/.."
(($#)) || { echo "usage: launch/check_llama3_tokenizer.sh TOKENIZER_JSON [TEXT_FILE...]" >&2; exit 2; }
tokenizer=$1
shift
bin=${DELTASHARD:-build/deltashard}
bundle=bundle/llama3-tokenizer-with-baked-data.js
if ! command -v node > /dev/null; then
  echo "check_llama3_tokenizer: skipped: node is not installed"
  exit 0
fi
pkg=${LLAMA3_JS:-}
if [[ -z $pkg ]]; then
  for c in node_modules/llama3-tokenizer-js "$(npm root -g 2> /dev/null)/llama3-tokenizer-js"; do
    if [[ -f $c/$bundle ]]; then
      pkg=$c
      break
    fi
  done
fi
if [[ -z $pkg || ! -f $pkg/$bundle ]]; then
  echo "check_llama3_tokenizer: skipped: llama3-tokenizer-js not found (npm install llama3-tokenizer-js, or set LLAMA3_JS)"
  exit 0
fi
[[ -f $tokenizer ]] || python3 launch/make_llama3_tokenizer.py "$tokenizer" "$pkg"
files=("$@")
(($#)) || mapfile -t files < <(ls /usr/share/games/fortunes/* | grep -v '\.dat$\|\.u8$')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Valid UTF-8 lines only: node would read an invalid byte as U+FFFD, deltashard as the byte.
python3 - "$work/text.txt" "${files[@]}" << 'EOF'
import sys
out = open(sys.argv[1], "wb")
for path in sys.argv[2:]:
    for line in open(path, "rb").read().splitlines(True):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            continue
        out.write(line)
# Special tokens (real ones, and look-alikes that are text), then corner cases of the regex and
# the merges: contractions in any case, whitespace runs, digits in threes, scripts, emoji.
out.write("""<|start_header_id|>This text has special tokens<|eom_id|> in the middle of it.<|end_header_id|><|eot_id|>
<|begin_of_text|><|reserved_special_token_0|><|reserved_special_token_247|><|reserved_special_token_248|><|reserved_special_token_00|><|end_of_text|>
           grabbed	tabs				out here
ax
####
boo HE'S I'LL they'Re we'VE 'd 1234567 3.14159 ½ 镇 🦙Ꙋ naïve café — 日本語のテキスト Привет мир!   
  \t \r\n\r\n   x\n\n\n""".encode("utf-8"))
EOF
node launch/llama3_js_encode.mjs "$pkg" "$work/text.txt" > "$work/reference.ids"
"$bin" tokenize --tokenizer "$tokenizer" --file "$work/text.txt" --json |
  python3 -c 'import json, sys; j = json.load(sys.stdin); print("\n".join(map(str, j["tokens"] if "tokens" in j else j["ids"])))' \
  > "$work/deltashard.ids"
echo "$(wc -c < "$work/text.txt") bytes, $(wc -l < "$work/reference.ids") llama3-tokenizer-js tokens, $(wc -l < "$work/deltashard.ids") deltashard tokens"
if cmp -s "$work/reference.ids" "$work/deltashard.ids"; then
  echo "every token id agrees"
else
  line=$(cmp "$work/reference.ids" "$work/deltashard.ids" 2>&1 | sed -n 's/.* line \([0-9]*\).*/\1/p' || true)
  line=${line:-1}
  echo "first difference at token $line (llama3-tokenizer-js, deltashard):"
  paste "$work/reference.ids" "$work/deltashard.ids" | sed -n "$((line > 5 ? line - 5 : 1)),$((line + 5))p"
  exit 1
fi
