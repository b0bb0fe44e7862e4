#!/usr/bin/env bash
# Builds DeltaShard on the lent GPU machine (Ubuntu 24.04, no network; PyTorch with CUDA in the
# default python3, nvcc, Open MPI, yaml-cpp, NCCL there) into build-gpu/, with the packages that
# launch/fetch_gpu_deps.sh downloaded elsewhere and that travelled here in .gpudeps/.
# Run it from anywhere; it works in the repository root.
#
#   1. unpacks every .deb of .gpudeps/{build,tools} with `dpkg -x` into a prefix (never into /),
#      and .gpudeps/gnuplot/ into PREFIX/gnuplot, with wrappers PREFIX/bin/{jq,gnuplot} that set
#      each tool's own library path (so no Debian library leaks into DeltaShard's processes);
#   2. copies the fortune files to /usr/share/games/fortunes when they are missing (tests read
#      /usr/share/games/fortunes/wisdom; we run as root there);
#   3. configures with the CUDA LibTorch of python3 and the unpacked prefix, NCCL on, and builds;
#   4. writes build-gpu/deps.env (PATH, LD_LIBRARY_PATH, Open MPI as root) for later scripts.
#
# usage: launch/setup_gpu.sh [--unpack-only]    (--unpack-only: steps 1 and 2, no build)
# env: DSDEPS_PREFIX (default /tmp/dsdeps), GPUDEPS_DIR (default .gpudeps), BUILD_DIR (default
#      build-gpu), DS_NCCL=torch|system (default torch: link the NCCL that PyTorch's wheel loads,
#      so one libnccl.so.2 is in the process; system: let CMake find /usr's), JOBS (default nproc),
#      DELTASHARD_CMAKE_ARGS (extra cmake arguments).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup_gpu: error: $*" >&2; exit 1; }
say() { echo "setup_gpu: $*"; }

unpack_only=0
case ${1:-} in
  --unpack-only) unpack_only=1 ;;
  "") ;;
  *) die "usage: launch/setup_gpu.sh [--unpack-only]" ;;
esac
prefix=${DSDEPS_PREFIX:-/tmp/dsdeps}
deps=${GPUDEPS_DIR:-.gpudeps}
build=${BUILD_DIR:-build-gpu}
jobs=${JOBS:-$(nproc)}
arch=x86_64-linux-gnu

