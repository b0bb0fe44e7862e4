#include "core/bpe_tokenizer.h"

#include "core/files.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"  // FileError

namespace ds {

namespace {
// Tables stay at most 70% full, so a probe rarely goes past its first slot.
size_t table_size(size_t n) {
  size_t cap = 16;
  while (cap * 7 < n * 10) cap *= 2;
  return cap;
}
}  // namespace

void Vocab::reserve(size_t n) {
  entries_.reserve(n);
  const size_t cap = table_size(n);
  if (cap <= slots_.size()) return;
  slots_.assign(cap, 0);
  mask_ = cap - 1;
  for (size_t e = 0; e < entries_.size(); ++e) {
    size_t i = entries_[e].hash & mask_;
    while (slots_[i]) i = (i + 1) & mask_;
    slots_[i] = static_cast<uint32_t>(e + 1);
  }
}

void Vocab::set(std::string_view token, int64_t id) {
  if (table_size(entries_.size() + 1) > slots_.size()) reserve(std::max<size_t>(16, 2 * entries_.size()));
  const uint64_t h = std::hash<std::string_view>{}(token);
  size_t i = h & mask_;
  for (; slots_[i]; i = (i + 1) & mask_) {
    Entry& e = entries_[slots_[i] - 1];
    if (e.hash == h && e.len == token.size() && chars_.compare(e.at, e.len, token) == 0) {
      e.id = static_cast<int32_t>(id);
      return;
    }
  }
  entries_.push_back({h, chars_.size(), static_cast<uint32_t>(token.size()), static_cast<int32_t>(id)});
  chars_.append(token);
  slots_[i] = static_cast<uint32_t>(entries_.size());
}

int64_t Vocab::find(std::string_view token) const {
  if (slots_.empty()) return -1;
  const uint64_t h = std::hash<std::string_view>{}(token);
  for (size_t i = h & mask_; slots_[i]; i = (i + 1) & mask_) {
    const Entry& e = entries_[slots_[i] - 1];
    if (e.hash == h && e.len == token.size() && std::memcmp(chars_.data() + e.at, token.data(), e.len) == 0) return e.id;
  }
  return -1;
}

void MergeTable::reserve(size_t n) {
  const size_t cap = table_size(n);
  if (cap <= slots_.size()) return;
  std::vector<Slot> old;
  old.swap(slots_);
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64;
  for (size_t c = cap; c > 1; c /= 2) --shift_;
  size_ = 0;
  for (const Slot& s : old) {
    if (s.key != kEmpty) insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key & 0xFFFFFFFFu), s.rank, s.id);
  }
}

bool MergeTable::insert(int32_t left, int32_t right, int32_t rank, int32_t id) {
  if (table_size(size_ + 1) > slots_.size()) reserve(std::max<size_t>(16, 2 * size_));
  const uint64_t key = pack(left, right);
  for (size_t i = hash(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) return false;
    if (s.key == kEmpty) {
      s = Slot{key, rank, id};
      ++size_;
      return true;
    }
  }
}

namespace {

using njson = nlohmann::json;

struct CodeRange {
  uint32_t lo, hi;
};
#include "core/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodeRange (&r)[N], uint32_t cp) {
  const CodeRange* it = std::upper_bound(r, r + N, cp, [](uint32_t c, const CodeRange& x) { return c < x.lo; });
  return it != r && cp <= (it - 1)->hi;
}

bool is_letter(uint32_t cp) { return in_ranges(kLetterRanges, cp); }
bool is_number(uint32_t cp) { return in_ranges(kNumberRanges, cp); }
// \s as the regex engines behind `tokenizers` define it: Unicode White_Space.
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// A character's class for the two regexes: \p{L}, \p{N}, \s (with [\r\n] marked too), or none of
// them ([^\s\p{L}\p{N}]).
enum : uint8_t { kLetter = 1, kNumber = 2, kSpace = 4, kNewline = 8, kOther = 16 };

