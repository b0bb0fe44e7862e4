// Turns a collective that never completes into a job abort with a message naming the operation,
// tag, group and rank, and the rank that has not arrived. One background thread per process polls
// a deadline that each collective arms and disarms, and receives the groups' arrival messages.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace ds {

class Arrivals;

class Watchdog {
 public:
  static Watchdog& instance();
  // Starts watching `what` (a short description) for `timeout_s` seconds; <= 0 disables.
  // `arrivals` (may be null) and `seq`: the group's channel and the collective's number in it,
  // which name the ranks that have not arrived when the deadline passes.
  void arm(const std::string& what, double timeout_s, std::shared_ptr<Arrivals> arrivals = nullptr,
           uint64_t seq = 0);
  void disarm();

 private:
  Watchdog();
  void loop();
};

// Arms on construction, disarms on destruction.
class WatchdogGuard {
 public:
  WatchdogGuard(const std::string& what, double timeout_s, std::shared_ptr<Arrivals> arrivals = nullptr,
                uint64_t seq = 0) {
    Watchdog::instance().arm(what, timeout_s, std::move(arrivals), seq);
  }
  ~WatchdogGuard() { Watchdog::instance().disarm(); }
  WatchdogGuard(const WatchdogGuard&) = delete;
  WatchdogGuard& operator=(const WatchdogGuard&) = delete;
};

}  // namespace ds
