#include "trainer/memory_stats.h"

#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <string>
#include <unordered_map>

#include "core/heap.h"

namespace ds {

namespace {
// The kB figure of the line starting with `key` in a /proc file, or -1.
int64_t proc_kb(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size()));
  }
  return -1;
}
}  // namespace

double peak_rss_mib() { return std::max<int64_t>(0, proc_kb("/proc/self/status", "VmHWM:")) / 1024.0; }
double rss_mib() { return std::max<int64_t>(0, proc_kb("/proc/self/status", "VmRSS:")) / 1024.0; }

int64_t machine_memory_bytes() {
  int64_t total = std::max<int64_t>(0, proc_kb("/proc/meminfo", "MemTotal:")) * 1024;
  std::ifstream cg("/sys/fs/cgroup/memory.max");  // cgroup v2; "max" when unlimited
  std::string limit;
  if (cg >> limit && limit != "max") {
    const int64_t l = std::stoll(limit);
    if (l > 0 && (total == 0 || l < total)) total = l;
  }
  return total;
}

namespace {
std::atomic<int64_t> g_live{0}, g_peak{0};

struct Counted {
  c10::DataPtr inner;
  int64_t bytes;
};

// The context of each counted DataPtr is its data pointer, as raw_allocate() requires (LibTorch
// asserts it), so what to free and how much is looked up by that pointer.
std::mutex g_mu;
std::unordered_map<void*, Counted>& counted() {
  static auto* m = new std::unordered_map<void*, Counted>;
  return *m;
}

void counted_delete(void* ptr) {
  Counted c;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    auto it = counted().find(ptr);
    if (it == counted().end()) return;
    c = std::move(it->second);
    counted().erase(it);
  }
  g_live -= c.bytes;
}  // c.inner frees the storage here, outside the lock

class CountingAllocator final : public c10::Allocator {
 public:
  explicit CountingAllocator(c10::Allocator* base) : base_(base) {}
  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    if (data == nullptr) return inner;  // zero bytes
    const c10::Device device = inner.device();
    {
      std::lock_guard<std::mutex> lock(g_mu);
      counted().emplace(data, Counted{std::move(inner), static_cast<int64_t>(n)});
    }
    const int64_t now = g_live += static_cast<int64_t>(n);
    int64_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return {data, data, &counted_delete, device};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &counted_delete; }

 private:
  c10::Allocator* base_;
};

CountingAllocator* g_counter = nullptr;
}  // namespace

void count_cpu_allocations() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_counter = new CountingAllocator(c10::GetCPUAllocator());
    c10::SetCPUAllocator(g_counter, /*priority=*/100);
  });
}

bool counting_cpu_allocations() { return g_counter != nullptr; }
int64_t cpu_live_bytes() { return g_live.load(); }
int64_t cpu_peak_bytes() { return g_peak.load(); }
void reset_cpu_peak() { g_peak = g_live.load(); }

void reset_peak_rss() {
  release_free_memory();
  std::ofstream out("/proc/self/clear_refs");
  if (out) out << "5";
}

}  // namespace ds
