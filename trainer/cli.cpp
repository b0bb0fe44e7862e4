#include "trainer/cli.h"

#include <iostream>
#include <sstream>

#include "dist/mpi_env.h"

namespace ds {

void add_common(po::options_description& desc, CommonArgs& args, bool with_config) {
  desc.add_options()("help,h", po::bool_switch(&args.help), "show this help")(
      "json", po::bool_switch(&args.json), "print one JSON object on stdout")(
      "set", po::value<std::vector<std::string>>(&args.overrides)->composing(),
      "override a config value: --set section.key=value (value parsed as YAML; repeatable)");
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

GridOptions grid_options(const RunConfig& cfg) {
  return GridOptions{cfg.parallel.tp, cfg.parallel.backend, cfg.parallel.timeout_s};
}

}  // namespace ds
