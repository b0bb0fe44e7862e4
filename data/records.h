// Instruction records from JSONL files, one JSON object a line, in three schemas (prompt/completion,
// Alpaca, chat), read into one shape: a list of turns with roles. A bad record stops the run with
// "file:line: field: what"; a record whose response is empty is skipped and counted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config_fields.h"

namespace ds {

enum class Schema { Auto, PromptCompletion, Alpaca, Chat };
DS_ENUM_NAMES(Schema, {Schema::Auto, "auto"}, {Schema::PromptCompletion, "prompt_completion"},
              {Schema::Alpaca, "alpaca"}, {Schema::Chat, "chat"});

enum class Role { System, User, Assistant };

struct Turn {
  Role role = Role::User;
  std::string content;
};

// prompt/completion: user + assistant. Alpaca: user (instruction), `input` beside it, assistant
// (output). Chat: the messages as given.
struct Record {
  std::vector<Turn> turns;
  std::string input;  // Alpaca's input ("" elsewhere): the alpaca template gives it a section
  std::string where;  // "file:line"
};

struct RecordCounts {
  int64_t lines = 0;          // records read (blank lines are not records)
  int64_t skipped_empty = 0;  // records whose every response is empty
};

const char* role_name(Role r);

// Byte offset of the first byte that is not part of well-formed UTF-8, or -1.
int64_t invalid_utf8_at(const std::string& s);

// Reads every record of `path`. `schema` Auto is replaced by the schema of the first record.
// FileError "path:line: field: what" for invalid JSON or UTF-8, a missing field, a value of the
// wrong type, an unknown role, a chat without an assistant turn.
std::vector<Record> read_jsonl(const std::string& path, Schema& schema, RecordCounts& counts);

// One line's record (exposed for tests); an empty optional-like result: turns empty means skipped.
Record parse_record(const std::string& line, const std::string& where, Schema& schema);

}  // namespace ds
