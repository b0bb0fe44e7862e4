#include "core/heap.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ds {

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
  const bool ok = mallopt(M_MMAP_MAX, 0) == 1;
  // Free memory at the top of the heap is returned only above 1 GiB: a step's transients are
  // smaller, so they stay, and a freed model (select, compare between cases) still goes back.
  return mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1 && ok;
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
