// Memory per rank of a training run, computed from its configuration without building a real
// model: the model is built on the meta device over a dry-run tensor-parallel group (shapes, types
// and which parameters train, nothing allocated), and the activations are counted by walking that
// model's modules in forward order with the rules of what LibTorch's autograd keeps for backward in
// each operation this implementation runs (docs/models.md, "Memory per rank").
#pragma once

#include <cstdint>
#include <string>

#include "core/json.h"
#include "core/transformer.h"
#include "trainer/run_config.h"

namespace ds {

// The activation term in parts, per micro-batch, bytes on one rank.
struct ActivationBreakdown {
  int64_t block_saved = 0;       // the largest block's tensors kept for backward
  int64_t blocks_saved = 0;      // every block's (recompute: every block's input)
  int64_t head_saved = 0;        // embedding, final norm, LM head and loss
  int64_t loss_transient = 0;    // the loss's backward: its gradient and log-softmax's input gradient
  int64_t block_transient = 0;   // a block's backward beyond what it keeps (attention scores' gradients)
  int64_t peak = 0;              // the largest sum alive at one time
};

struct MemoryEstimate {
  int64_t frozen_bytes = 0;     // base weights that do not train, this rank's shards, model.dtype
  int64_t trainable_bytes = 0;  // float32
  int64_t grad_bytes = 0;       // float32 flat buffers (+ this rank's reduced shard under ZeRO-1)
  int64_t optimizer_bytes = 0;  // AdamW: two float32 moments per element (/ dp under ZeRO-1)
  int64_t activation_bytes = 0; // peak during one micro-batch's forward and backward
  // The same peak under each train.recompute setting (activation_bytes is the configured one's).
  int64_t activation_bytes_keep = 0, activation_bytes_recompute = 0;
  int64_t total_bytes = 0;      // the five above
  ActivationBreakdown activations;  // the configured setting's; both settings' below
  ActivationBreakdown activations_keep, activations_recompute;
  std::string dtype, compute, attention;
  int tp = 1, dp = 1;
  bool recompute = false;
  int64_t micro_batch = 0, seq_len = 0;

  Json to_json() const;
};

// Per-rank estimate for `cfg` (resolved) at parallel.tp, train.recompute and data-parallel size
// `dp` (ZeRO-1 divides optimizer state by it).
MemoryEstimate estimate_memory(const RunConfig& cfg, int dp = 1);

// A campaign's (trainer/campaign.h): the frozen base once; every job's trainable parameters,
// gradients and optimizer state; the joint batch's block activations (the jobs' sums) and one
// job's head and loss at a time (the largest). The activation breakdown holds the jobs' sums for
// the block terms and the largest job's for the head and loss; micro_batch and seq_len are job 0's.
MemoryEstimate estimate_campaign_memory(const RunConfig& cfg, int dp = 1);

// Refuses (ConfigError, naming the model's sizes or the micro batch) a CPU run, or campaign, whose
// estimate times the ranks sharing this node exceeds the machine's memory, before anything is
// allocated: it would otherwise be killed by the kernel part-way, or swap. The estimate leaves out
// the process's own baseline, so it refuses only what cannot fit.
void check_fits_memory(const RunConfig& cfg, int dp);

// The activation term for `model` (built, possibly on the meta device, with its PEFT applied and
// its trainable parameters float32) on micro-batches of `batch` × `seq_len` tokens, computing in
// `compute` on `device`.
ActivationBreakdown estimate_activations(Transformer& model, int64_t batch, int64_t seq_len, torch::ScalarType compute,
                                         bool cuda, bool recompute);

}  // namespace ds
