// One table of fields per configuration struct drives reading, writing and comparing it: each
// struct has `describe(v, cfg)` listing every key once with its type and its range or choices,
// and the visitors here walk that table. Reading is strict (unknown keys, wrong types and values
// out of range name the file, line and dotted key); writing prints YAML that reads back to the
// same struct, byte for byte when printed again.
#pragma once

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/yaml_fields.h"

namespace ds {

// Specialise for each enumeration read from a file: the spelling of every value, in order.
template <class E>
struct EnumNames;

// DS_ENUM_NAMES(Color, {Color::Red, "red"}, {Color::Blue, "blue"}) at namespace ds scope.
#define DS_ENUM_NAMES(E, ...)                                              \
  template <>                                                              \
  struct EnumNames<E> {                                                    \
    static const std::vector<std::pair<E, const char*>>& all() {           \
      static const std::vector<std::pair<E, const char*>> v{__VA_ARGS__}; \
      return v;                                                            \
    }                                                                      \
  }

template <class E>
const char* enum_name(E e) {
  for (const auto& [v, n] : EnumNames<E>::all()) {
    if (v == e) return n;
  }
  return "?";
}

template <class E>
std::optional<E> enum_from(const std::string& s) {
  for (const auto& [v, n] : EnumNames<E>::all()) {
    if (s == n) return v;
  }
  return std::nullopt;
}

template <class E>
std::vector<std::string> enum_choices() {
  std::vector<std::string> out;
  for (const auto& [v, n] : EnumNames<E>::all()) out.emplace_back(n);
  return out;
}

// "a|b|c", for messages.
std::string join_choices(const std::vector<std::string>& choices, const char* sep = "|");

// The shortest decimal text that reads back to exactly `x` (std::to_chars).
std::string exact_number(double x);

// Reads a YAML mapping through a describe() table.
class FieldReader {
 public:
  FieldReader(const YAML::Node& node, std::string section, Locator where)
      : f_(node, std::move(section), std::move(where)) {}

  void operator()(const char* key, bool& v) { f_.get(key, v); }
  void operator()(const char* key, int64_t& v, int64_t lo, int64_t hi) { f_.get(key, v, lo, hi); }
  void operator()(const char* key, int& v, int lo, int hi) { f_.get(key, v, lo, hi); }
  void operator()(const char* key, double& v, double lo, double hi) { f_.get(key, v, lo, hi); }
  void operator()(const char* key, std::string& v) { f_.get(key, v); }
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>& choices) {
    f_.get_list(key, v, choices);
  }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void operator()(const char* key, E& v) {
    std::string s = enum_name(v);
    f_.get_choice(key, s, enum_choices<E>());
    v = *enum_from<E>(s);
  }

  Fields& fields() { return f_; }
  bool has(const char* key) const { return f_.has(key); }
  [[noreturn]] void fail(const char* key, const std::string& what) const { f_.fail(key, what); }
  void finish() { f_.finish(); }

 private:
  Fields f_;
};

// Reads a JSON object (a model directory's config.json) through the same table, with the same
// ranges and messages as the YAML reader; errors are FileErrors naming `path` and the key.
// `rename` maps our key to the key the file uses (a Hugging Face name); keys absent from a
// non-empty `rename` are not read from the file and keep their value.
class JsonFieldReader {
 public:
  JsonFieldReader(const Json& object, std::string path, std::map<std::string, std::string> rename = {});

  void operator()(const char* key, bool& v);
  void operator()(const char* key, int64_t& v, int64_t lo, int64_t hi);
  void operator()(const char* key, int& v, int lo, int hi);
  void operator()(const char* key, double& v, double lo, double hi);
  void operator()(const char* key, std::string& v);
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>& choices);
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void operator()(const char* key, E& v) {
    std::string s = enum_name(v);
    (*this)(key, s);
    const auto e = enum_from<E>(s);
    if (!e) fail(key, "expected one of " + join_choices(enum_choices<E>()) + ", got '" + s + "'");
    v = *e;
  }

  // Keys of the file that no field asked for are an error (for DeltaShard's own config.json).
  void finish(const std::vector<std::string>& also_known = {});
  [[noreturn]] void fail(const char* key, const std::string& what) const;

 private:
  const Json* find(const char* key);  // nullptr when absent, null, or not read from the file
  std::string file_key(const char* key) const;

  const Json& j_;
  std::string path_;
  std::map<std::string, std::string> rename_;
  std::vector<std::string> seen_;
};

// Writes a describe() table as the body of a YAML block mapping. (The writing visitors take
// mutable references like the reader, so an int64_t field never matches an int overload through
// a temporary; they only read.)
class FieldWriter {
 public:
  explicit FieldWriter(YAML::Emitter& e) : e_(e) {}

  void operator()(const char* key, bool& v) { e_ << YAML::Key << key << YAML::Value << v; }
  void operator()(const char* key, int64_t& v, int64_t, int64_t) { e_ << YAML::Key << key << YAML::Value << v; }
  void operator()(const char* key, int& v, int, int) { e_ << YAML::Key << key << YAML::Value << v; }
  void operator()(const char* key, double& v, double, double) {
    e_ << YAML::Key << key << YAML::Value << exact_number(v);
  }
  void operator()(const char* key, std::string& v) {
    e_ << YAML::Key << key << YAML::Value << YAML::DoubleQuoted << v;
  }
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>&) {
    e_ << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) e_ << YAML::DoubleQuoted << s;
    e_ << YAML::EndSeq;
  }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void operator()(const char* key, E& v) {
    e_ << YAML::Key << key << YAML::Value << enum_name(v);
  }

 private:
  YAML::Emitter& e_;
};

// Writes a describe() table into a JSON object (a model directory's config.json).
class JsonFieldWriter {
 public:
  explicit JsonFieldWriter(Json& out) : j_(out) {}
  void operator()(const char* key, bool& v) { j_[key] = v; }
  void operator()(const char* key, int64_t& v, int64_t, int64_t) { j_[key] = v; }
  void operator()(const char* key, int& v, int, int) { j_[key] = v; }
  void operator()(const char* key, double& v, double, double) { j_[key] = v; }
  void operator()(const char* key, std::string& v) { j_[key] = v; }
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>&) { j_[key] = v; }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void operator()(const char* key, E& v) {
    j_[key] = enum_name(v);
  }

 private:
  Json& j_;
};

// Each key's value as text (the writer's spelling), for comparing two structs field by field.
class FieldTexts {
 public:
  void operator()(const char* key, bool& v) { out[key] = v ? "true" : "false"; }
  void operator()(const char* key, int64_t& v, int64_t, int64_t) { out[key] = std::to_string(v); }
  void operator()(const char* key, int& v, int, int) { out[key] = std::to_string(v); }
  void operator()(const char* key, double& v, double, double) { out[key] = exact_number(v); }
  void operator()(const char* key, std::string& v) { out[key] = v; }
  void operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>&) {
    out[key] = "[" + join_choices(v, ", ") + "]";
  }
  template <class E, class = std::enable_if_t<std::is_enum_v<E>>>
  void operator()(const char* key, E& v) {
    out[key] = enum_name(v);
  }

  std::map<std::string, std::string> out;
};

// describe() tables take a mutable struct so one table serves reading; the writing visitors only
// read through it.
template <class T>
std::map<std::string, std::string> field_texts(const T& cfg) {
  FieldTexts t;
  describe(t, const_cast<T&>(cfg));
  return t.out;
}

}  // namespace ds
