// Autoregressive generation with a KV cache: the prompt is run once (prefill), then one token per
// step attends to the cached keys and values. Greedy (argmax) or sampled with a temperature and
// top-k, from a seeded generator so a seed reproduces a sample.
#pragma once

#include <cstdint>
#include <vector>

#include "core/transformer.h"

namespace ds {

struct SamplingOptions {
  int64_t max_new_tokens = 32;
  bool greedy = true;
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: the whole vocabulary
  uint64_t seed = 0;
  int64_t stop_id = -1;  // generation ends after this token (a chat template's end of a response)
};

// The new token ids (not the prompt). Throws std::invalid_argument when the prompt is empty,
// holds an id outside the vocabulary, or prompt + max_new_tokens exceeds max_seq_len.
std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const SamplingOptions& opt);

}  // namespace ds
