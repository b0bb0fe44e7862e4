#!/usr/bin/env bash
# The GPU check of issue 15, run ON the lent GPU machine from the repository root (with .gpudeps/
# carried along, see launch/fetch_gpu_deps.sh):
#   (a) builds DeltaShard into build-gpu/ (launch/setup_gpu.sh)              -> OUTDIR/build.log
#       and records how the executable binds libstdc++'s std::filesystem    -> OUTDIR/linkcheck.txt
#   (b) for each configs/bench/*.yaml: deltashard bench step, then the Hugging Face peer
#       (launch/peer_hf_peft.py) eager and with torch.compile, one line each -> OUTDIR/results.jsonl
#         {"case": NAME, "impl": "deltashard"|"hf_peft"|"hf_peft_compiled", "result": {...}}
#       or {"case", "impl", "error": "..."}; raw output in OUTDIR/raw/
#   (b2) the campaign benchmark of issue 18: configs/campaigns/gpu_four_jobs.yaml with
#       `deltashard campaign`, then each job alone with `deltashard train` and with the Hugging
#       Face peer, one after another, into results.jsonl (case "campaign")  -> OUTDIR/campaign.md
#   (c) the ctest suite in build-gpu/                                        -> OUTDIR/ctest.log
#   (d) a Markdown table case x impl                                         -> OUTDIR/table.md
# Only a failed build stops it; every other failure is recorded and the script goes on.
#
# usage: launch/gpu_check.sh OUTDIR
# env:   GPU_CHECK_PHASES  which of "build bench campaign ctest" to run (default all four; the table
#                          is always written); without build, build-gpu/ must already be there
#        GPU_CHECK_CASES   bench case names (default every configs/bench/*.yaml, e.g. "llama-1b-lora")
#        GPU_CHECK_IMPLS   default "deltashard hf_peft hf_peft_compiled"
#        GPU_CHECK_TIMEOUT seconds per bench command (default 150)
#        GPU_CHECK_STEPS / GPU_CHECK_WARMUP  timed / untimed steps (default 10 / 3)
#        GPU_CHECK_CAMPAIGN the campaign config (default configs/campaigns/gpu_four_jobs.yaml);
#                          GPU_CHECK_CAMPAIGN_SET extra --set k=v for it and its jobs (e.g.
#                          "train.device=cpu train.steps=2" for a dry run on a CPU build);
#                          GPU_CHECK_CAMPAIGN_IMPLS what runs each job alone after the campaign
#                          (default "deltashard hf_peft"; hf_peft_compiled too if named)
#        CTEST_TIMEOUT     seconds for the whole ctest run (default 900); CTEST_ARGS extra arguments
set -u
cd "$(dirname "$0")/.." || exit 1

