// The one test-only fault hook: DELTASHARD_FAULT, read once from the environment and kept out of
// the YAML, names fault points and a number each, e.g. "rename:3" (SIGKILL before the third rename
// of this process), "unlink:1", "write.enospc:2" (the second file write fails as a full disk),
// "step.nan:5" (the loss of step 5 becomes NaN). Several are separated by commas. Without the
// variable every call here is a no-op costing one branch.
#pragma once

#include <cstdint>
#include <optional>

namespace ds {

// Counts one pass through `point`; true on the pass the spec names (1-based).
bool fault_fires(const char* point);
// Kills this process with SIGKILL when fault_fires(point): the crash tests' hook.
void fault_point(const char* point);
// The number the spec gives `point` (for points that name a step rather than a pass).
std::optional<int64_t> fault_arg(const char* point);

}  // namespace ds
