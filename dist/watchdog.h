// Turns a collective that never completes into a job abort with a message naming the operation,
// tag, group and rank. One background thread per process polls a deadline that each collective
// arms and disarms with two atomic stores, so the cost on the hot path is nil.
#pragma once

#include <string>

namespace ds {

class Watchdog {
 public:
  static Watchdog& instance();
  // Starts watching `what` (a short description) for `timeout_s` seconds; <= 0 disables.
  void arm(const std::string& what, double timeout_s);
  void disarm();

 private:
  Watchdog();
  void loop();
};

// Arms on construction, disarms on destruction.
class WatchdogGuard {
 public:
  WatchdogGuard(const std::string& what, double timeout_s) { Watchdog::instance().arm(what, timeout_s); }
  ~WatchdogGuard() { Watchdog::instance().disarm(); }
};

}  // namespace ds