if [[ $# -ne 1 ]]; then echo "usage: $0 OUTDIR" >&2; exit 2; fi
out=$1
mkdir -p "$out/raw" || { echo "gpu_check: cannot create $out" >&2; exit 1; }
out=$(cd "$out" && pwd)
results=$out/results.jsonl
phases=" ${GPU_CHECK_PHASES:-build bench campaign ctest} "
timeout_s=${GPU_CHECK_TIMEOUT:-150}
steps=${GPU_CHECK_STEPS:-10}
warmup=${GPU_CHECK_WARMUP:-3}
impls=${GPU_CHECK_IMPLS:-deltashard hf_peft hf_peft_compiled}
t_start=$(date +%s)
say() { echo "gpu_check [$(( $(date +%s) - t_start ))s]: $*"; }

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  echo "python3: $(command -v python3)"
} | tee "$out/machine.txt"

# --- (a) build ---------------------------------------------------------------------------------------
if [[ $phases == *" build "* ]]; then
  say "building (launch/setup_gpu.sh > $out/build.log)"
  if ! launch/setup_gpu.sh > "$out/build.log" 2>&1; then
    tail -n 40 "$out/build.log" >&2
    say "BUILD FAILED: see $out/build.log"
    exit 1
  fi
  say "built"
fi
if [[ ! -x build-gpu/deltashard || ! -f build-gpu/deps.env ]]; then
  say "build-gpu/deltashard or build-gpu/deps.env is missing (run the build phase)"
  exit 1
fi
# shellcheck disable=SC1091
. build-gpu/deps.env

# Which library std::filesystem binds to (libstdc++.so.6 must come before libtorch*.so in NEEDED,
# else the wheel's libtorch_cpu.so copies win: pytorch/pytorch#133437).
{
  echo "== NEEDED of build-gpu/deltashard (in order)"
  readelf -d build-gpu/deltashard 2>&1 | grep -E 'NEEDED|RPATH|RUNPATH'
  echo "== std::filesystem bindings at start-up (LD_BIND_NOW=1 LD_DEBUG=bindings deltashard --help)"
  LD_BIND_NOW=1 LD_DEBUG=bindings timeout 60 build-gpu/deltashard --help 2>&1 >/dev/null \
    | grep -E 'filesystem' | sed -E 's/^ *[0-9]+: *//' | head -n 40
} > "$out/linkcheck.txt" 2>&1
grep -m1 -E 'remove_all' "$out/linkcheck.txt" | sed 's/^/gpu_check: /'

# One JSON line per command into results.jsonl (python3: no jq needed here).
record() {  # record CASE IMPL RC STDOUT STDERR
  python3 - "$@" >> "$results" <<'PY'
import json, sys
case, impl, rc, out_path, err_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def lines(p):
    try:
        with open(p, errors="replace") as f:
            return [l.strip() for l in f if l.strip()]
    except OSError:
        return []
result = None
for line in reversed(lines(out_path)):
    if line.startswith("{"):
        try:
            result = json.loads(line)
            break
        except ValueError:
            pass
rec = {"case": case, "impl": impl}
if rc == 0 and isinstance(result, dict):
    rec["result"] = result
else:
    err = lines(err_path)
    last = err[-1] if err else "(no stderr)"
    if rc in (124, 137):
        rec["error"] = f"timed out ({rc}); last stderr: {last}"
    elif rc == 0:
        rec["error"] = f"exit 0 but no JSON line on stdout; last stderr: {last}"
    else:
        rec["error"] = f"exit {rc}: {last}"
print(json.dumps(rec, separators=(",", ":")))
PY
}

write_table() {
  python3 - "$results" > "$out/table.md" <<'PY'
import json, sys
rows = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass

def metrics(r):
    """The leaf holding the numbers: result[dtype][method], result[method] or result itself."""
    d = r
    for _ in range(3):
        if not isinstance(d, dict) or "tokens_per_s" in d:
            break
        keys = list(d)
        pick = next((k for k in ("bf16", "lora") if k in d), keys[0] if len(keys) == 1 else None)
        if pick is None:
            break
        d = d[pick]
    return d if isinstance(d, dict) else {}

def first(d, *names):
    for n in names:
        if d.get(n) is not None:
            return d[n]
    return None

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

print("| case | impl | tokens/s | step ms | peak GPU GiB | MFU 6N | MFU 4N | trainable | note |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for r in rows:
    if "result" in r:
        m = metrics(r["result"])
        note = ""
        if m.get("compile_s") is not None and r["impl"].endswith("compiled"):
            note = f"warm-up incl. compile {m['compile_s']} s"
        print("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["case"], r["impl"],
            fmt(first(m, "tokens_per_s"), ",.0f"),
            fmt(first(m, "step_ms", "median_step_ms"), ".1f"),
            fmt(first(m, "peak_gpu_mem_gib", "peak_gpu_gib", "peak_cuda_mem_gib"), ".2f"),
            fmt(first(m, "mfu_6n"), ".3f"), fmt(first(m, "mfu_4n"), ".3f"),
            fmt(first(m, "trainable_params"), ","), note))
    else:
        err = r.get("error", "?").replace("|", "/")[:160]
        print(f"| {r['case']} | {r['impl']} | - | - | - | - | - | - | {err} |")
PY
}

# --- (b) benches -------------------------------------------------------------------------------------
if [[ $phases == *" bench "* ]]; then
  : > "$results"
  if [[ -n ${GPU_CHECK_CASES:-} ]]; then
    configs=()
    for c in $GPU_CHECK_CASES; do configs+=("configs/bench/$c.yaml"); done
  else
    configs=(configs/bench/*.yaml)
  fi
  for cfg in "${configs[@]}"; do
    name=$(basename "$cfg" .yaml)
    if [[ ! -r $cfg ]]; then
      echo "{\"case\":\"$name\",\"impl\":\"-\",\"error\":\"$cfg: cannot read\"}" >> "$results"
      continue
    fi
    for impl in $impls; do
      case $impl in
        deltashard) cmd=(build-gpu/deltashard bench step "$cfg" --methods lora --dtypes bf16 --random-data
                         --steps "$steps" --warmup "$warmup" --json) ;;
        hf_peft) cmd=(python3 launch/peer_hf_peft.py --config "$cfg" --steps "$steps" --warmup "$warmup" --json) ;;
        hf_peft_compiled) cmd=(python3 launch/peer_hf_peft.py --config "$cfg" --steps "$steps" --warmup "$warmup"
                               --compile --json) ;;
        *) say "unknown impl $impl (skipped)"; continue ;;
      esac
      say "$name / $impl: ${cmd[*]}"
      t0=$(date +%s)
      timeout --kill-after=10 "$timeout_s" "${cmd[@]}" > "$out/raw/$name.$impl.out" 2> "$out/raw/$name.$impl.err"
      rc=$?
      record "$name" "$impl" "$rc" "$out/raw/$name.$impl.out" "$out/raw/$name.$impl.err"
      say "$name / $impl: exit $rc in $(( $(date +%s) - t0 )) s: $(tail -n 1 "$results" | cut -c1-200)"
    done
  done
  write_table
  say "results: $results; table: $out/table.md"
fi

# --- (b2) campaign -----------------------------------------------------------------------------------
if [[ $phases == *" campaign "* ]]; then
  ccfg=${GPU_CHECK_CAMPAIGN:-configs/campaigns/gpu_four_jobs.yaml}
  cimpls=" ${GPU_CHECK_CAMPAIGN_IMPLS:-deltashard hf_peft} "
  sets=()
  read -r -a kvs <<< "${GPU_CHECK_CAMPAIGN_SET:-}"  # split on blanks, no globbing ([q,v] stays)
  for kv in ${kvs[@]+"${kvs[@]}"}; do sets+=(--set "$kv"); done
  # A rerun into the same OUTDIR replaces this phase's lines rather than adding to them.
  if [[ -f $results ]]; then
    grep -v '"case":"campaign"' "$results" > "$results.tmp"; mv "$results.tmp" "$results"
  else
    : > "$results"
  fi
  rm -rf "$out/campaign"
  mkdir -p "$out/campaign"
  # run_case IMPL CMD...: one results.jsonl line (case "campaign") and the command's wall seconds.
  run_case() {
    local impl=$1 t0 rc raw
    shift
    raw=$out/raw/campaign.${impl//:/_}
    say "campaign / $impl: $*"
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$(( timeout_s * 2 ))" "$@" > "$raw.out" 2> "$raw.err"
    rc=$?
    echo "$impl $(python3 -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 2))' "$t0")" \
      >> "$out/campaign/wall.txt"
    record campaign "$impl" "$rc" "$raw.out" "$raw.err"
    say "campaign / $impl: exit $rc: $(tail -n 1 "$results" | cut -c1-200)"
  }
  run_case deltashard_campaign build-gpu/deltashard campaign "$ccfg" --out "$out/campaign/camp" ${sets[@]+"${sets[@]}"} --json
  jobs=()
  [[ -d $out/campaign/camp/jobs ]] && mapfile -t jobs < <(ls "$out/campaign/camp/jobs")
  [[ ${#jobs[@]} -gt 0 ]] || say "campaign: no jobs/ directory (the campaign failed): nothing to run alone"
  for job in ${jobs[@]+"${jobs[@]}"}; do
    jcfg=$(ls -d "$out/campaign/camp/jobs/$job"/step-*/config.yaml 2>/dev/null | tail -n 1)
    if [[ -z $jcfg ]]; then
      echo "{\"case\":\"campaign\",\"impl\":\"train:$job\",\"error\":\"no step-*/config.yaml in the campaign's jobs/$job\"}" >> "$results"
      continue
    fi
    if [[ $cimpls == *" deltashard "* ]]; then
      run_case "train:$job" build-gpu/deltashard train "$jcfg" --out "$out/campaign/seq-$job" ${sets[@]+"${sets[@]}"} --json
    fi
    if [[ $cimpls == *" hf_peft "* ]]; then
      run_case "hf_peft:$job" python3 launch/peer_hf_peft.py --config "$jcfg" --steps "$steps" --warmup "$warmup" --json
    fi
    if [[ $cimpls == *" hf_peft_compiled "* ]]; then
      run_case "hf_peft_compiled:$job" python3 launch/peer_hf_peft.py --config "$jcfg" --steps "$steps" \
        --warmup "$warmup" --compile --json
    fi
  done
  # Tokens/s of the campaign against the jobs one after another: total tokens over summed time,
  # with every job's tokens per step equal, 4 / sum(1 / tokens_per_s_j).
  python3 - "$results" "$out/campaign/wall.txt" > "$out/campaign.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
rows = [r for r in rows if r.get("case") == "campaign"]
wall = dict(l.split() for l in open(sys.argv[2]) if l.strip())
def tps(r):
    d = r.get("result", {})
    for _ in range(3):
        if isinstance(d, dict) and "tokens_per_s" in d:
            return d["tokens_per_s"]
        d = next(iter(d.values()), {}) if isinstance(d, dict) and len(d) == 1 else {}
    return None
camp = next((tps(r) for r in rows if r["impl"] == "deltashard_campaign"), None)
print("| impl | tokens/s in steps | campaign / it | wall s |")
print("| --- | ---: | ---: | ---: |")
for prefix in ("train:", "hf_peft:", "hf_peft_compiled:"):
    jobs = [r for r in rows if r["impl"].startswith(prefix)]
    rates = [tps(r) for r in jobs]
    if not jobs:
        continue
    if None in rates or 0 in rates:
        print(f"| {prefix[:-1]} x {len(jobs)}, one after another | - | - | - |")
        continue
    seq = len(rates) / sum(1.0 / x for x in rates)
    ratio = f"{camp / seq:.2f}x" if camp else "-"
    w = sum(float(wall.get(r["impl"], 0)) for r in jobs)
    print(f"| {prefix[:-1]} x {len(jobs)}, one after another | {seq:,.0f} | {ratio} | {w:.1f} |")
print(f"| deltashard campaign | {camp:,.0f} | 1.00x | {float(wall.get('deltashard_campaign', 0)):.1f} |" if camp
      else "| deltashard campaign | - | - | - |")
PY
  cat "$out/campaign.md"
fi

# --- (c) ctest ---------------------------------------------------------------------------------------
if [[ $phases == *" ctest "* ]]; then
  say "ctest (log: $out/ctest.log)"
  # shellcheck disable=SC2086
  (cd build-gpu && timeout --kill-after=20 "${CTEST_TIMEOUT:-900}" \
     ctest --output-on-failure -j8 --timeout 300 ${CTEST_ARGS:-}) > "$out/ctest.log" 2>&1
  rc=$?
  say "ctest exit $rc: $(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -n 1)"
  grep -E '^\s+[0-9]+ - .*\((Failed|Timeout|SEGFAULT|Subprocess|Exception|Not Run)' "$out/ctest.log" | head -n 40
fi

# --- (d) table ---------------------------------------------------------------------------------------
[[ -f $results ]] || : > "$results"
write_table
cat "$out/table.md"
say "done in $(( $(date +%s) - t_start )) s; outputs in $out"