[[ -n $prefix && $prefix == /* ]] || die "DSDEPS_PREFIX must be an absolute path (got '$prefix')"
prefix=$(realpath -m "$prefix")
[[ $prefix != / && $prefix != /usr && $prefix != /usr/* ]] || die "refusing to unpack into $prefix"
[[ -d $deps/build ]] || die "$deps/build/ is missing: run launch/fetch_gpu_deps.sh where Debian's archive is reachable and carry $deps here"
ls "$deps"/build/*.deb >/dev/null 2>&1 || die "$deps/build/ holds no .deb files"

# --- 1. unpack -------------------------------------------------------------------------------------
unpack() {  # unpack DEB DESTDIR
  if command -v dpkg-deb >/dev/null; then
    dpkg -x "$1" "$2" || die "dpkg -x $1 failed"
  else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
    local member
    member=$(ar t "$1" | grep '^data\.tar') || die "$1: no data.tar member"
    case $member in
      *.xz) ar p "$1" "$member" | tar -xJ -C "$2" ;;
      *.zst) ar p "$1" "$member" | zstd -dc | tar -x -C "$2" ;;
      *.gz) ar p "$1" "$member" | tar -xz -C "$2" ;;
      *) ar p "$1" "$member" | tar -x -C "$2" ;;
    esac || die "unpacking $1 failed"
  fi
}
stamp=$prefix/.unpacked
want=$(cd "$deps" && ls ./*/*.deb | sort | md5sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
  say "packages already unpacked in $prefix"
else
  if [[ -e $prefix && ! -f $stamp && -n $(ls -A "$prefix" 2>/dev/null) ]]; then
    die "$prefix exists and was not made by this script; set DSDEPS_PREFIX to a new folder"
  fi
  rm -rf "$prefix"
  mkdir -p "$prefix/bin" "$prefix/gnuplot"
  n=0
  for deb in "$deps"/build/*.deb "$deps"/tools/*.deb; do
    [[ -f $deb ]] || continue
    unpack "$deb" "$prefix"; n=$((n + 1))
  done
  for deb in "$deps"/gnuplot/*.deb; do
    [[ -f $deb ]] || continue
    unpack "$deb" "$prefix/gnuplot"; n=$((n + 1))
  done
  # pkg-config files say prefix=/usr; point them at the unpacked tree.
  for pc in "$prefix/usr/lib/$arch"/pkgconfig/*.pc "$prefix"/usr/share/pkgconfig/*.pc; do
    [[ -f $pc ]] && sed -i "s|^prefix=/usr\$|prefix=$prefix/usr|" "$pc"
  done
  echo "$want" > "$stamp"
  say "unpacked $n packages into $prefix"
fi

# Tool wrappers: each sets its own library path, nothing global.
if [[ -x $prefix/usr/bin/jq ]]; then
  cat > "$prefix/bin/jq" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$prefix/usr/lib/$arch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$prefix/usr/bin/jq" "\$@"
EOF
  chmod +x "$prefix/bin/jq"
fi
gp=$prefix/gnuplot
if [[ -x $gp/usr/bin/gnuplot-nox ]]; then
  mkdir -p "$gp/fontcache"
  cat > "$gp/fonts.conf" <<EOF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <dir>$gp/usr/share/fonts</dir>
  <cachedir>$gp/fontcache</cachedir>
  <alias><family>sans-serif</family><prefer><family>DejaVu Sans</family></prefer></alias>
  <alias><family>Sans</family><prefer><family>DejaVu Sans</family></prefer></alias>
</fontconfig>
EOF
  cat > "$prefix/bin/gnuplot" <<EOF
#!/bin/sh
# Debian 12's gnuplot-nox with its own libraries (unpacked from .gpudeps/gnuplot by setup_gpu.sh).
export LD_LIBRARY_PATH="$gp/usr/lib/$arch:$gp/lib/$arch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export FONTCONFIG_FILE="$gp/fonts.conf"
exec "$gp/usr/bin/gnuplot-nox" "\$@"
EOF
  chmod +x "$prefix/bin/gnuplot"
  if ! "$prefix/bin/gnuplot" -e 'set terminal pngcairo; set output "/dev/null"; plot x' 2>"$prefix/gnuplot.err"; then
    echo "setup_gpu: warning: the unpacked gnuplot does not run (the comm_model_charts test will fail):" >&2
    sed 's/^/  /' "$prefix/gnuplot.err" >&2
  fi
else
  say "no gnuplot in $deps (fetched with --no-gnuplot?): the comm_model_charts test will fail"
fi

# --- 2. fortunes -----------------------------------------------------------------------------------
fortunes_src=$prefix/usr/share/games/fortunes
if [[ ! -r /usr/share/games/fortunes/wisdom ]]; then
  [[ -r $fortunes_src/wisdom ]] || die "$fortunes_src/wisdom is missing: fetch_gpu_deps.sh should have brought the fortunes package"
  if mkdir -p /usr/share/games/fortunes 2>/dev/null && cp -an "$fortunes_src"/. /usr/share/games/fortunes/ 2>/dev/null; then
    say "copied the fortune files to /usr/share/games/fortunes"
  else
    die "cannot write /usr/share/games/fortunes (not root?); the tests read /usr/share/games/fortunes/wisdom"
  fi
fi

if [[ $unpack_only == 1 ]]; then
  say "unpacked into $prefix (--unpack-only: no build)"
  exit 0
fi

# --- 3. configure and build ------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is missing"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null) \
  || die "python3 cannot import torch (python3 is $(command -v python3))"
[[ -d $torch_prefix/Torch ]] || die "no Torch CMake config under $torch_prefix"
torch_info=$(python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.compiled_with_cxx11_abi())')
say "PyTorch $torch_info; CMake prefix $torch_prefix"

nvcc_path=""
for c in /usr/local/cuda/bin/nvcc "$(command -v nvcc || true)"; do
  [[ -n $c && -x $c ]] && { nvcc_path=$c; break; }
done
[[ -n $nvcc_path ]] || die "nvcc not found (/usr/local/cuda/bin or PATH): Torch's CMake config needs the CUDA toolkit"
cuda_root=$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")
cuda_args=()
if [[ -f $cuda_root/include/cuda_runtime.h ]]; then
  cuda_args+=(-DCUDAToolkit_ROOT="$cuda_root")
else
  say "warning: $cuda_root/include/cuda_runtime.h is missing; leaving the CUDA toolkit to CMake's search"
fi
nvcc_dir=$(dirname "$nvcc_path")
export PATH="$nvcc_dir:$PATH"
say "CUDA toolkit $cuda_root ($("$nvcc_path" --version | grep -o 'release [0-9.]*'))"

command -v cmake >/dev/null || die "cmake is missing"
command -v ninja >/dev/null || die "ninja is missing"
[[ -x /usr/bin/mpicc ]] || die "/usr/bin/mpicc is missing (Open MPI)"
cmake_dir=$prefix/usr/lib/$arch/cmake
[[ -f $cmake_dir/Boost-1.74.0/BoostConfig.cmake ]] || die "$cmake_dir/Boost-1.74.0 is missing (libboost1.74-dev)"
[[ -f $cmake_dir/GTest/GTestConfig.cmake ]] || die "$cmake_dir/GTest is missing (libgtest-dev)"

nccl_args=()
if [[ ${DS_NCCL:-torch} == torch ]]; then
  # Link the libnccl.so.2 that PyTorch itself loads (read from the process's map after import torch):
  # two libraries with one soname can't both be loaded, the first one wins for torch too, so a
  # different system NCCL would also replace torch's.
  nccl_lib=- nccl_ver="?"
  read -r nccl_lib nccl_ver < <(python3 -c '
import torch
try:
    v = ".".join(map(str, torch.cuda.nccl.version()))  # also makes sure libnccl is loaded
except Exception:
    v = "?"
p = next((l.split()[-1] for l in open("/proc/self/maps") if "libnccl" in l.split()[-1]), "-")
print(p, v)' 2>/dev/null || echo "- ?") || true
  if [[ $nccl_lib != - && -f $nccl_lib ]]; then
    nccl_args+=(-DNCCL_LIBRARY="$nccl_lib")
    nccl_inc=$(dirname "$(dirname "$nccl_lib")")/include
    if [[ -f $nccl_inc/nccl.h ]]; then nccl_args+=(-DNCCL_INCLUDE_DIR="$nccl_inc"); else nccl_inc="(CMake's search: /usr/include)"; fi
    say "NCCL: PyTorch's $nccl_lib (version $nccl_ver), header $nccl_inc"
  else
    say "NCCL: could not see which libnccl PyTorch loads; CMake finds the system one (DS_NCCL=system)"
  fi
fi

export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
say "configuring $build/"
# CMAKE_POLICY_VERSION_MINIMUM: CMake 4 refuses package files that ask for policies older than 3.5.
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr" \
  -DBoost_DIR="$cmake_dir/Boost-1.74.0" \
  -Dboost_headers_DIR="$cmake_dir/boost_headers-1.74.0" \
  -Dboost_program_options_DIR="$cmake_dir/boost_program_options-1.74.0" \
  -DGTest_DIR="$cmake_dir/GTest" \
  -Dnlohmann_json_DIR="$prefix/usr/share/cmake/nlohmann_json" \
  -DBoost_NO_SYSTEM_PATHS=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 \
  -DMPI_C_COMPILER=/usr/bin/mpicc \
  -DDELTASHARD_WITH_NCCL=ON \
  "${cuda_args[@]}" "${nccl_args[@]}" ${DELTASHARD_CMAKE_ARGS:-} \
  || die "cmake configure failed (see the messages above)"
say "building with $jobs jobs"
if ! cmake --build "$build" -j "$jobs"; then
  # The one file written against CUDA headers that could not be compiled off the GPU machine:
  # without it phases are timed by synchronising the device and peak_gpu_mem_gib is 0.
  say "build failed; retrying once with -DDELTASHARD_CUDA_STATS=OFF (see the compiler messages above)"
  cmake -S . -B "$build" -DDELTASHARD_CUDA_STATS=OFF > /dev/null || die "cmake reconfigure failed"
  cmake --build "$build" -j "$jobs" || die "build failed (see the compiler messages above)"
  say "warning: built without CUDA statistics (DELTASHARD_CUDA_STATS=OFF)"
fi
[[ -x $build/deltashard ]] || die "$build/deltashard was not produced"

# --- 4. environment for later scripts --------------------------------------------------------------
cat > "$build/deps.env" <<EOF
# Written by launch/setup_gpu.sh; source it: . $build/deps.env
export DSDEPS_PREFIX="$prefix"
export PATH="$prefix/bin:$(dirname "$nvcc_path")\${PATH:+:\$PATH}"
export LD_LIBRARY_PATH="$prefix/usr/lib/$arch\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
EOF
say "built $build/deltashard; environment in $build/deps.env"
