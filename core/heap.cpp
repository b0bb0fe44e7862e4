#include "core/heap.h"

#include <c10/core/CPUAllocator.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ds {

namespace {
// LibTorch's CPU tensors from plain malloc, aligned to 64 bytes by hand. Its own allocator uses
// posix_memalign, and glibc 2.36's memalign leaves a small cached remainder beside each block it
// returns, which keeps the freed block from being reused for a request of the same size: the heap
// grows with each such request (docs/operations.md). malloc reuses a freed block of its size.
// The malloc'ed pointer sits just below the aligned one; the context is the data pointer, as
// raw_allocate requires.
constexpr size_t kAlign = 64;

void heap_delete(void* p) {
  if (p) std::free(static_cast<void**>(p)[-1]);
}

class HeapAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) const override {
    if (n == 0) return {nullptr, nullptr, &heap_delete, c10::Device(c10::DeviceType::CPU)};
    void* raw = std::malloc(n + kAlign);
    if (!raw) throw std::bad_alloc();
    // malloc's pointers are 16-byte aligned, so there are at least 16 bytes below the aligned one.
    void* data = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(raw) + kAlign) & ~uintptr_t{kAlign - 1});
    static_cast<void**>(data)[-1] = raw;
    return {data, data, &heap_delete, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &heap_delete; }
};
}  // namespace

bool keep_freed_memory() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables && std::strstr(tunables, "glibc.malloc.")) return false;
  for (const char* old : {"MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"}) {
    if (std::getenv(old)) return false;  // glibc's older spelling of the same choices
  }
  // Without this, blocks above the mmap threshold (128 KiB, rising to at most 32 MiB as such
  // blocks are freed) are unmapped on free and faulted in zeroed on their next use: 5,660 faults
  // per step on configs/bench/cpu/ddp-lora.yaml, 51,000 on a GPT-2-small LoRA step. glibc still
  // maps what its heaps cannot hold: a block when brk fails, or one above 64 MiB requested from
  // another thread's arena (the main thread, which runs the CPU forward and backward, uses brk).
  const bool no_mmap = mallopt(M_MMAP_MAX, 0) == 1;
  // Free memory at the top of the heap is returned only above 1 GiB: a step's transients are
  // smaller, so they stay, and a freed model (select, compare between cases) still goes back.
  const bool no_trim = mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  static HeapAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/50);  // below trainer/memory_stats' counting wrapper
  return no_mmap && no_trim;
#else
  return false;
#endif
}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace ds
