#!/usr/bin/env bash
# Checks `deltashard tokenize` against GPT-2's reference encoder (launch/bpe_reference.py) on the
# ASCII lines of a text: the fortune files by default. Prints the token count and whether every
# id agrees.  usage: launch/check_tokenizer.sh GPT2_TOKENIZER_JSON [TEXT_FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
tokenizer=$1
shift
files=("$@")
(($#)) || files=(/usr/share/games/fortunes/*)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# ASCII lines without the C0 separators Python's \s would treat differently from Unicode's.
cat "${files[@]}" 2>/dev/null | LC_ALL=C grep -a -v -P '[^\x09\x0a\x0d\x20-\x7e]' > "$work/text.txt" || true
python3 launch/bpe_reference.py "$tokenizer" "$work/text.txt" > "$work/reference.ids"
build/deltashard tokenize --tokenizer "$tokenizer" --file "$work/text.txt" > "$work/deltashard.ids"
echo "$(wc -c < "$work/text.txt") bytes, $(wc -l < "$work/reference.ids") reference tokens, $(wc -l < "$work/deltashard.ids") deltashard tokens"
if cmp -s "$work/reference.ids" "$work/deltashard.ids"; then
  echo "every token id agrees"
else
  echo "first difference:"; cmp "$work/reference.ids" "$work/deltashard.ids" || true
  exit 1
fi
