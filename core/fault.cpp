#include "core/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

namespace ds {

namespace {
struct Faults {
  std::map<std::string, int64_t> arg;    // point -> N
  std::map<std::string, int64_t> count;  // passes so far
  std::mutex mu;
};

Faults& faults() {
  static Faults* f = [] {
    auto* out = new Faults();
    const char* spec = std::getenv("DELTASHARD_FAULT");
    if (!spec) return out;
    std::string s = spec;
    size_t a = 0;
    while (a <= s.size()) {
      size_t b = s.find(',', a);
      if (b == std::string::npos) b = s.size();
      const std::string item = s.substr(a, b - a);
      if (!item.empty()) {
        const size_t colon = item.rfind(':');
        const std::string name = colon == std::string::npos ? item : item.substr(0, colon);
        const int64_t n = colon == std::string::npos ? 1 : std::atoll(item.c_str() + colon + 1);
        out->arg[name] = n;
      }
      a = b + 1;
    }
    return out;
  }();
  return *f;
}
}  // namespace

bool fault_fires(const char* point) {
  Faults& f = faults();
  if (f.arg.empty()) return false;
  std::lock_guard<std::mutex> lock(f.mu);
  auto it = f.arg.find(point);
  if (it == f.arg.end()) return false;
  return ++f.count[point] == it->second;
}

void fault_point(const char* point) {
  if (fault_fires(point)) ::kill(::getpid(), SIGKILL);
}

std::optional<int64_t> fault_arg(const char* point) {
  Faults& f = faults();
  auto it = f.arg.find(point);
  if (it == f.arg.end()) return std::nullopt;
  return it->second;
}

}  // namespace ds
