#!/usr/bin/env bash
# Downloads (apt-get download, no install) the Debian 12 packages that DeltaShard needs to build and
# test on the lent GPU machine (Ubuntu 24.04, no network, PyTorch/CUDA/Open MPI/yaml-cpp/NCCL there)
# and that it lacks. Run it HERE, where Debian's archive is reachable; the folder then travels to the
# GPU machine inside the repository (an ignored folder named in the run tool's `carry` list), where
# launch/setup_gpu.sh unpacks it with `dpkg -x` into a private prefix.
#
# usage: launch/fetch_gpu_deps.sh [--no-gnuplot] [DIR]      (DIR defaults to .gpudeps/)
#
# DIR/build/    Boost.ProgramOptions 1.74 (library, headers, CMake config), GoogleTest (static libs,
#               CMake config), nlohmann-json, xxHash: what `cmake` and the compiler need (~11 MiB).
# DIR/tools/    jq (+ libjq1, libonig5) and the fortune files the tests and configs read (~1.2 MiB).
# DIR/gnuplot/  gnuplot-nox with the closure of shared libraries it loads (cairo, pango, glib, gd and
#               gd's image codecs, X11 client libraries...) plus one font (~18 MiB, 55 packages). Used
#               only by the comm_model_charts test; setup_gpu.sh runs it through a wrapper that puts
#               these libraries on LD_LIBRARY_PATH for gnuplot alone. --no-gnuplot skips it (that
#               test then fails there: "plot_comm: gnuplot is missing").
#
# The package lists are fixed, not resolved: the gnuplot closure is what `ldd /usr/bin/gnuplot-nox`
# shows on Debian 12, mapped to packages, less glibc (libc6), libgcc-s1 and libstdc++6, which the GPU
# machine's newer ones replace.
set -euo pipefail
cd "$(dirname "$0")/.."

with_gnuplot=1
dir=.gpudeps
for arg in "$@"; do
  case $arg in
    --no-gnuplot) with_gnuplot=0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fetch_gpu_deps: unknown option $arg" >&2; exit 2 ;;
    *) dir=$arg ;;
  esac
done

command -v apt-get >/dev/null || { echo "fetch_gpu_deps: apt-get is missing (run this on a Debian machine)" >&2; exit 1; }

# find_package(Boost COMPONENTS program_options) in config mode needs Boost-1.74.0/BoostConfig.cmake and
# boost_headers-1.74.0/ (libboost1.74-dev, also all the headers), boost_program_options-1.74.0/ and the
# libboost_program_options.so link (libboost-program-options1.74-dev), and the shared library itself
# (libboost-program-options1.74.0). The unversioned libboost-program-options-dev holds only docs.
# libgtest-dev holds libgtest.a, the headers and cmake/GTest (GMock is optional there; `googletest`
# holds only sources, not needed).
build_pkgs=(libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
  libgtest-dev nlohmann-json3-dev libxxhash-dev libxxhash0)
# fortunes-min: fortunes, literature, riddles; fortunes: wisdom, art, linux, ... (the tests' files).
tools_pkgs=(jq libjq1 libonig5 fortunes fortunes-min)
gnuplot_pkgs=(gnuplot-nox gnuplot-data fonts-dejavu-core
  libabsl20220623 libaom3 libavif15 libblkid1 libbrotli1 libbsd0 libcairo2 libdatrie1 libdav1d6
  libde265-0 libdeflate0 libedit2 libexpat1 libffi8 libfontconfig1 libfreetype6 libfribidi0 libgav1-1
  libgd3 libglib2.0-0 libgraphite2-3 libharfbuzz0b libheif1 libjbig0 libjpeg62-turbo liblerc4
  liblua5.4-0 liblzma5 libmd0 libmount1 libnuma1 libpango-1.0-0 libpangocairo-1.0-0 libpangoft2-1.0-0
  libpcre2-8-0 libpixman-1-0 libpng16-16 librav1e0 libselinux1 libsvtav1enc1 libthai0 libtiff6
  libtinfo6 libwebp7 libx11-6 libx265-199 libxau6 libxcb-render0 libxcb-shm0 libxcb1 libxdmcp6
  libxext6 libxpm4 libxrender1 libyuv0 libzstd1 zlib1g)

updated=0
fetch_group() {  # fetch_group SUBDIR PACKAGE...
  local sub=$1; shift
  mkdir -p "$dir/$sub"
  rm -f "$dir/$sub"/*.deb
  if ! (cd "$dir/$sub" && apt-get download -q "$@" >/dev/null 2>"../.apt.err"); then
    if [[ $updated == 0 ]]; then
      echo "fetch_gpu_deps: apt-get download failed; running apt-get update once and retrying" >&2
      updated=1
      local sudo_cmd=""; [[ $(id -u) != 0 ]] && sudo_cmd="sudo"
      $sudo_cmd apt-get update -qq
      (cd "$dir/$sub" && apt-get download -q "$@" >/dev/null 2>"../.apt.err") || {
        echo "fetch_gpu_deps: apt-get download failed for $sub:" >&2; cat "$dir/.apt.err" >&2; exit 1; }
    else
      echo "fetch_gpu_deps: apt-get download failed for $sub:" >&2; cat "$dir/.apt.err" >&2; exit 1
    fi
  fi
  rm -f "$dir/.apt.err"
  local n; n=$(ls "$dir/$sub"/*.deb | wc -l)
  if [[ $n -ne $# ]]; then
    echo "fetch_gpu_deps: $sub: expected $# .deb files, got $n" >&2; exit 1
  fi
}

mkdir -p "$dir"
fetch_group build "${build_pkgs[@]}"
fetch_group tools "${tools_pkgs[@]}"
if [[ $with_gnuplot == 1 ]]; then
  fetch_group gnuplot "${gnuplot_pkgs[@]}"
else
  rm -rf "$dir/gnuplot"
fi

echo "fetch_gpu_deps: fetched into $dir/"
for sub in build tools gnuplot; do
  [[ -d $dir/$sub ]] || continue
  printf '  %-8s %3d packages %6.1f MiB\n' "$sub/" "$(ls "$dir/$sub"/*.deb | wc -l)" \
    "$(du -cb "$dir/$sub"/*.deb | tail -1 | awk '{print $1/1048576}')"
  if [[ $sub != gnuplot ]]; then
    for f in "$dir/$sub"/*.deb; do printf '           %s\n' "$(basename "$f")"; done
  fi
done
total=$(du -cb "$dir"/*/*.deb | tail -1 | awk '{print $1}')
printf '  total    %6.1f MiB (carry limit: 64 MiB with the work tree)\n' "$(awk -v b="$total" 'BEGIN{print b/1048576}')"
if (( total > 40 * 1048576 )); then
  echo "fetch_gpu_deps: warning: over 40 MiB; try --no-gnuplot" >&2
fi
echo "next: carry '$dir' to the GPU machine and run launch/setup_gpu.sh there"