uint8_t classify_slow(uint32_t cp) {
  if (cp == '\r' || cp == '\n') return kSpace | kNewline;
  if (is_space(cp)) return kSpace;
  if (is_letter(cp)) return kLetter;
  if (is_number(cp)) return kNumber;
  return kOther;
}

struct AsciiClasses {
  uint8_t c[128];
  AsciiClasses() {
    for (uint32_t cp = 0; cp < 128; ++cp) c[cp] = classify_slow(cp);
  }
};
const AsciiClasses kAscii;

inline uint8_t classify(uint32_t cp) { return cp < 128 ? kAscii.c[cp] : classify_slow(cp); }

struct Ch {
  uint32_t cp;
  uint32_t len;  // bytes
  uint8_t cls;
};

// The character at byte i (< s.size()). A byte that starts no valid sequence stands for itself, as
// a code point outside Unicode (so an "other").
inline Ch char_at(std::string_view s, size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  if (b < 0x80) return {b, 1, kAscii.c[b]};
  const uint32_t len = (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
  uint32_t cp = len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
  bool ok = len > 0 && i + len <= s.size();
  for (size_t k = 1; ok && k < len; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    ok = (c >> 6) == 2;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (!ok) return {0xFFFD0000u | b, 1, kOther};
  return {cp, len, cp > 0x10FFFF ? static_cast<uint8_t>(kOther) : classify(cp)};
}

struct Char {
  uint32_t cp;
  size_t at, len;  // bytes in the text
};

// UTF-8 to code points, with char_at's rule for invalid bytes.
std::vector<Char> decode_utf8(std::string_view s) {
  std::vector<Char> out;
  for (size_t i = 0; i < s.size();) {
    const Ch c = char_at(s, i);
    out.push_back({c.cp, i, c.len});
    i += c.len;
  }
  return out;
}

std::string encode_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes take
// code points 256.. in order, so every byte is a visible character and merges never see spaces.
struct ByteMap {
  std::string to_char[256];
  std::unordered_map<uint32_t, unsigned char> to_byte;
  ByteMap() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next++;
      to_char[b] = encode_utf8(cp);
      to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// The pre-tokenizers work on the text's bytes: each matcher takes the byte where a piece starts
// and returns the byte where it ends.

// 's 't 're 've 'm 'll 'd at i: the match's end, or i.
size_t contraction(std::string_view s, size_t i, bool any_case) {
  if (s[i] != '\'') return i;
  for (const char* suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
    size_t at = i + 1, k = 0;
    while (suffix[k] && at < s.size()) {
      const Ch c = char_at(s, at);
      uint32_t cp = c.cp;
      if (any_case) {
        if (cp == 0x17F) cp = 's';  // LATIN SMALL LETTER LONG S case-folds to s in regex engines
        if (cp >= 'A' && cp <= 'Z') cp += 32;
      }
      if (cp != static_cast<uint32_t>(suffix[k])) break;
      at += c.len;
      ++k;
    }
    if (!suffix[k]) return at;
  }
  return i;
}

// From byte i while the characters are of a class in mask, at most max of them.
size_t run(std::string_view s, size_t i, uint8_t mask, size_t max = std::numeric_limits<size_t>::max()) {
  for (size_t n = 0; i < s.size() && n < max; ++n) {
    const Ch c = char_at(s, i);
    if (!(c.cls & mask)) break;
    i += c.len;
  }
  return i;
}

// The whitespace alternatives common to both regexes, \s+(?!\S)|\s+: a run of whitespace, less
// its last character when a non-space follows and the run has more than one.
size_t trailing_space(std::string_view s, size_t i) {
  size_t n = 0, last = i;
  while (i < s.size()) {
    const Ch c = char_at(s, i);
    if (!(c.cls & kSpace)) break;
    last = i;
    i += c.len;
    ++n;
  }
  return (i < s.size() && n > 1) ? last : i;
}

size_t match_gpt2(std::string_view s, size_t i) {
  if (size_t e = contraction(s, i, false); e != i) return e;
  const size_t j = i + (s[i] == ' ' ? 1 : 0);
  if (j < s.size()) {
    const uint8_t cls = char_at(s, j).cls;
    if (cls & (kLetter | kNumber | kOther)) return run(s, j, cls);  // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+'
  }
  return trailing_space(s, i);
}

size_t match_llama3(std::string_view s, size_t i) {
  if (size_t e = contraction(s, i, true); e != i) return e;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const Ch first = char_at(s, i);
  const size_t pre = (first.cls & (kNewline | kLetter | kNumber)) ? 0 : first.len;
  if (i + pre < s.size() && (char_at(s, i + pre).cls & kLetter)) return run(s, i + pre, kLetter);
  if (first.cls & kNumber) return run(s, i, kNumber, 3);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t j = i + (first.cp == ' ' ? 1 : 0);
  if (j < s.size() && (char_at(s, j).cls & kOther)) return run(s, run(s, j, kOther), kNewline);
  // \s*[\r\n]+ : through the last newline of the whitespace run.
  size_t newline_end = i;
  for (size_t k = i; k < s.size();) {
    const Ch c = char_at(s, k);
    if (!(c.cls & kSpace)) break;
    k += c.len;
    if (c.cls & kNewline) newline_end = k;
  }
  if (newline_end != i) return newline_end;
  return trailing_space(s, i);
}

// Calls piece(from, to) for each piece of s, in order.
template <class F>
void split_pieces(PreTokenizer pre, std::string_view s, F&& piece) {
  size_t i = 0;
  while (i < s.size()) {
    const size_t e = pre == PreTokenizer::Gpt2 ? match_gpt2(s, i) : match_llama3(s, i);
    piece(i, e);
    i = e;
  }
}

// BPE on one piece, on ids: symbols start as the bytes' tokens; the lowest-ranked merge among
// adjacent pairs applies to every occurrence, left to right, and again until none applies (GPT-2's
// encoder.py, which `tokenizers` matches). The pairs wait in a min-heap by (rank, position), so a
// piece of n bytes costs O(n log n): a round pops every pair of the lowest rank, in position
// order, merges those still current, then pushes the pairs the merged symbols make with their
// neighbours.
struct MergeScratch {
  std::vector<int32_t> id, next, prev;
  std::vector<uint64_t> heap;  // rank << 32 | position
  std::vector<int32_t> round, merged;
  std::string whole;
};

void bpe_piece(const BpeTokenizer& tok, std::string_view piece, std::vector<int32_t>& out, MergeScratch& m) {
  if (tok.ignore_merges) {
    const ByteMap& bm = byte_map();
    m.whole.clear();
    for (unsigned char b : piece) m.whole += bm.to_char[b];
    const int64_t id = tok.vocab.find(m.whole);
    if (id >= 0) {
      out.push_back(static_cast<int32_t>(id));
      return;
    }
  }
  const int32_t n = static_cast<int32_t>(piece.size());
  m.id.resize(n);
  m.next.resize(n);
  m.prev.resize(n);
  for (int32_t k = 0; k < n; ++k) {
    m.id[k] = tok.byte_id[static_cast<unsigned char>(piece[k])];
    m.next[k] = k + 1 < n ? k + 1 : -1;
    m.prev[k] = k - 1;
  }
  auto later = std::greater<uint64_t>();
  m.heap.clear();
  auto push = [&](int32_t left) {
    const MergeTable::Slot* slot = tok.merges.find(m.id[left], m.id[m.next[left]]);
    if (!slot) return;
    m.heap.push_back(static_cast<uint64_t>(slot->rank) << 32 | static_cast<uint32_t>(left));
    std::push_heap(m.heap.begin(), m.heap.end(), later);
  };
  for (int32_t k = 0; k + 1 < n; ++k) push(k);
  while (!m.heap.empty()) {
    const int32_t rank = static_cast<int32_t>(m.heap.front() >> 32);
    m.round.clear();
    while (!m.heap.empty() && static_cast<int32_t>(m.heap.front() >> 32) == rank) {
      std::pop_heap(m.heap.begin(), m.heap.end(), later);
      m.round.push_back(static_cast<int32_t>(m.heap.back() & 0xFFFFFFFFu));
      m.heap.pop_back();
    }
    m.merged.clear();
    for (int32_t left : m.round) {  // in position order
      if (m.id[left] < 0) continue;  // merged into its left neighbour earlier in this round
      const int32_t right = m.next[left];
      if (right < 0) continue;
      // A rank stands for one pair; a pair that changed since it was pushed has another rank.
      const MergeTable::Slot* slot = tok.merges.find(m.id[left], m.id[right]);
      if (!slot || slot->rank != rank) continue;
      m.id[left] = slot->id;
      m.id[right] = -1;
      m.next[left] = m.next[right];
      if (m.next[right] >= 0) m.prev[m.next[right]] = left;
      m.merged.push_back(left);
    }
    for (int32_t k : m.merged) {
      if (m.prev[k] >= 0) push(m.prev[k]);
      if (m.next[k] >= 0) push(k);
    }
  }
  for (int32_t k = 0; k >= 0; k = m.next[k]) out.push_back(m.id[k]);
}

// ---- reading tokenizer.json ----

struct Reader {
  const std::string& path;

  [[noreturn]] void fail(const std::string& key, const std::string& why) const {
    throw FileError(path + ": " + key + ": " + why);
  }
  // A member of an object, or null when absent (or when j is not an object).
  static const njson* member(const njson& j, const char* name) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(name);
    return it == j.end() ? nullptr : &*it;
  }
  const std::string& string(const njson& j, const std::string& key) const {
    if (!j.is_string()) fail(key, "expected a string, not " + std::string(j.type_name()));
    return j.get_ref<const std::string&>();
  }
  int64_t integer(const njson& j, const std::string& key) const {
    if (!j.is_number_integer()) fail(key, "expected an integer, not " + std::string(j.type_name()));
    if (j.is_number_unsigned() && j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail(key, "id " + j.dump() + " out of range");
    }
    return j.get<int64_t>();
  }
  // An optional flag: absent or null is the default.
  bool flag(const njson& obj, const char* name, const std::string& key, bool dflt = false) const {
    const njson* v = member(obj, name);
    if (!v || v->is_null()) return dflt;
    if (!v->is_boolean()) fail(key, "expected true or false, not " + std::string(v->type_name()));
    return v->get<bool>();
  }
};

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }


// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string json_message(const std::exception& e) {
  const std::string what = e.what();
  const size_t at = what.find("] ");
  return what.rfind("[json.exception.", 0) == 0 && at != std::string::npos ? what.substr(at + 2) : what;
}

