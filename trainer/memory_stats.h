// Peak resident memory of this process, with a reset so that one process can measure several
// configurations in turn (Linux: /proc/self/status VmHWM, reset through /proc/self/clear_refs).
#pragma once

namespace ds {

// MiB (VmHWM).
double peak_rss_mib();
void reset_peak_rss();

}  // namespace ds
