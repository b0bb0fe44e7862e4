#!/usr/bin/env bash
# Times the BPE alone: read_bpe_tokenizer on TOKENIZER_JSON and one bpe_encode call on the files
# joined (default: every fortune file), REPEATS times (default 3), on one core (taskset -c 0) and
# one thread. Builds build/bench_tokenizer from launch/bench_tokenizer.cpp and
# core/bpe_tokenizer.cpp with the Release flags (-O3 -DNDEBUG), as launch/fuzz.sh builds its target.
# usage: launch/bench_tokenizer.sh TOKENIZER_JSON [REPEATS [FILE...]]
set -euo pipefail
cd "$(dirname "$0")/.."
(($#)) || { echo "usage: launch/bench_tokenizer.sh TOKENIZER_JSON [REPEATS [FILE...]]" >&2; exit 2; }
tokenizer=$1
repeats=${2:-3}
shift $(($# > 1 ? 2 : 1))
files=("$@")
(($#)) || mapfile -t files < <(ls /usr/share/games/fortunes/* | grep -v '\.dat$\|\.u8$')
bin=build/bench_tokenizer
sources=(launch/bench_tokenizer.cpp core/bpe_tokenizer.cpp)
stale=false
[[ -x $bin ]] || stale=true
for f in "${sources[@]}" core/bpe_tokenizer.h core/unicode_tables.inc; do [[ $f -nt $bin ]] && stale=true; done
if $stale; then
  mkdir -p build
  echo "bench_tokenizer: building $bin"
  c++ -std=c++17 -O3 -DNDEBUG -D_GLIBCXX_USE_CXX11_ABI=1 -I. -I/usr/include/torch/csrc/api/include \
    "${sources[@]}" -ltorch -ltorch_cpu -lc10 -o "$bin"
fi
OMP_NUM_THREADS=1 taskset -c 0 "$bin" "$tokenizer" "$repeats" "${files[@]}"