// model.vocab's entries and model.merges' items, taken out of the parse: as a DOM (a std::map of
// 128K entries, an array of 280K strings for LLaMA 3) they cost more to build and to free than all
// the rest of the load. The DOM keeps model.vocab as {} and model.merges as [], so their types are
// still checked there.
struct Captured {
  std::vector<std::pair<std::string, njson>> vocab;  // in the file's order
  std::vector<njson> merges;
};

njson parse_capturing(const std::string& bytes, Captured& c) {
  using E = njson::parse_event_t;
  enum Kind : uint8_t { kNone, kObject, kArray };
  Kind kind[5] = {};       // the container whose members are at depth d (root's: 1)
  std::string key1, key2;  // the last key at depth 1 and at depth 2
  std::string pending;     // a vocab entry's token, until its value
  auto in_model = [&] { return kind[1] == kObject && key1 == "model" && kind[2] == kObject; };
  auto in_vocab = [&](int depth) { return depth == 3 && kind[3] == kObject && key2 == "vocab" && in_model(); };
  auto in_merges = [&](int depth) { return depth == 3 && kind[3] == kArray && key2 == "merges" && in_model(); };
  return njson::parse(bytes, [&](int depth, E event, njson& parsed) -> bool {
    switch (event) {
      case E::key:
        if (in_vocab(depth)) {
          pending = std::move(parsed.get_ref<std::string&>());
          return false;  // not into the DOM; the value still comes to this callback
        }
        if (depth == 1) key1 = parsed.get_ref<const std::string&>();
        if (depth == 2) key2 = parsed.get_ref<const std::string&>();
        return true;
      case E::value:
        if (in_vocab(depth)) {
          c.vocab.emplace_back(std::move(pending), std::move(parsed));
          return true;  // (its key was dropped, so it is dropped too)
        }
        if (in_merges(depth)) {
          c.merges.push_back(std::move(parsed));
          return false;
        }
        return true;
      case E::object_start:
      case E::array_start:
        // A list or object as a vocab value: kept for its error, as an empty one of its type.
        if (in_vocab(depth)) c.vocab.emplace_back(std::move(pending), event == E::object_start ? njson::object() : njson::array());
        if (depth < 4) kind[depth + 1] = event == E::object_start ? kObject : kArray;
        return true;
      case E::object_end:
      case E::array_end:
        if (in_merges(depth)) {
          c.merges.push_back(std::move(parsed));  // ["left", "right"], or an object for its error
          return false;
        }
        return true;
    }
    return true;
  });
}

