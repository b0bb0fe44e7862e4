// deltashard: the command line. Initialises MPI (a plain run is a world of one), dispatches to a
// subcommand, and turns every error into one line and a non-zero exit on every rank.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <map>
#include <string>

#include <c10/util/Exception.h>

#include "core/heap.h"
#include "core/safetensors.h"
#include "core/yaml_fields.h"
#include "dist/check.h"
#include "dist/mpi_env.h"
#include "trainer/commands/cli.h"

namespace {

struct Command {
  int (*run)(int, char**);
  const char* help;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> c{
      {"train", {ds::cmd_train, "train CONFIG: fine-tune (lora, adapter, full) under mpirun with DP and TP"}},
      {"campaign", {ds::cmd_campaign, "campaign CONFIG: many LoRA jobs on one shared frozen base, each as its own run"}},
      {"eval", {ds::cmd_eval, "eval CONFIG [--checkpoint DIR] [--merged]: held-out loss and perplexity"}},
      {"merge", {ds::cmd_merge, "merge CONFIG --checkpoint DIR --out DIR: write W0 + s·B·A as a model directory"}},
      {"convert", {ds::cmd_convert, "convert --model DIR --out DIR --layout gpt2|llama|deltashard: rewrite a model directory"}},
      {"init", {ds::cmd_init, "init MODEL.yaml --out DIR [--dtype bf16]: a randomly initialised model directory (HF layout)"}},
      {"inspect", {ds::cmd_inspect, "inspect CONFIG: exact total and trainable parameter counts per module"}},
      {"compare", {ds::cmd_compare, "compare CONFIG --methods lora,adapter_sharded,...: per-method communication table"}},
      {"comm-model", {ds::cmd_comm_model, "comm-model CONFIG --fabric F --grid dp=8,64,512: alpha-beta cost at scale"}},
      {"export-peft", {ds::cmd_export_peft, "export-peft --checkpoint DIR --out DIR: LoRA as a Hugging Face PEFT adapter"}},
      {"import-peft", {ds::cmd_import_peft, "import-peft CONFIG --adapter DIR --out DIR: a PEFT adapter as a checkpoint"}},
      {"generate", {ds::cmd_generate, "generate --model DIR [--checkpoint DIR] --prompt TEXT: continue a prompt (KV cache)"}},
      {"data", {ds::cmd_data, "data CONFIG [--show N]: JSONL examples rendered with masks, and their exact counts"}},
      {"tokenize", {ds::cmd_tokenize, "tokenize --tokenizer FILE --text TEXT: byte-level BPE ids (or --decode ids)"}},
      {"select", {ds::cmd_select, "select --teacher DIR --student SIZES --out DIR: initialise a small model from a large one"}},
      {"bench", {ds::cmd_bench, "bench latency|comm|step: measurements recorded in docs/"}},
  };
  return c;
}

void usage() {
  ds::print0("usage: deltashard COMMAND [options]   (deltashard COMMAND --help)\n\ncommands:\n");
  for (const auto& [name, c] : commands()) ds::print0("  %-12s %s\n", name.c_str(), c.help);
}

}  // namespace

int main(int argc, char** argv) {
  ds::keep_freed_memory();
  ds::MpiEnv mpi(&argc, &argv);
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  auto it = commands().find(name);
  int code = 0;
  std::string error;
  try {
    if (it == commands().end()) throw ds::UsageError("unknown command '" + name + "' (see deltashard --help)");
    code = it->second.run(argc - 1, argv + 1);
  } catch (const ds::UsageError& e) {
    error = e.what();
    code = ds::kExitUsage;
  } catch (const ds::ConfigError& e) {
    error = e.what();
    code = ds::kExitUsage;
  } catch (const ds::FileError& e) {
    error = e.what();
    code = ds::kExitFile;
  } catch (const ds::CommError& e) {
    error = e.what();
    code = ds::kExitComm;
  } catch (const std::bad_alloc&) {
    error = "out of memory (an allocation failed; try a smaller train.micro_batch or seq_len, or more ranks)";
    code = ds::kExitOther;
  } catch (const c10::Error& e) {
    // LibTorch reports a failed allocation as an enforce failure with the byte count; say it plainly.
    error = e.what();
    const auto at = error.find("you tried to allocate ");
    if (at != std::string::npos) {
      const double bytes = std::strtod(error.c_str() + at + 22, nullptr);
      char gib[32];
      std::snprintf(gib, sizeof gib, "%.1f", bytes / (1024.0 * 1024.0 * 1024.0));
      error = std::string("out of memory: an allocation of ") + gib +
              " GiB failed (the model sizes, train.micro_batch or train.seq_len are too large for this machine)";
    }
    code = ds::kExitOther;
  } catch (const std::exception& e) {
    error = e.what();
    code = ds::kExitOther;
  }
  if (!error.empty()) {
    // One line: the first line of the message (LibTorch appends a backtrace to its own).
    error = error.substr(0, error.find('\n'));
    const int rank = ds::world_rank(), size = ds::world_size();
    if (size == 1) {
      std::fprintf(stderr, "deltashard: error: %s\n", error.c_str());
      return code;
    }
    // Printed once: rank 0 reports and ends the job at once. Another rank waits a moment first:
    // when rank 0 hit the same error (bad input reaches every rank alike), rank 0's abort ends
    // this process before it prints; when it failed alone, its message comes, naming it. Either
    // way the job ends, and no peer waits in a collective for a rank that is gone.
    if (rank != 0) std::this_thread::sleep_for(std::chrono::seconds(3));
    if (rank == 0) {
      std::fprintf(stderr, "deltashard: error: %s\n", error.c_str());
    } else {
      std::fprintf(stderr, "deltashard: error: rank %d: %s\n", rank, error.c_str());
    }
    std::fflush(stderr);
    ds::abort_job("", code);
  }
  return code;
}
