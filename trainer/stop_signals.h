// Preemption: the signals of train.stop_signals only set a flag here (async-signal-safe); the
// trainer carries it to every rank in its once-per-step control all-reduce, so all ranks stop after
// the same step, write one checkpoint and exit with kExitStopped.
#pragma once

#include <string>
#include <vector>

namespace ds {

// Installs the handler for each named signal ("TERM", "INT", "USR1", ...). A second SIGINT ends
// the process at once, as an interactive user expects.
void install_stop_signals(const std::vector<std::string>& names);
// The number of the first stop signal received, or 0.
int stop_signal();
// "SIGTERM" for 15, and so on.
std::string signal_name(int sig);
// Test hook (DELTASHARD_FAULT="step.wait_signal:N"): blocks before step N until a stop signal has
// arrived, so a test can signal a run at a known step without timing anything.
void wait_for_stop_signal();

}  // namespace ds