// Which of the two regexes the pre_tokenizer section asks for (ByteLevel with its own regex, or
// a Sequence of a Split by LLaMA 3's regex and a ByteLevel without one).
PreTokenizer read_pre_tokenizer(const njson* p, const Reader& r, bool& add_prefix_space) {
  auto fail = [&](const std::string& why) -> PreTokenizer {
    r.fail("pre_tokenizer", why + " (DeltaShard reads GPT-2 and LLaMA 3 byte-level BPE)");
  };
  if (!p || !p->is_object() || !Reader::member(*p, "type")) return fail("missing");
  const std::string& type = r.string(*Reader::member(*p, "type"), "pre_tokenizer.type");
  if (type == "ByteLevel") {
    add_prefix_space = r.flag(*p, "add_prefix_space", "pre_tokenizer.add_prefix_space");
    if (!r.flag(*p, "use_regex", "pre_tokenizer.use_regex", true)) return fail("ByteLevel without its regex");
    return PreTokenizer::Gpt2;
  }
  const njson* seq = Reader::member(*p, "pretokenizers");
  if (type != "Sequence" || !seq || !seq->is_array()) return fail("type '" + type + "' is not supported");
  bool split = false, byte_level = false;
  for (size_t i = 0; i < seq->size(); ++i) {
    const njson& s = (*seq)[i];
    const std::string key = "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]";
    const njson* t = Reader::member(s, "type");
    const std::string type_i = t ? r.string(*t, key + ".type") : "";
    if (type_i == "Split") {
      const njson* pattern = Reader::member(s, "pattern");
      const njson* regex = pattern ? Reader::member(*pattern, "Regex") : nullptr;
      const std::string re = regex ? r.string(*regex, key + ".pattern.Regex") : "";
      if (re.find("\\p{N}{1,3}") == std::string::npos) return fail("Split regex '" + re + "' is not LLaMA 3's");
      split = true;
    } else if (type_i == "ByteLevel") {
      byte_level = true;
      add_prefix_space = r.flag(s, "add_prefix_space", key + ".add_prefix_space");
    } else {
      return fail("'" + type_i + "' in the sequence is not supported");
    }
  }
  if (!split || !byte_level) return fail("a sequence needs a Split and a ByteLevel");
  return PreTokenizer::Llama3;
}

