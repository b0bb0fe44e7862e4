// How this process's heap treats freed tensor memory. A training step frees and reallocates the
// same activation buffers every step; glibc's defaults hand large blocks back to the kernel on
// free (mmap threshold, heap trim), so every step page-faults them in again (docs/results.md).
#pragma once

namespace ds {

// Keeps freed memory in the heap for reuse: no mmap for large blocks, no trimming below 1 GiB, and
// LibTorch's CPU tensors from malloc rather than posix_memalign (glibc 2.36's memalign does not
// reuse a freed block for the next request of its size).
// Call once at the start of main, before any tensor exists. Does nothing where the C library is
// not glibc, or where the user chose: a glibc.malloc tunable in GLIBC_TUNABLES, or one of the
// older MALLOC_MMAP_MAX_, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_.
// Returns whether the policy was applied.
bool keep_freed_memory();

// Hands free heap pages back to the kernel (malloc_trim): before a peak-memory measurement
// starts, so that it begins from what is live rather than what earlier cases left free.
void release_free_memory();

}  // namespace ds
