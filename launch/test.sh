#!/usr/bin/env bash
# Sets up and builds (launch/setup.sh), then runs the whole GoogleTest suite under ctest,
# multi-rank suites included (mpirun -np 2 and -np 4). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
