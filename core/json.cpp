#include "core/json.h"

#include "core/safetensors.h"

namespace ds {

std::string json_line(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string json_pretty(const Json& j) { return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n"; }

Json parse_json(const std::string& text, const std::string& path) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    throw FileError(path + ": not valid JSON at byte " + std::to_string(e.byte) + ": " +
                    std::string(e.what()).substr(std::string(e.what()).rfind(": ") + 2));
  }
}

Json read_json_file(const std::string& path) { return parse_json(read_file(path), path); }

const char* json_type_name(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "a list";
  return "an object";
}

JsonFields::JsonFields(const Json& object, std::string path, std::string prefix)
    : j_(object), path_(std::move(path)), prefix_(std::move(prefix)) {
  if (!j_.is_object()) throw FileError(path_ + ": " + (prefix_.empty() ? "" : prefix_ + ": ") + "expected a JSON object");
}

void JsonFields::fail(const std::string& key, const std::string& what) const {
  throw FileError(path_ + ": " + prefix_ + key + ": " + what);
}

bool JsonFields::has(const char* key) const {
  auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

const Json& JsonFields::at(const char* key) const {
  auto it = j_.find(key);
  if (it == j_.end()) fail(key, "is missing");
  return *it;
}

int64_t JsonFields::need_int(const char* key) const {
  if (!has(key)) fail(key, "is missing");
  const Json& v = at(key);
  if (!v.is_number_integer()) fail(key, std::string("expected an integer, got ") + json_type_name(v));
  return v.get<int64_t>();
}

double JsonFields::need_number(const char* key) const {
  if (!has(key)) fail(key, "is missing");
  const Json& v = at(key);
  if (!v.is_number()) fail(key, std::string("expected a number, got ") + json_type_name(v));
  return v.get<double>();
}

std::string JsonFields::need_string(const char* key) const {
  if (!has(key)) fail(key, "is missing");
  const Json& v = at(key);
  if (!v.is_string()) fail(key, std::string("expected a string, got ") + json_type_name(v));
  return v.get<std::string>();
}

int64_t JsonFields::int_or(const char* key, int64_t fallback) const { return has(key) ? need_int(key) : fallback; }

double JsonFields::number_or(const char* key, double fallback) const {
  return has(key) ? need_number(key) : fallback;
}

bool JsonFields::bool_or(const char* key, bool fallback) const {
  if (!has(key)) return fallback;
  const Json& v = at(key);
  if (!v.is_boolean()) fail(key, std::string("expected true or false, got ") + json_type_name(v));
  return v.get<bool>();
}

std::string JsonFields::string_or(const char* key, const std::string& fallback) const {
  return has(key) ? need_string(key) : fallback;
}

}  // namespace ds
