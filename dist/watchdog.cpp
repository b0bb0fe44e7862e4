#include "dist/watchdog.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/errors.h"
#include "dist/arrivals.h"
#include "dist/mpi_env.h"

namespace ds {

namespace {
constexpr auto kTick = std::chrono::milliseconds(50);
// A tick that takes this long means the whole process was stopped (SIGSTOP, a debugger, the host).
constexpr int64_t kSuspendedNs = 1000000000;
// After printing, wait this long before MPI_Abort: the other waiting ranks, whose deadlines fall
// within a tick or two of ours, print their own line before the abort reaches them.
constexpr auto kGrace = std::chrono::milliseconds(500);

std::atomic<int64_t> g_deadline_ns{0};  // 0: not armed
std::atomic<uint64_t> g_generation{0};  // bumped by every arm: a late explanation of a collective that completed is dropped
std::mutex g_what_mu;                   // guards the armed collective's description below
char g_what[512];
double g_timeout_s = 0;
int64_t g_armed_ns = 0;
// Never destroyed (the detached thread outlives static destruction): the channel it holds is
// left to MPI_Finalize.
std::shared_ptr<Arrivals>& g_arrivals = *new std::shared_ptr<Arrivals>();
uint64_t g_seq = 0;

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

void Watchdog::arm(const std::string& what, double timeout_s, std::shared_ptr<Arrivals> arrivals, uint64_t seq) {
  if (timeout_s <= 0) return;
  const int64_t now = now_ns();
  {
    std::lock_guard<std::mutex> lock(g_what_mu);
    std::snprintf(g_what, sizeof g_what, "%s", what.c_str());
    g_timeout_s = timeout_s;
    g_armed_ns = now;
    g_arrivals.swap(arrivals);  // the previous channel is released below, outside the lock
    g_seq = seq;
    g_generation.fetch_add(1, std::memory_order_relaxed);
  }
  g_deadline_ns.store(now + static_cast<int64_t>(timeout_s * 1e9), std::memory_order_release);
}

void Watchdog::disarm() { g_deadline_ns.store(0, std::memory_order_release); }

void Watchdog::loop() {
  int64_t last_tick = now_ns();
  int64_t suspended_until = 0, suspended_for = 0;  // the last time this process was stopped
  for (;;) {
    std::this_thread::sleep_for(kTick);
    const int64_t now = now_ns();
    if (now - last_tick > kSuspendedNs) {
      suspended_until = now;
      suspended_for = now - last_tick;
    }
    last_tick = now;
    try {
      Arrivals::drain_all();
    } catch (...) {
      // Draining is housekeeping; a failing peer shows in the collective itself.
    }
    const int64_t deadline = g_deadline_ns.load(std::memory_order_acquire);
    if (deadline == 0 || now < deadline) continue;

    char what[512];
    double timeout_s = 0;
    int64_t armed = 0;
    std::shared_ptr<Arrivals> arrivals;
    uint64_t seq = 0, generation = 0;
    {
      std::lock_guard<std::mutex> lock(g_what_mu);
      std::memcpy(what, g_what, sizeof what);
      timeout_s = g_timeout_s;
      armed = g_armed_ns;
      arrivals = g_arrivals;
      seq = g_seq;
      generation = g_generation.load(std::memory_order_relaxed);
    }
    // A stop that ended more than one timeout before this collective began did not delay it.
    const bool stopped = suspended_until > 0 && suspended_until >= armed - static_cast<int64_t>(timeout_s * 1e9);
    std::string why;
    try {
      if (arrivals) why = arrivals->explain(seq, stopped ? suspended_for / 1e9 : 0.0);
    } catch (...) {
      why.clear();
    }
    arrivals.reset();
    // The collective may have completed while the announcements were read.
    if (g_deadline_ns.load(std::memory_order_acquire) == 0 ||
        g_generation.load(std::memory_order_relaxed) != generation) {
      continue;
    }
    char msg[2048];
    if (why.empty()) {
      std::snprintf(msg, sizeof msg,
                    "deltashard: error: rank %d: %s did not complete within %g s (a peer rank died or stalled); "
                    "aborting the job",
                    world_rank(), what, timeout_s);
    } else {
      std::snprintf(msg, sizeof msg, "deltashard: error: rank %d: %s did not complete within %g s: %s; aborting the job",
                    world_rank(), what, timeout_s, why.c_str());
    }
    std::fprintf(stderr, "%s\n", msg);
    std::fflush(stderr);
    std::this_thread::sleep_for(kGrace);
    abort_job("", kExitComm);
  }
}

}  // namespace ds
