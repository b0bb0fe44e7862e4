// Dynamic loss scaling for an fp16 base on CUDA: the loss is multiplied by `scale` before
// backward so small fp16 gradients do not flush to zero; a step whose gradients overflow is
// skipped and the scale halved, and after `growth_interval` good steps in a row it doubles.
#pragma once

#include <cstdint>

namespace ds {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16, as torch.cuda.amp.GradScaler
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  double min_scale = 1.0;  // never scale gradients down below their true size
};

struct LossScaler {
  LossScalerOptions options;
  bool enabled = false;  // only an fp16 base on CUDA computes in fp16
  double scale = 1.0;
  int64_t good_steps = 0;  // in a row, since the last growth or skip
  int64_t skips = 0;       // steps skipped for non-finite gradients (scaler_skips)

  static LossScaler make(bool enabled, const LossScalerOptions& options = {});

  // The factor that undoes the scale on the gradients.
  double inverse() const { return 1.0 / scale; }

  // Called once per step with whether every rank's unscaled gradients were finite (the same value
  // on every rank, so every rank skips alike). Returns whether to apply the optimizer step.
  bool update(bool finite);
};

}  // namespace ds