// TemplateProcessing's "single" (top level or inside a Sequence): the special tokens before and
// after the sequence "A". Other processors (GPT-2's ByteLevel) add nothing.
void read_template(const njson* p, const std::string& key, const Reader& r, BpeTokenizer& tok) {
  if (!p || !p->is_object() || !Reader::member(*p, "type")) return;
  const std::string& type = r.string(*Reader::member(*p, "type"), key + ".type");
  const njson* processors = Reader::member(*p, "processors");
  if (type == "Sequence" && processors && processors->is_array()) {
    for (size_t i = 0; i < processors->size(); ++i) {
      read_template(&(*processors)[i], key + ".processors[" + std::to_string(i) + "]", r, tok);
    }
    return;
  }
  if (type != "TemplateProcessing") return;
  const njson* single = Reader::member(*p, "single");
  if (!single || !single->is_array()) r.fail(key + ".single", "not a list");
  bool seen_sequence = false;
  for (const njson& item : *single) {
    if (Reader::member(item, "Sequence")) {
      seen_sequence = true;
      continue;
    }
    const njson* special = Reader::member(item, "SpecialToken");
    const njson* name_j = special ? Reader::member(*special, "id") : nullptr;
    if (!name_j) r.fail(key + ".single", "items must be Sequence or SpecialToken");
    const std::string& name = r.string(*name_j, key + ".single[].SpecialToken.id");
    const njson* specials = Reader::member(*p, "special_tokens");
    const njson* entry = specials ? Reader::member(*specials, name.c_str()) : nullptr;
    const njson* ids = entry ? Reader::member(*entry, "ids") : nullptr;
    if (!ids || !ids->is_array()) r.fail(key + ".special_tokens", "no ids for '" + name + "'");
    for (size_t i = 0; i < ids->size(); ++i) {
      const int64_t id = r.integer((*ids)[i], key + ".special_tokens['" + name + "'].ids[" + std::to_string(i) + "]");
      (seen_sequence ? tok.template_suffix : tok.template_prefix).push_back(id);
    }
  }
}

