// A small ordered JSON value for the `--json` outputs, metrics records and file headers we write.
// Reading JSON goes through yaml-cpp (JSON is YAML); this file only builds and prints.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ds {

class Json {
 public:
  enum class Kind { Null, Bool, Int, Real, String, Array, Object };

  Json() = default;
  Json(bool v) : kind_(Kind::Bool), b_(v) {}
  Json(int v) : kind_(Kind::Int), i_(v) {}
  Json(int64_t v) : kind_(Kind::Int), i_(v) {}
  Json(uint64_t v) : kind_(Kind::Int), i_(static_cast<int64_t>(v)) {}
  Json(double v) : kind_(Kind::Real), d_(v) {}
  Json(std::string v) : kind_(Kind::String), s_(std::move(v)) {}
  Json(const char* v) : kind_(Kind::String), s_(v) {}

  static Json object() { Json j; j.kind_ = Kind::Object; return j; }
  static Json array() { Json j; j.kind_ = Kind::Array; return j; }

  // Object access: inserts the key (keeping insertion order) when it is new.
  Json& operator[](const std::string& key);
  void push(Json v);
  size_t size() const { return kind_ == Kind::Array ? items_.size() : members_.size(); }

  // indent < 0 prints on one line.
  std::string dump(int indent = -1) const;

 private:
  void write(std::string& out, int indent, int depth) const;

  Kind kind_ = Kind::Null;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::string s_;
  std::vector<Json> items_;
  std::vector<std::pair<std::string, Json>> members_;
};

std::string json_escape(const std::string& s);

}  // namespace ds
