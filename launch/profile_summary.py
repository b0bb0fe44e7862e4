#!/usr/bin/env python3
# Where a step's time goes: reads the Chrome trace that `deltashard bench step --profile PREFIX`
# writes (LibTorch's autograd profiler, rank 0's timed steps) and prints the operators by self time
# (their own time, nested operators' time taken out), with calls and share of the traced time.
#   launch/profile_summary.py PREFIX.fp32.lora.json [--top 25] [--steps N]
import argparse
import collections
import json
import sys


def events_of(path):
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def self_times(events):
    """Per operator name: (calls, self µs, total µs of its outermost calls). Operators nest on a
    thread as intervals; a parent's self time is its duration less its direct children's."""
    calls = collections.Counter()
    self_us = collections.Counter()
    total_us = collections.Counter()
    by_thread = collections.defaultdict(list)
    for e in events:
        by_thread[(e.get("pid"), e.get("tid"))].append(e)
    traced = 0.0
    for evs in by_thread.values():
        evs.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
        stack = []  # [end, name, duration, direct children's time]
        def close_until(ts):
            while stack and stack[-1][0] <= ts:
                end, name, dur, child = stack.pop()
                self_us[name] += dur - child
                if stack:
                    stack[-1][3] += dur
        for e in evs:
            ts, dur, name = float(e["ts"]), float(e["dur"]), e["name"]
            close_until(ts)
            calls[name] += 1
            if not stack:
                traced += dur
            if not any(s[1] == name for s in stack):
                total_us[name] += dur
            stack.append([ts + dur, name, dur, 0.0])
        close_until(float("inf"))
    return calls, self_us, total_us, traced


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("trace")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--steps", type=int, default=0, help="divide times by this many steps")
    a = p.parse_args()
    events = events_of(a.trace)
    if not events:
        sys.exit(f"profile_summary: {a.trace}: no complete ('X') events")
    calls, self_us, total_us, traced = self_times(events)
    per = max(a.steps, 1)
    print(f"# {a.trace}: {len(events)} events, {traced / 1e3 / per:.1f} ms traced"
          + (f" per step ({a.steps} steps)" if a.steps else ""))
    print(f"{'operator':48s} {'calls':>8s} {'self_ms':>10s} {'self_%':>7s} {'total_ms':>10s}")
    for name, us in self_us.most_common(a.top):
        print(f"{name[:48]:48s} {calls[name] / per:8.1f} {us / 1e3 / per:10.2f} {100 * us / traced:7.1f} "
              f"{total_us[name] / 1e3 / per:10.2f}")


if __name__ == "__main__":
    main()