BpeTokenizer parse_tokenizer(const njson& root, Captured& captured, const std::string& path) {
  const Reader r{path};
  if (!root.is_object()) throw FileError(path + ": not a JSON object");
  BpeTokenizer tok;
  tok.path = path;
  const njson* model = Reader::member(root, "model");
  if (!model) r.fail("model", "missing");
  if (!model->is_object()) r.fail("model", "expected an object, not " + std::string(model->type_name()));
  const njson* type = Reader::member(*model, "type");
  const njson* vocab = Reader::member(*model, "vocab");
  const njson* merges = Reader::member(*model, "merges");
  if (type && !type->is_null()) {
    const std::string& t = r.string(*type, "model.type");
    if (t != "BPE") r.fail("model.type", "'" + t + "' is not BPE");
  } else if (!vocab || !merges) {
    // Hub files from before `tokenizers` wrote the type are BPE when they have both.
    r.fail("model.type", "missing (is this a tokenizer.json?)");
  }
  if (r.flag(*model, "byte_fallback", "model.byte_fallback")) {
    r.fail("model.byte_fallback", "SentencePiece-style BPE (LLaMA 1/2) is not supported; byte-level only");
  }
  tok.ignore_merges = r.flag(*model, "ignore_merges", "model.ignore_merges");
  tok.pre = read_pre_tokenizer(Reader::member(root, "pre_tokenizer"), r, tok.add_prefix_space);

  auto add_id = [&](int64_t id, auto key) {  // key() names the place, only for an error
    if (id < 0 || id > (1 << 24)) r.fail(key(), "id " + std::to_string(id) + " out of range");
    if (static_cast<int64_t>(tok.id_to_token.size()) <= id) {
      tok.id_to_token.resize(id + 1);
      tok.is_added.resize(id + 1, false);
    }
  };
  if (!vocab || !vocab->is_object()) r.fail("model.vocab", "not an object");
  tok.vocab.reserve(captured.vocab.size());
  tok.id_to_token.reserve(captured.vocab.size() + 1024);
  for (auto& entry : captured.vocab) {
    std::string& token = entry.first;
    const njson& value = entry.second;
    auto key = [&] { return "model.vocab[" + in_quotes(token) + "]"; };
    const int64_t id = value.is_number_unsigned() && value.get<uint64_t>() <= (1u << 24) ? value.get<int64_t>() : r.integer(value, key());
    add_id(id, key);
    tok.vocab.set(token, id);
    tok.id_to_token[id] = std::move(token);
  }
  if (!merges || !merges->is_array()) r.fail("model.merges", "not a list");
  tok.merges.reserve(captured.merges.size());
  std::string joined;
  int64_t rank = 0;
  for (const njson& m : captured.merges) {
    auto key = [&] { return "model.merges[" + std::to_string(rank) + "]"; };
    // "left right" (tokenizers < 0.20) or ["left", "right"].
    std::string_view left, right;
    if (m.is_string()) {
      const std::string_view s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) r.fail(key(), "'" + std::string(s) + "' is not a pair");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get_ref<const std::string&>();
      right = m[1].get_ref<const std::string&>();
    } else {
      r.fail(key(), "expected a string or a pair of strings, not " + std::string(m.type_name()));
    }
    joined.assign(left).append(right);
    const int64_t l = tok.vocab.find(left), rt = tok.vocab.find(right), j = tok.vocab.find(joined);
    if (l < 0 || rt < 0 || j < 0) {
      r.fail(key(), "'" + std::string(left) + " " + std::string(right) + "' merges tokens that are not in model.vocab");
    }
    tok.merges.insert(static_cast<int32_t>(l), static_cast<int32_t>(rt), static_cast<int32_t>(rank), static_cast<int32_t>(j));
    ++rank;
  }
  if (const njson* added = Reader::member(root, "added_tokens"); added && !added->is_null()) {
    if (!added->is_array()) r.fail("added_tokens", "not a list");
    for (size_t i = 0; i < added->size(); ++i) {
      const njson& a = (*added)[i];
      const std::string key = "added_tokens[" + std::to_string(i) + "]";
      const njson* content_j = Reader::member(a, "content");
      const njson* id_j = Reader::member(a, "id");
      if (!content_j || !id_j) r.fail(key, "needs content and id");
      const std::string& content = r.string(*content_j, key + ".content");
      const int64_t id = r.integer(*id_j, key + ".id");
      if (content.empty()) r.fail("added_tokens", "id " + std::to_string(id) + " has empty content");
      add_id(id, [&] { return key + ".id"; });
      tok.id_to_token[id] = content;
      tok.is_added[id] = true;
      tok.added.emplace_back(content, id);
    }
  }
  read_template(Reader::member(root, "post_processor"), "post_processor", r, tok);
  for (const auto* ids : {&tok.template_prefix, &tok.template_suffix}) {
    for (int64_t id : *ids) {
      if (id < 0 || id >= tok.vocab_size()) r.fail("post_processor", "id " + std::to_string(id) + " is not in the vocabulary");
    }
  }
  if (tok.vocab.empty()) r.fail("model.vocab", "empty");
  // Every byte must have a token, or some text could not be encoded.
  for (int b = 0; b < 256; ++b) {
    const std::string& c = byte_map().to_char[b];
    const int64_t id = tok.vocab.find(c);
    if (id < 0) r.fail("model.vocab", "no token for the byte character '" + c + "'; not a byte-level vocabulary");
    tok.byte_id[b] = static_cast<int32_t>(id);
  }
  std::stable_sort(tok.added.begin(), tok.added.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return tok;
}

}  // namespace

