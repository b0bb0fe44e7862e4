#include "core/config_fields.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace ds {

std::string join_choices(const std::vector<std::string>& choices, const char* sep) {
  std::string out;
  for (const auto& c : choices) out += (out.empty() ? "" : sep) + c;
  return out;
}

std::string exact_number(double x) {
  if (std::isnan(x)) return ".nan";
  if (std::isinf(x)) return x > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  std::string s(buf, r.ptr);
  // Keep a number that is integral readable as a float too ("1" reads back as 1.0 anyway).
  return s;
}


JsonFieldReader::JsonFieldReader(const Json& object, std::string path, std::map<std::string, std::string> rename)
    : j_(object), path_(std::move(path)), rename_(std::move(rename)) {
  if (!j_.is_object()) throw FileError(path_ + ": expected a JSON object");
}

std::string JsonFieldReader::file_key(const char* key) const {
  auto it = rename_.find(key);
  return it != rename_.end() ? it->second : key;
}

void JsonFieldReader::fail(const char* key, const std::string& what) const {
  throw FileError(path_ + ": " + file_key(key) + ": " + what);
}

const Json* JsonFieldReader::find(const char* key) {
  if (!rename_.empty() && !rename_.count(key)) return nullptr;
  const std::string k = file_key(key);
  seen_.push_back(k);
  auto it = j_.find(k);
  if (it == j_.end() || it->is_null()) return nullptr;
  return &*it;
}

void JsonFieldReader::operator()(const char* key, bool& v) {
  const Json* n = find(key);
  if (!n) return;
  if (!n->is_boolean()) fail(key, std::string("expected true or false, got ") + json_type_name(*n));
  v = n->get<bool>();
}

void JsonFieldReader::operator()(const char* key, int64_t& v, int64_t lo, int64_t hi) {
  const Json* n = find(key);
  if (!n) return;
  if (!n->is_number_integer()) fail(key, std::string("expected an integer, got ") + json_type_name(*n));
  const int64_t x = n->get<int64_t>();
  if (x < lo || x > hi) {
    fail(key, "value " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  v = x;
}

void JsonFieldReader::operator()(const char* key, int& v, int lo, int hi) {
  int64_t x = v;
  (*this)(key, x, lo, hi);
  v = static_cast<int>(x);
}

void JsonFieldReader::operator()(const char* key, double& v, double lo, double hi) {
  const Json* n = find(key);
  if (!n) return;
  if (!n->is_number()) fail(key, std::string("expected a number, got ") + json_type_name(*n));
  const double x = n->get<double>();
  if (!(x >= lo && x <= hi)) {
    std::ostringstream os;
    os << "value " << x << " is out of range [" << lo << ", " << hi << "]";
    fail(key, os.str());
  }
  v = x;
}

void JsonFieldReader::operator()(const char* key, std::string& v) {
  const Json* n = find(key);
  if (!n) return;
  if (!n->is_string()) fail(key, std::string("expected a string, got ") + json_type_name(*n));
  v = n->get<std::string>();
}

void JsonFieldReader::operator()(const char* key, std::vector<std::string>& v, const std::vector<std::string>& choices) {
  const Json* n = find(key);
  if (!n) return;
  if (!n->is_array()) fail(key, std::string("expected a list of names, got ") + json_type_name(*n));
  std::vector<std::string> out;
  for (const auto& item : *n) {
    if (!item.is_string()) fail(key, "expected a list of names");
    const std::string s = item.get<std::string>();
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
      fail(key, "unknown entry '" + s + "' (known: " + join_choices(choices, " ") + ")");
    }
    out.push_back(s);
  }
  v = out;
}

void JsonFieldReader::finish(const std::vector<std::string>& also_known) {
  for (const auto& kv : j_.items()) {
    const std::string& k = kv.key();
    if (std::find(seen_.begin(), seen_.end(), k) == seen_.end() &&
        std::find(also_known.begin(), also_known.end(), k) == also_known.end()) {
      throw FileError(path_ + ": " + k + ": unknown key");
    }
  }
}

}  // namespace ds
