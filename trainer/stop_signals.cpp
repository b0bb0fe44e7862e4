#include "trainer/stop_signals.h"

#include <signal.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

#include "core/errors.h"

namespace ds {

namespace {
volatile sig_atomic_t g_stop = 0;

void on_stop(int sig) {
  if (g_stop != 0 && sig == SIGINT) {
    ::signal(SIGINT, SIG_DFL);
    ::raise(SIGINT);
    return;
  }
  if (g_stop == 0) g_stop = sig;
}

int signal_number(const std::string& name) {
  if (name == "TERM") return SIGTERM;
  if (name == "INT") return SIGINT;
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  if (name == "HUP") return SIGHUP;
  throw ConfigError("train.stop_signals: unknown signal '" + name + "'");
}
}  // namespace

void install_stop_signals(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // a blocking read or MPI wait continues; the flag is read between steps
    ::sigaction(signal_number(n), &sa, nullptr);
  }
}

int stop_signal() { return g_stop; }

std::string signal_name(int sig) {
  for (const char* n : {"TERM", "INT", "USR1", "USR2", "HUP"}) {
    if (signal_number(n) == sig) return std::string("SIG") + n;
  }
  return "signal " + std::to_string(sig);
}

void wait_for_stop_signal() {
  while (g_stop == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace ds
