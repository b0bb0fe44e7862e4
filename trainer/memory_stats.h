// Peak resident memory of this process, with a reset so that one process can measure several
// configurations in turn (Linux: /proc/self/status VmHWM, reset through /proc/self/clear_refs).
#pragma once

#include <cstdint>

namespace ds {

// MiB (VmHWM).
double peak_rss_mib();
// Hands free heap pages back first (core/heap.h), so the new peak starts from what is live.
void reset_peak_rss();
// MiB now (VmRSS).
double rss_mib();
// Bytes of memory this process may use on this machine: MemTotal, or the cgroup's memory.max
// where that is lower (a container); 0 when neither can be read.
int64_t machine_memory_bytes();

// Bytes of CPU tensor storage live now and at most since the last reset, counted by a wrapper
// around LibTorch's CPU allocator that count_cpu_allocations() installs (once; it stays for the
// process). Storage allocated before it was installed is not counted, nor freed from the count.
// Exact where RSS is not: no allocator caching, no library baseline, no untouched pages.
void count_cpu_allocations();
bool counting_cpu_allocations();
int64_t cpu_live_bytes();
int64_t cpu_peak_bytes();
void reset_cpu_peak();

}  // namespace ds
