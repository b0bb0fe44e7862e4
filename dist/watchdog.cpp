#include "dist/watchdog.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "dist/mpi_env.h"

namespace ds {

namespace {
std::atomic<int64_t> g_deadline_ns{0};  // 0: not armed
std::mutex g_what_mu;
char g_what[512];
double g_timeout_s = 0;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Watchdog& Watchdog::instance() {
  static Watchdog* w = new Watchdog();  // never destroyed: its thread runs until exit
  return *w;
}

Watchdog::Watchdog() {
  std::thread([this] { loop(); }).detach();
}

void Watchdog::arm(const std::string& what, double timeout_s) {
  if (timeout_s <= 0) return;
  {
    std::lock_guard<std::mutex> lock(g_what_mu);
    std::snprintf(g_what, sizeof g_what, "%s", what.c_str());
    g_timeout_s = timeout_s;
  }
  g_deadline_ns.store(now_ns() + static_cast<int64_t>(timeout_s * 1e9), std::memory_order_release);
}

void Watchdog::disarm() { g_deadline_ns.store(0, std::memory_order_release); }

void Watchdog::loop() {
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int64_t deadline = g_deadline_ns.load(std::memory_order_acquire);
    if (deadline == 0 || now_ns() < deadline) continue;
    char msg[768];
    {
      std::lock_guard<std::mutex> lock(g_what_mu);
      std::snprintf(msg, sizeof msg,
                    "deltashard: error: rank %d: %s did not complete within %g s (a peer rank died or "
                    "stalled); aborting the job",
                    world_rank(), g_what, g_timeout_s);
    }
    abort_job(msg, kExitComm);
  }
}

}  // namespace ds
