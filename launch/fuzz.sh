#!/usr/bin/env bash
# Fuzzes the safetensors reader with libFuzzer (clang from Debian) and AddressSanitizer:
# builds tests/fuzz/fuzz_safetensors.cpp with core/safetensors.cpp against the system LibTorch,
# then runs it from tests/fuzz/corpus for SECONDS (default 60). New interesting inputs go into
# build-fuzz/corpus; a crash leaves build-fuzz/crash-* and a non-zero exit.
# usage: launch/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v clang++ >/dev/null || { echo "fuzz: clang++ is missing (apt-get install clang)" >&2; exit 1; }
mkdir -p build-fuzz/corpus
cp -n tests/fuzz/corpus/* build-fuzz/corpus/ 2>/dev/null || true
if [[ ! -x build-fuzz/fuzz_safetensors || tests/fuzz/fuzz_safetensors.cpp -nt build-fuzz/fuzz_safetensors ||
      core/safetensors.cpp -nt build-fuzz/fuzz_safetensors || core/json_writer.cpp -nt build-fuzz/fuzz_safetensors ]]; then
  echo "fuzz: building (clang++, -fsanitize=fuzzer,address)"
  clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address -DDELTASHARD_LIBFUZZER -D_GLIBCXX_USE_CXX11_ABI=1 \
    -I. -I/usr/include/torch/csrc/api/include \
    tests/fuzz/fuzz_safetensors.cpp core/safetensors.cpp core/json_writer.cpp \
    -ltorch -ltorch_cpu -lc10 -lyaml-cpp -o build-fuzz/fuzz_safetensors
fi
# LibTorch's own allocations are not the subject; leaks at exit are not findings here.
ASAN_OPTIONS=detect_leaks=0 build-fuzz/fuzz_safetensors -max_total_time="$seconds" -max_len=4096 \
  -artifact_prefix=build-fuzz/ build-fuzz/corpus
