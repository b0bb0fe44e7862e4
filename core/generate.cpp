#include "core/generate.h"

#include <stdexcept>
#include <string>

namespace ds {

std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const SamplingOptions& opt) {
  const ModelConfig& c = model->cfg;
  if (prompt.empty()) throw std::invalid_argument("the prompt is empty");
  for (int64_t id : prompt) {
    if (id < 0 || id >= c.vocab_size) {
      throw std::invalid_argument("prompt id " + std::to_string(id) + " is outside the vocabulary (0.." +
                                  std::to_string(c.vocab_size - 1) + ")");
    }
  }
  if (static_cast<int64_t>(prompt.size()) + opt.max_new_tokens > c.max_seq_len) {
    throw std::invalid_argument("prompt (" + std::to_string(prompt.size()) + " tokens) + max-new-tokens (" +
                                std::to_string(opt.max_new_tokens) + ") exceeds the model's max_seq_len " +
                                std::to_string(c.max_seq_len));
  }
  if (!opt.greedy && opt.temperature <= 0) throw std::invalid_argument("temperature must be > 0");
  torch::NoGradGuard no_grad;
  model->eval();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opt.seed);
  KVCache cache;  // in the compute type: the base's type for bf16, on the model's device
  const auto ids = torch::TensorOptions().dtype(torch::kLong).device(model->wte->weight.device());
  torch::Tensor logits = model->forward(torch::tensor(prompt, torch::kLong).to(ids.device()).unsqueeze(0), &cache);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < opt.max_new_tokens; ++i) {
    torch::Tensor last = logits.select(1, logits.size(1) - 1).squeeze(0).to(torch::kCPU, torch::kFloat);  // [V]
    int64_t next;
    if (opt.greedy) {
      next = last.argmax().item<int64_t>();
    } else {
      last = last / opt.temperature;
      if (opt.top_k > 0 && opt.top_k < last.size(0)) {
        const torch::Tensor kth = std::get<0>(last.topk(opt.top_k)).select(0, opt.top_k - 1);
        last = last.masked_fill(last < kth, -std::numeric_limits<float>::infinity());
      }
      next = torch::multinomial(torch::softmax(last, 0), 1, false, gen).item<int64_t>();
    }
    out.push_back(next);
    if (next == opt.stop_id) break;
    if (i + 1 < opt.max_new_tokens) logits = model->forward(torch::full({1, 1}, next, ids), &cache);
  }
  return out;
}

}  // namespace ds
