#include "trainer/loss_scaler.h"

#include <algorithm>

namespace ds {

LossScaler LossScaler::make(bool enabled, const LossScalerOptions& options) {
  LossScaler s;
  s.options = options;
  s.enabled = enabled;
  s.scale = enabled ? options.init_scale : 1.0;
  return s;
}

bool LossScaler::update(bool finite) {
  if (!enabled) return true;
  if (!finite) {
    scale = std::max(options.min_scale, scale * options.backoff_factor);
    good_steps = 0;
    ++skips;
    return false;
  }
  if (++good_steps >= options.growth_interval) {
    scale *= options.growth_factor;
    good_steps = 0;
  }
  return true;
}

}  // namespace ds
