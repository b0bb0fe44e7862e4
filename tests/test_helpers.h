// Small models, text and configurations shared by the suites.
#pragma once

#include <mpi.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "trainer/run_config.h"

namespace ds::fixtures {

// A file that rank 0 writes once per test run (`write` fills it) and every rank then reads.
inline std::string shared_file(const std::string& stem, void (*write)(std::ofstream&)) {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const std::string path = "/tmp/deltashard_test_" + stem + "_" + std::to_string(static_cast<long>(getppid()));
  if (rank == 0) {
    std::ofstream out(path);
    write(out);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  return path;
}

// A text file of repetitive sentences: learnable in a few steps. Same path and content on every rank.
inline std::string text_file() {
  static const std::string path = shared_file("text.txt", [](std::ofstream& out) {
    for (int i = 0; i < 400; ++i) {
      out << "the quick brown fox " << (i % 7) << " jumps over the lazy dog. ";
      out << "pack my box with " << (i % 5) << " dozen liquor jugs.\n";
    }
  });
  return path;
}

// Prompt/completion records of varied lengths (so ranks' counted tokens differ), as JSONL.
inline std::string jsonl_file() {
  static const std::string path = shared_file("sft.jsonl", [](std::ofstream& out) {
    for (int i = 0; i < 120; ++i) {
      out << "{\"prompt\": \"add " << i % 13 << " and " << i % 7 << std::string(i % 5, '!') << "\", \"completion\": \""
          << i % 13 + i % 7 << std::string(i % 3, '.') << "\"}\n";
    }
  });
  return path;
}

inline RunConfig tiny_config(const std::string& method) {
  RunConfig c;
  c.file = "test";
  c.model.vocab_size = 256;
  c.model.n_layer = 2;
  c.model.n_head = 4;
  c.model.d_model = 32;
  c.model.d_ff = 64;
  c.model.max_seq_len = 32;
  c.peft.method = *enum_from<PeftMethod>(method);
  c.peft.r = 4;
  c.peft.alpha = 8;
  c.peft.targets = {"q", "k", "v", "o", "up", "down"};
  c.peft.adapter_size = 8;
  c.data.paths = {text_file()};
  c.data.val_fraction = 0.1;
  c.train.steps = 3;
  c.train.micro_batch = 2;
  c.train.seq_len = 16;
  c.train.lr = 1e-2;
  c.train.warmup_steps = 0;
  c.train.grad_clip = 1.0;
  c.train.eval_windows = 8;
  c.train.threads = 1;
  c.train.seed = 7;
  return c;
}

// The LLaMA family's choices on a model of any size: RMSNorm, SwiGLU, rotary positions, no biases,
// an untied head, and 2 key/value heads (grouped-query attention).
inline void make_llama(ModelConfig& c) {
  c.norm = NormKind::RmsNorm;
  c.activation = Activation::SwiGlu;
  c.positions = Positions::Rope;
  c.bias = false;
  c.n_kv_head = 2;
  c.tie_embeddings = false;
}

// The same, laid out and named as a Hugging Face LLaMA model.
inline ModelConfig as_llama(ModelConfig c) {
  make_llama(c);
  c.layout = Layout::Llama;
  c.norm_eps = 1e-6;
  return c;
}

}  // namespace ds::fixtures
