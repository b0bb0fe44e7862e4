// Strict reading of YAML mappings into plain structs: unknown keys, wrong types and
// out-of-range values become a ConfigError that names the file, the line and the dotted key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/errors.h"

namespace ds {

// Where a value came from, for error messages: "file.yaml:12" or "--set peft.r".
using Locator = std::function<std::string(const std::string& dotted_key, const YAML::Node& node)>;

Locator file_locator(const std::string& file);

// A key given twice in a mapping (here or in any mapping below it) is a ConfigError naming both
// lines: YAML readers disagree on which one wins, so none may.
void check_duplicate_keys(const YAML::Node& node, const std::string& prefix, const std::string& file);

// Reads one mapping section. get() leaves the default in place when the key is absent;
// finish() rejects any key that no get() asked for.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string section, Locator where);

  void get(const char* key, bool& out);
  void get(const char* key, int64_t& out, int64_t min, int64_t max);
  void get(const char* key, int& out, int min, int max);
  void get(const char* key, double& out, double min, double max);
  void get(const char* key, std::string& out);
  void get_choice(const char* key, std::string& out, const std::vector<std::string>& choices);
  void get_list(const char* key, std::vector<std::string>& out, const std::vector<std::string>& choices);
  // A key that must be present.
  void require(const char* key);
  void finish();

  [[noreturn]] void fail(const char* key, const std::string& what) const;
  bool has(const char* key) const;

 private:
  YAML::Node find(const char* key);
  std::string dotted(const char* key) const { return section_.empty() ? key : section_ + "." + key; }

  YAML::Node node_;
  std::string section_;
  Locator where_;
  std::set<std::string> seen_;
};

}  // namespace ds
