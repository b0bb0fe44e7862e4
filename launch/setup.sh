#!/usr/bin/env bash
# Installs every dependency from Debian's packages (idempotent; apt-get update once) and
# configures and builds DeltaShard into build/ (CMake, Ninja, Release, ccache when present).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libopenblas0-openmp libopenmpi-dev openmpi-bin
  libyaml-cpp-dev nlohmann-json3-dev libxxhash-dev libboost-program-options-dev libgtest-dev
  fortunes gnuplot-nox jq python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""; [[ $(id -u) != 0 ]] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Without OpenBLAS, Debian's LibTorch falls back to reference BLAS (about 25x slower matmuls).
blas=$(readlink -f "$(ldconfig -p | awk '/libblas.so.3 /{print $NF; exit}')" 2>/dev/null || true)
if [[ "$blas" != *openblas* ]]; then
  echo "setup: warning: OpenBLAS is not the active BLAS; matrix products will be slow (libblas.so.3 -> ${blas:-none})" >&2
fi

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${DELTASHARD_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$jobs"
echo "setup: built build/deltashard"
