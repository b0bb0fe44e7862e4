// Shared pieces of the `deltashard` subcommands: option parsing with Boost.ProgramOptions, the
// common --set/--json/--help options, and the one table of subcommands.
#pragma once

#include <boost/program_options.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/errors.h"
#include "core/peft_io.h"
#include "dist/process_grid.h"
#include "trainer/run_config.h"

namespace ds {

namespace po = boost::program_options;

struct CommonArgs {
  std::string config;
  std::vector<std::string> overrides;
  bool json = false;
  bool help = false;
};

// Adds --json, --help, the positional CONFIG (when `with_config`) and --set (when `with_set`:
// only commands that read a run config take it).
void add_common(po::options_description& desc, CommonArgs& args, bool with_config, bool with_set = true);
// Parses; returns false (after printing usage on rank 0) when --help was given.
bool parse_args(int argc, char** argv, po::options_description& desc, const CommonArgs& args, bool with_config,
                const std::string& usage);

GridOptions grid_options(const RunConfig& cfg);

// The exit code of a run stopped cleanly after its checkpoint: 75; under launch/run.sh
// (DELTASHARD_STATUS_FILE set) rank 0 writes 75 there and the ranks exit 0, because mpirun would
// meet a non-zero exit with a teardown that sleeps twice its grace.
int stopped_exit(bool rank0);

// "1,2,3" -> {1, 2, 3}; UsageError naming `option` for a non-integer or a value below `min`.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option, int64_t min);

// A LoRA checkpoint's step directory as a Hugging Face PEFT adapter directory `out` (rank 0 writes).
PeftFiles write_peft_export(const std::string& checkpoint_step_dir, const std::string& out);

int cmd_train(int argc, char** argv);
int cmd_campaign(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_merge(int argc, char** argv);
int cmd_inspect(int argc, char** argv);
int cmd_init(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_compare(int argc, char** argv);
int cmd_comm_model(int argc, char** argv);
int cmd_select(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_data(int argc, char** argv);
int cmd_export_peft(int argc, char** argv);
int cmd_import_peft(int argc, char** argv);
int cmd_bench_latency(int argc, char** argv);
int cmd_bench_comm(int argc, char** argv);
int cmd_bench_step(int argc, char** argv);

}  // namespace ds
