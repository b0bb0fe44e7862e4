#!/usr/bin/env bash
# Fuzzes with libFuzzer (clang from Debian) and AddressSanitizer, for SECONDS (default 60):
#   safetensors  the safetensors reader (tests/fuzz/fuzz_safetensors.cpp): parse or FileError
#   bpe          the byte-level BPE (tests/fuzz/fuzz_bpe.cpp): pieces, round trip, ids in range
# Builds the target against the system LibTorch and starts from tests/fuzz/corpus (corpus_bpe).
# New interesting inputs go into build-fuzz/corpus[_bpe]; a crash leaves build-fuzz/crash-* and a
# non-zero exit.  usage: launch/fuzz.sh [safetensors|bpe] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
target=safetensors
if [[ $# -gt 0 && ! $1 =~ ^[0-9]+$ ]]; then target=$1; shift; fi
seconds=${1:-60}
case $target in
  safetensors) sources=(core/safetensors.cpp core/json_writer.cpp); corpus=corpus; max_len=4096 ;;
  bpe) sources=(core/bpe_tokenizer.cpp); corpus=corpus_bpe; max_len=1024 ;;
  *) echo "fuzz: unknown target '$target' (safetensors or bpe)" >&2; exit 2 ;;
esac
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (apt-get install clang)" >&2; exit 1; }
bin=build-fuzz/fuzz_$target
mkdir -p "build-fuzz/$corpus"
cp -n tests/fuzz/$corpus/* "build-fuzz/$corpus/" 2>/dev/null || true
stale=false
[[ -x $bin ]] || stale=true
for f in "tests/fuzz/fuzz_$target.cpp" "${sources[@]}"; do [[ $f -nt $bin ]] && stale=true; done
if $stale; then
  echo "fuzz: building $bin (clang++, -fsanitize=fuzzer,address)"
  clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address -DDELTASHARD_LIBFUZZER -D_GLIBCXX_USE_CXX11_ABI=1 \
    -DDS_FIXTURES="\"$PWD/tests/fixtures\"" -I. -I/usr/include/torch/csrc/api/include \
    "tests/fuzz/fuzz_$target.cpp" "${sources[@]}" -ltorch -ltorch_cpu -lc10 -lyaml-cpp -o "$bin"
fi
# LibTorch's own allocations are not the subject; leaks at exit are not findings here.
ASAN_OPTIONS=detect_leaks=0 "$bin" -max_total_time="$seconds" -max_len="$max_len" \
  -artifact_prefix=build-fuzz/ "build-fuzz/$corpus"
