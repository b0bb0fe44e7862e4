#include "trainer/commands/cli.h"

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "core/files.h"
#include "dist/mpi_env.h"

namespace ds {

void add_common(po::options_description& desc, CommonArgs& args, bool with_config, bool with_set) {
  desc.add_options()("help,h", po::bool_switch(&args.help), "show this help")(
      "json", po::bool_switch(&args.json), "print one JSON object on stdout");
  if (with_set) {
    desc.add_options()("set", po::value<std::vector<std::string>>(&args.overrides)->composing(),
                       "override a config value: --set section.key=value (value parsed as YAML; repeatable)");
  }
  if (with_config) desc.add_options()("config", po::value<std::string>(&args.config), "YAML run configuration");
}

bool parse_args(int argc, char** argv, po::options_description& desc, const CommonArgs& args, bool with_config,
                const std::string& usage) {
  po::positional_options_description pos;
  if (with_config) pos.add("config", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see --help)");
  }
  if (args.help) {
    std::ostringstream os;
    os << "usage: " << usage << "\n\n" << desc << "\n";
    print0("%s", os.str().c_str());
    return false;
  }
  if (with_config && args.config.empty()) throw UsageError("missing CONFIG (usage: " + usage + ")");
  return true;
}

std::vector<int64_t> parse_int_list(const std::string& text, const std::string& option, int64_t min) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size()) throw UsageError(option + ": '" + item + "' is not an integer");
    if (v < min) throw UsageError(option + ": values must be >= " + std::to_string(min) + ", got " + item);
    out.push_back(v);
  }
  if (out.empty()) throw UsageError(option + ": expected a comma-separated list of integers");
  return out;
}

GridOptions grid_options(const RunConfig& cfg) {
  torch_device(cfg.train.device, 0);  // a missing GPU is named as train.device, before any backend looks for one
  return GridOptions{cfg.parallel.tp, cfg.parallel.backend, cfg.parallel.timeout_s};
}

int stopped_exit(bool rank0) {
  if (const char* f = std::getenv("DELTASHARD_STATUS_FILE")) {
    if (rank0) write_file_atomic(f, std::to_string(kExitStopped) + "\n");
    return kExitOk;
  }
  return kExitStopped;
}

}  // namespace ds
