#!/usr/bin/env bash
# Turns `deltashard comm-model --json` output into two PNG charts (jq + gnuplot from Debian):
#   OUTDIR/comm_bytes.png  bytes per step and rank on the TP group and outside it, per method (they do
#                          not depend on the DP size: the payload per rank is fixed by the model)
#   OUTDIR/comm_time.png   modelled communication time per step, per method and DP size
# usage: launch/plot_comm.sh MODEL.json OUTDIR
set -euo pipefail
if [[ $# -ne 2 ]]; then echo "usage: $0 MODEL.json OUTDIR" >&2; exit 2; fi
json=$1 out=$2
[[ -r $json ]] || { echo "plot_comm: $json: cannot read" >&2; exit 1; }
for tool in jq gnuplot; do
  command -v $tool >/dev/null || { echo "plot_comm: $tool is missing (launch/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$out"
data=$(mktemp); trap 'rm -f "$data"' EXIT
# One block per method (gnuplot index), rows: dp tp_bytes dp_bytes tp_ms dp_ms comm_ms
jq -e -r '[.grids[0].methods | keys_unsorted[]] as $m
  | $m[] as $name
  | "# \($name)", (.grids[] | [.dp, .methods[$name].tp_bytes, .methods[$name].dp_bytes,
                                .methods[$name].tp_ms, .methods[$name].dp_ms, .methods[$name].comm_ms] | @tsv),
    "", ""' "$json" > "$data" || { echo "plot_comm: $json is not comm-model JSON" >&2; exit 1; }
bars=$(mktemp); trap 'rm -f "$data" "$bars"' EXIT
jq -r '.grids[0].methods | to_entries[] | [.key, .value.tp_bytes, .value.dp_bytes] | @tsv' "$json" > "$bars"
methods=$(jq -r '.grids[0].methods | keys_unsorted | join(" ")' "$json")
tp=$(jq -r '.grids[0].tp' "$json")
fabric=$(jq -r '"tp \(.fabric.tp.alpha_us) us, \(.fabric.tp.busbw_gbps) GB/s; dp \(.fabric.dp.alpha_us) us, \(.fabric.dp.busbw_gbps) GB/s"' "$json")

gnuplot <<GP
set terminal pngcairo size 1100,500 font ",10" noenhanced
methods = "$methods"
set logscale x 2
set logscale y 10
set grid
set key outside right
set xlabel "data-parallel size (tp = $tp)"

set output "$out/comm_bytes.png"
set title "bytes per step and rank (ledger payload; one step replayed on a dry-run grid, tp = $tp)"
unset logscale x
set xlabel "method"
set ylabel "bytes"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key inside top right
plot "$bars" using 2:xtic(1) title "TP group (activations)", "" using 3 title "outside TP (gradients, loss, norm)"

set style data linespoints
set key outside right
set logscale x 2
set xlabel "data-parallel size (tp = $tp)"
set output "$out/comm_time.png"
set title "modelled communication per step ($fabric)"
set ylabel "ms"
plot for [i=1:words(methods)] "$data" index (i-1) using 1:6 with linespoints title word(methods, i)." total", \
     for [i=1:words(methods)] "$data" index (i-1) using 1:5 with points pt 6 title word(methods, i)." dp part"
GP
echo "plot_comm: wrote $out/comm_bytes.png $out/comm_time.png"
