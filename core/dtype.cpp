#include "core/dtype.h"

#include <string>

namespace ds {

torch::ScalarType scalar_type(DType d) {
  switch (d) {
    case DType::Fp32: return torch::kFloat;
    case DType::Bf16: return torch::kBFloat16;
    case DType::Fp16: return torch::kHalf;
  }
  return torch::kFloat;
}

torch::ScalarType compute_type(DType d, Device device) {
  if (d == DType::Fp16 && device == Device::Cpu) return torch::kFloat;
  return scalar_type(d);
}

int64_t dtype_bytes(DType d) { return d == DType::Fp32 ? 4 : 2; }

torch::Device torch_device(Device device, int local_rank) {
  if (device == Device::Cpu) return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available()) {
    throw ConfigError("train.device: cuda, but this build of LibTorch sees no CUDA device (CPU-only LibTorch, or no GPU "
                      "on this machine)");
  }
  const int n = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % n));
}

}  // namespace ds
