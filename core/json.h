// JSON through nlohmann-json: insertion-ordered objects for what we print and write, and strict
// typed reads of the JSON files we load (config.json, adapter_config.json, indexes, state), whose
// errors name the file and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "core/errors.h"

namespace ds {

using Json = nlohmann::ordered_json;

// One compact line (what --json prints and JSONL holds). Bytes that are not UTF-8 (a token cut
// inside a character) become U+FFFD; NaN and infinities become null.
std::string json_line(const Json& j);
// Indented by 2 and ending in a newline: files meant to be read by people too.
std::string json_pretty(const Json& j);

// "an integer", "a string", ... for messages about a value of the wrong type.
const char* json_type_name(const Json& v);

// Parses `text` (or the file at `path`); FileError naming `path` and the byte offset of a
// syntax error.
Json parse_json(const std::string& text, const std::string& path);
Json read_json_file(const std::string& path);

// Strict reads from one JSON object of a file: a missing key or a value of the wrong type is a
// FileError "path: key: ...". Integers must be JSON integers (10.0 is not an int64).
class JsonFields {
 public:
  JsonFields(Json&&, std::string, std::string = "") = delete;  // would outlive the object it reads
  JsonFields(const Json& object, std::string path, std::string prefix = "");

  bool has(const char* key) const;  // present and not null
  int64_t need_int(const char* key) const;
  double need_number(const char* key) const;
  std::string need_string(const char* key) const;
  int64_t int_or(const char* key, int64_t fallback) const;
  double number_or(const char* key, double fallback) const;
  bool bool_or(const char* key, bool fallback) const;
  std::string string_or(const char* key, const std::string& fallback) const;
  const Json& at(const char* key) const;  // present (may be null)

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  const std::string& path() const { return path_; }

 private:
  const Json& j_;
  std::string path_, prefix_;
};

}  // namespace ds
