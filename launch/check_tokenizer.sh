#!/usr/bin/env bash
# Checks `deltashard tokenize` against GPT-2's reference encoder (launch/bpe_reference.py) on the
# ASCII lines of a text (the fortune files by default) and on decoding every id. Prints the token
# count and whether every id agrees (DELTASHARD: the binary, default build/deltashard).
# usage: launch/check_tokenizer.sh GPT2_TOKENIZER_JSON [TEXT_FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
tokenizer=$1
shift
bin=${DELTASHARD:-build/deltashard}
files=("$@")
(($#)) || files=(/usr/share/games/fortunes/*)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Decoding: every id of the vocabulary, in id order, against the reference's byte mapping.
python3 launch/bpe_reference.py "$tokenizer" --vocabulary > "$work/vocabulary.ref"
n=$(python3 -c 'import json, sys; t = json.load(open(sys.argv[1])); print(max([*t["model"]["vocab"].values(), *[a["id"] for a in t.get("added_tokens", [])]]) + 1)' "$tokenizer")
: > "$work/vocabulary.ours"
for ((first = 0; first < n; first += 10000)); do  # chunks: one argument must stay under 128 KiB
  last=$((first + 9999 < n - 1 ? first + 9999 : n - 1))
  "$bin" tokenize --tokenizer "$tokenizer" --decode "$(seq -s, "$first" "$last")" | head -c -1 >> "$work/vocabulary.ours"
done
if cmp -s "$work/vocabulary.ref" "$work/vocabulary.ours"; then
  echo "all $n ids decode to the reference's bytes ($(wc -c < "$work/vocabulary.ref") bytes)"
else
  echo "decoding differs:"; cmp "$work/vocabulary.ref" "$work/vocabulary.ours" || true
  exit 1
fi
# ASCII lines without the C0 separators Python's \s would treat differently from Unicode's.
cat "${files[@]}" 2>/dev/null | LC_ALL=C grep -a -v -P '[^\x09\x0a\x0d\x20-\x7e]' > "$work/text.txt" || true
python3 launch/bpe_reference.py "$tokenizer" "$work/text.txt" > "$work/reference.ids"
"$bin" tokenize --tokenizer "$tokenizer" --file "$work/text.txt" > "$work/deltashard.ids"
echo "$(wc -c < "$work/text.txt") bytes, $(wc -l < "$work/reference.ids") reference tokens, $(wc -l < "$work/deltashard.ids") deltashard tokens"
if cmp -s "$work/reference.ids" "$work/deltashard.ids"; then
  echo "every token id agrees"
else
  echo "first difference:"; cmp "$work/reference.ids" "$work/deltashard.ids" || true
  exit 1
fi
