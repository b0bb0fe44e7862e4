#include "data/records.h"

#include <fstream>

#include "core/errors.h"
#include "core/json.h"

namespace ds {

const char* role_name(Role r) {
  switch (r) {
    case Role::System: return "system";
    case Role::User: return "user";
    case Role::Assistant: return "assistant";
  }
  return "?";
}

int64_t invalid_utf8_at(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  for (size_t i = 0; i < n;) {
    const unsigned c = p[i];
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return static_cast<int64_t>(i);
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return static_cast<int64_t>(i);
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return static_cast<int64_t>(i);
    }
    i += len;
  }
  return -1;
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& field, const std::string& what) {
  throw FileError(where + ": " + (field.empty() ? "" : field + ": ") + what);
}

std::string need_string(const Json& obj, const char* key, const std::string& where, const std::string& prefix = "") {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) bad(where, prefix + key, "is missing");
  if (!it->is_string()) bad(where, prefix + key, std::string("expected a string, got ") + json_type_name(*it));
  return it->get<std::string>();
}

Schema detect(const Json& obj, const std::string& where) {
  if (obj.contains("messages")) return Schema::Chat;
  if (obj.contains("instruction")) return Schema::Alpaca;
  if (obj.contains("prompt") || obj.contains("completion")) return Schema::PromptCompletion;
  bad(where, "", "data.schema auto: the first record has none of messages (chat), instruction (alpaca) or "
                 "prompt/completion");
}

}  // namespace

Record parse_record(const std::string& line, const std::string& where, Schema& schema) {
  const int64_t at = invalid_utf8_at(line);
  if (at >= 0) bad(where, "", "invalid UTF-8 at byte " + std::to_string(at + 1) + " of the line");
  Json j;
  try {
    j = Json::parse(line);
  } catch (const Json::parse_error& e) {
    const std::string what = e.what();
    bad(where, "", "not valid JSON at byte " + std::to_string(e.byte) + ": " + what.substr(what.rfind(": ") + 2));
  }
  if (!j.is_object()) bad(where, "", std::string("expected a JSON object, got ") + json_type_name(j));
  if (schema == Schema::Auto) schema = detect(j, where);
  Record r;
  r.where = where;
  switch (schema) {
    case Schema::PromptCompletion:
      r.turns = {{Role::User, need_string(j, "prompt", where)}, {Role::Assistant, need_string(j, "completion", where)}};
      break;
    case Schema::Alpaca: {
      r.turns = {{Role::User, need_string(j, "instruction", where)}, {Role::Assistant, need_string(j, "output", where)}};
      if (j.contains("input") && !j["input"].is_null()) r.input = need_string(j, "input", where);
      break;
    }
    case Schema::Chat: {
      auto it = j.find("messages");
      if (it == j.end() || it->is_null()) bad(where, "messages", "is missing");
      if (!it->is_array()) bad(where, "messages", std::string("expected a list, got ") + json_type_name(*it));
      if (it->empty()) bad(where, "messages", "is empty");
      for (size_t i = 0; i < it->size(); ++i) {
        const Json& m = (*it)[i];
        const std::string prefix = "messages[" + std::to_string(i) + "].";
        if (!m.is_object()) bad(where, prefix.substr(0, prefix.size() - 1), std::string("expected an object, got ") + json_type_name(m));
        const std::string role = need_string(m, "role", where, prefix);
        Turn t;
        if (role == "system") {
          t.role = Role::System;
          if (i != 0) bad(where, prefix + "role", "system only as the first message");
        } else if (role == "user") {
          t.role = Role::User;
        } else if (role == "assistant") {
          t.role = Role::Assistant;
        } else {
          bad(where, prefix + "role", "expected system, user or assistant, got '" + role + "'");
        }
        t.content = need_string(m, "content", where, prefix);
        r.turns.push_back(std::move(t));
      }
      bool any = false;
      for (const auto& t : r.turns) any = any || t.role == Role::Assistant;
      if (!any) bad(where, "messages", "no assistant message (nothing to learn)");
      break;
    }
    case Schema::Auto: break;
  }
  bool response = false;
  for (const auto& t : r.turns) response = response || (t.role == Role::Assistant && !t.content.empty());
  if (!response) r.turns.clear();  // skipped and counted by the caller
  return r;
}

std::vector<Record> read_jsonl(const std::string& path, Schema& schema, RecordCounts& counts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path + ": cannot open");
  std::vector<Record> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    ++counts.lines;
    Record r = parse_record(line, path + ":" + std::to_string(n), schema);
    if (r.turns.empty()) {
      ++counts.skipped_empty;
      continue;
    }
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace ds
