#include "core/yaml_fields.h"

#include <algorithm>
#include <map>
#include <sstream>

namespace ds {

Locator file_locator(const std::string& file) {
  return [file](const std::string&, const YAML::Node& node) {
    const auto mark = node.Mark();
    if (mark.line < 0) return file;
    return file + ":" + std::to_string(mark.line + 1);
  };
}

void check_duplicate_keys(const YAML::Node& node, const std::string& prefix, const std::string& file) {
  if (!node.IsMap()) return;
  std::map<std::string, int> first_line;
  for (const auto& kv : node) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    const std::string dotted = prefix.empty() ? key : prefix + "." + key;
    const int line = kv.first.Mark().line + 1;
    auto [it, fresh] = first_line.emplace(key, line);
    if (!fresh) {
      throw ConfigError(file + ":" + std::to_string(line) + ": " + dotted + ": duplicate key (first given at line " +
                        std::to_string(it->second) + ")");
    }
    check_duplicate_keys(kv.second, dotted, file);
  }
}

Fields::Fields(const YAML::Node& node, std::string section, Locator where)
    : node_(node), section_(std::move(section)), where_(std::move(where)) {
  if (node_ && !node_.IsNull() && !node_.IsMap()) {
    throw ConfigError(where_(section_, node_) + ": " + section_ + ": expected a mapping");
  }
}

bool Fields::has(const char* key) const { return node_ && node_.IsMap() && node_[key]; }

YAML::Node Fields::find(const char* key) {
  seen_.insert(key);
  if (!has(key)) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& self = node_;  // const access never inserts the key
  return self[key];
}

void Fields::fail(const char* key, const std::string& what) const {
  const YAML::Node& self = node_;
  YAML::Node where = has(key) ? self[key] : node_;
  throw ConfigError(where_(dotted(key), where) + ": " + dotted(key) + ": " + what);
}

namespace {
std::string scalar_text(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "nothing";
}
}  // namespace

void Fields::get(const char* key, bool& out) {
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return;
  try {
    out = n.as<bool>();
  } catch (const YAML::Exception&) {
    fail(key, "expected true or false, got " + scalar_text(n));
  }
}

void Fields::get(const char* key, int64_t& out, int64_t min, int64_t max) {
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return;
  int64_t v = 0;
  try {
    v = n.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail(key, "expected an integer, got " + scalar_text(n));
  }
  if (v < min || v > max) {
    fail(key, "value " + std::to_string(v) + " is out of range [" + std::to_string(min) + ", " +
                  std::to_string(max) + "]");
  }
  out = v;
}

void Fields::get(const char* key, int& out, int min, int max) {
  int64_t v = out;
  get(key, v, min, max);
  out = static_cast<int>(v);
}

void Fields::get(const char* key, double& out, double min, double max) {
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return;
  double v = 0;
  try {
    v = n.as<double>();
  } catch (const YAML::Exception&) {
    fail(key, "expected a number, got " + scalar_text(n));
  }
  if (!(v >= min && v <= max)) {
    std::ostringstream os;
    os << "value " << v << " is out of range [" << min << ", " << max << "]";
    fail(key, os.str());
  }
  out = v;
}

void Fields::get(const char* key, std::string& out) {
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return;
  if (!n.IsScalar()) fail(key, "expected a string, got " + scalar_text(n));
  out = n.Scalar();
}

void Fields::get_choice(const char* key, std::string& out, const std::vector<std::string>& choices) {
  std::string v = out;
  get(key, v);
  if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "" : "|") + c;
    fail(key, "expected one of " + list + ", got '" + v + "'");
  }
  out = v;
}

void Fields::get_list(const char* key, std::vector<std::string>& out,
                      const std::vector<std::string>& choices) {
  const YAML::Node n = find(key);
  if (!n.IsDefined()) return;
  std::vector<std::string> v;
  if (n.IsScalar()) {
    v.push_back(n.Scalar());
  } else if (n.IsSequence()) {
    for (const auto& item : n) {
      if (!item.IsScalar()) fail(key, "expected a list of names");
      v.push_back(item.Scalar());
    }
  } else {
    fail(key, "expected a name or a list of names, got " + scalar_text(n));
  }
  for (const auto& s : v) {
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
      std::string list;
      for (const auto& c : choices) list += (list.empty() ? "" : " ") + c;
      fail(key, "unknown entry '" + s + "' (known: " + list + ")");
    }
  }
  out = v;
}

void Fields::require(const char* key) {
  if (!has(key)) fail(key, "is required");
}

void Fields::finish() {
  if (!node_ || !node_.IsMap()) return;
  for (const auto& kv : node_) {
    const std::string k = kv.first.Scalar();
    if (!seen_.count(k)) {
      throw ConfigError(where_(dotted(k.c_str()), kv.first) + ": " + dotted(k.c_str()) +
                        ": unknown key");
    }
  }
}

}  // namespace ds
