// Where a model's tensors live and in what type: the frozen base's storage type (model.dtype),
// the type a layer computes in, and the device (train.device). Trainable parameters, their
// gradients and optimizer state are always float32.
#pragma once

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "core/config_fields.h"

namespace ds {

enum class DType { Fp32, Bf16, Fp16 };
enum class Device { Cpu, Cuda };

DS_ENUM_NAMES(DType, {DType::Fp32, "fp32"}, {DType::Bf16, "bf16"}, {DType::Fp16, "fp16"});

DS_ENUM_NAMES(Device, {Device::Cpu, "cpu"}, {Device::Cuda, "cuda"});

torch::ScalarType scalar_type(DType d);
// The type a layer computes in: the storage type, except fp16 on the CPU, which has no fp16
// kernels in LibTorch 1.13 and computes each layer in float32.
torch::ScalarType compute_type(DType d, Device device);
int64_t dtype_bytes(DType d);
// This process's device for `device`: the CPU, or GPU local_rank % visible GPUs. ConfigError when
// this build or machine has no CUDA device.
torch::Device torch_device(Device device, int local_rank);

}  // namespace ds