std::vector<int64_t> add_special_tokens(const BpeTokenizer& tok, std::vector<int64_t> ids) {
  ids.insert(ids.begin(), tok.template_prefix.begin(), tok.template_prefix.end());
  ids.insert(ids.end(), tok.template_suffix.begin(), tok.template_suffix.end());
  return ids;
}

std::vector<std::string> pretokenize(PreTokenizer pre, const std::string& text) {
  std::vector<std::string> out;
  split_pieces(pre, text, [&](size_t from, size_t to) { out.emplace_back(text, from, to - from); });
  return out;
}

BpeTokenizer read_bpe_tokenizer(const std::string& path) {
  const std::string bytes = read_file(path);  // names a directory, FIFO or missing file
  njson root;
  Captured captured;
  try {
    root = parse_capturing(bytes, captured);
  } catch (const njson::parse_error& e) {
    throw FileError(path + ": not valid JSON at byte " + std::to_string(e.byte) + ": " + json_message(e));
  }
  try {
    return parse_tokenizer(root, captured, path);
  } catch (const njson::exception& e) {  // a value of a type the checks above did not expect
    throw FileError(path + ": " + json_message(e));
  }
}

std::vector<int64_t> bpe_encode(const BpeTokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3);
  // Text repeats its words: each distinct piece is merged once. Keys are views into the text (or
  // into `prefixed`, which lives as long).
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> seen;  // piece -> ids in `cached`
  std::vector<int32_t> cached;
  std::deque<std::string> prefixed;
  MergeScratch scratch;
  auto encode_plain = [&](std::string_view s) {
    if (s.empty()) return;
    if (tok.add_prefix_space && s[0] != ' ') s = prefixed.emplace_back(" " + std::string(s));
    split_pieces(tok.pre, s, [&](size_t from, size_t to) {
      const std::string_view piece = s.substr(from, to - from);
      auto it = seen.find(piece);
      if (it == seen.end()) {
        const auto at = static_cast<uint32_t>(cached.size());
        bpe_piece(tok, piece, cached, scratch);
        it = seen.emplace(piece, std::make_pair(at, static_cast<uint32_t>(cached.size()) - at)).first;
      }
      const int32_t* p = cached.data() + it->second.first;
      ids.insert(ids.end(), p, p + it->second.second);
    });
  };
  // Added tokens (<|endoftext|>, <|begin_of_text|>, ...) are cut out first; at one position the
  // longest wins. Only bytes that start one are looked at.
  bool starts[256] = {};
  for (const auto& a : tok.added) starts[static_cast<unsigned char>(a.first[0])] = true;
  const std::string_view all(text);
  size_t from = 0, i = 0;
  while (i < text.size()) {
    const std::pair<std::string, int64_t>* hit = nullptr;
    if (starts[static_cast<unsigned char>(text[i])]) {
      for (const auto& a : tok.added) {
        if (text.compare(i, a.first.size(), a.first) == 0) {
          hit = &a;
          break;
        }
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(all.substr(from, i - from));
    ids.push_back(hit->second);
    i += hit->first.size();
    from = i;
  }
  encode_plain(all.substr(from));
  return ids;
}

std::string bpe_decode(const BpeTokenizer& tok, const std::vector<int64_t>& ids) {
  const ByteMap& bm = byte_map();
  std::string out;
  for (int64_t id : ids) {
    if (id < 0 || id >= tok.vocab_size() || tok.id_to_token[id].empty()) continue;
    const std::string& t = tok.id_to_token[id];
    if (tok.is_added[id]) {
      out += t;
      continue;
    }
    for (const Char& c : decode_utf8(t)) {
      auto it = bm.to_byte.find(c.cp);
      if (it != bm.to_byte.end()) {
        out += static_cast<char>(it->second);
      } else {
        out += t.substr(c.at, c.len);
      }
    }
  }
  return out;
}

}  // namespace ds
