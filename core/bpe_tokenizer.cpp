#include "core/bpe_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/safetensors.h"  // FileError

namespace ds {

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
bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }
// \s as the regex engines behind `tokenizers` define it: Unicode White_Space.
bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}
bool is_other(uint32_t cp) { return !is_space(cp) && !is_letter(cp) && !is_number(cp); }

struct Char {
  uint32_t cp;
  size_t at, len;  // bytes in the text
};

// UTF-8 to code points; a byte that starts no valid sequence stands for itself (as an "other").
std::vector<Char> decode_utf8(const std::string& s) {
  std::vector<Char> out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    uint32_t cp = len == 1 ? b : len == 2 ? b & 0x1F : len == 3 ? b & 0x0F : b & 0x07;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      ok = (c >> 6) == 2;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (!ok) {
      out.push_back({0xFFFD0000u | b, i, 1});  // outside Unicode: classified as "other"
      i += 1;
    } else {
      out.push_back({cp, i, len});
      i += len;
    }
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

// 's 't 're 've 'm 'll 'd at i: the match length in characters, or 0.
size_t contraction(const std::vector<Char>& c, size_t i, bool any_case) {
  if (c[i].cp != '\'') return 0;
  auto lower = [&](size_t k) -> uint32_t {
    if (k >= c.size()) return 0;
    const uint32_t cp = c[k].cp;
    if (!any_case) return cp;
    if (cp == 0x17F) return 's';  // LATIN SMALL LETTER LONG S case-folds to s in regex engines
    return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
  };
  for (const char* suffix : {"s", "t", "re", "ve", "m", "ll", "d"}) {
    size_t k = 0;
    while (suffix[k] && lower(i + 1 + k) == static_cast<uint32_t>(suffix[k])) ++k;
    if (!suffix[k]) return 1 + k;
  }
  return 0;
}

// Characters from i while pred holds, at most max.
template <class Pred>
size_t run(const std::vector<Char>& c, size_t i, Pred pred, size_t max = std::numeric_limits<size_t>::max()) {
  size_t k = i;
  while (k < c.size() && k - i < max && pred(c[k].cp)) ++k;
  return k - i;
}

// The whitespace alternatives common to both regexes, \s+(?!\S)|\s+: a run of whitespace, less
// its last character when a non-space follows and the run has more than one.
size_t trailing_space(const std::vector<Char>& c, size_t i) {
  const size_t n = run(c, i, is_space);
  return (i + n < c.size() && n > 1) ? n - 1 : n;
}

size_t match_gpt2(const std::vector<Char>& c, size_t i) {
  if (size_t n = contraction(c, i, false)) return n;
  const size_t sp = c[i].cp == ' ' ? 1 : 0;
  for (auto cls : {is_letter, is_number, is_other}) {
    if (i + sp < c.size() && cls(c[i + sp].cp)) return sp + run(c, i + sp, cls);
  }
  return trailing_space(c, i);
}

size_t match_llama3(const std::vector<Char>& c, size_t i) {
  if (size_t n = contraction(c, i, true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  const uint32_t first = c[i].cp;
  const size_t pre = (!is_newline(first) && !is_letter(first) && !is_number(first)) ? 1 : 0;
  if (i + pre < c.size() && is_letter(c[i + pre].cp)) return pre + run(c, i + pre, is_letter);
  if (is_number(first)) return run(c, i, is_number, 3);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  const size_t sp = first == ' ' ? 1 : 0;
  if (i + sp < c.size() && is_other(c[i + sp].cp)) {
    const size_t n = sp + run(c, i + sp, is_other);
    return n + run(c, i + n, is_newline);
  }
  // \s*[\r\n]+ : through the last newline of the whitespace run.
  const size_t ws = run(c, i, is_space);
  for (size_t k = ws; k > 0; --k) {
    if (is_newline(c[i + k - 1].cp)) return k;
  }
  return trailing_space(c, i);
}

std::vector<std::string> split_pieces(PreTokenizer pre, const std::string& text) {
  const std::vector<Char> c = decode_utf8(text);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < c.size()) {
    const size_t n = pre == PreTokenizer::Gpt2 ? match_gpt2(c, i) : match_llama3(c, i);
    const size_t from = c[i].at, to = c[i + n - 1].at + c[i + n - 1].len;
    out.push_back(text.substr(from, to - from));
    i += n;
  }
  return out;
}

void bpe_piece(const BpeTokenizer& tok, const std::string& piece, std::vector<int64_t>& ids) {
  const ByteMap& bm = byte_map();
  std::vector<std::string> sym;
  std::string whole;
  for (unsigned char b : piece) {
    sym.push_back(bm.to_char[b]);
    whole += bm.to_char[b];
  }
  if (tok.ignore_merges) {
    auto it = tok.vocab.find(whole);
    if (it != tok.vocab.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  while (sym.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t at = 0;
    for (size_t k = 0; k + 1 < sym.size(); ++k) {
      auto it = tok.merge_rank.find(sym[k] + " " + sym[k + 1]);
      if (it != tok.merge_rank.end() && it->second < best) {
        best = it->second;
        at = k;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    // Merge every occurrence of the best pair, left to right, as GPT-2's encoder does.
    const std::string left = sym[at], right = sym[at + 1];
    std::vector<std::string> merged;
    for (size_t k = 0; k < sym.size(); ++k) {
      if (k + 1 < sym.size() && sym[k] == left && sym[k + 1] == right) {
        merged.push_back(left + right);
        ++k;
      } else {
        merged.push_back(sym[k]);
      }
    }
    sym.swap(merged);
  }
  for (const std::string& s : sym) {
    auto it = tok.vocab.find(s);
    if (it == tok.vocab.end()) throw FileError(tok.path + ": no token for '" + s + "' in model.vocab");
    ids.push_back(it->second);
  }
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

std::string quoted(const std::string& s) { return "'" + s + "'"; }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(path + ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  std::string bytes;
  if (size > 0) {
    bytes.resize(static_cast<size_t>(size));
    in.seekg(0);
    in.read(bytes.data(), size);
    bytes.resize(static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw FileError(path + ": cannot read");
  return bytes;
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
std::string json_message(const std::exception& e) {
  const std::string what = e.what();
  const size_t at = what.find("] ");
  return what.rfind("[json.exception.", 0) == 0 && at != std::string::npos ? what.substr(at + 2) : what;
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

BpeTokenizer parse_tokenizer(const njson& root, const std::string& path) {
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

  auto add_id = [&](const std::string& token, int64_t id, const std::string& key) {
    if (id < 0 || id > (1 << 24)) r.fail(key, "id " + std::to_string(id) + " out of range");
    if (static_cast<int64_t>(tok.id_to_token.size()) <= id) {
      tok.id_to_token.resize(id + 1);
      tok.is_added.resize(id + 1, false);
    }
    tok.id_to_token[id] = token;
  };
  if (!vocab || !vocab->is_object()) r.fail("model.vocab", "not an object");
  tok.vocab.reserve(vocab->size());
  tok.id_to_token.reserve(vocab->size() + 1024);
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const std::string& t = it.key();
    const int64_t id = r.integer(it.value(), "model.vocab[" + quoted(t) + "]");
    tok.vocab[t] = id;
    add_id(t, id, "model.vocab[" + quoted(t) + "]");
  }
  if (!merges || !merges->is_array()) r.fail("model.merges", "not a list");
  tok.merge_rank.reserve(merges->size());
  auto id_of = [&](const std::string& t) -> int64_t {
    auto it = tok.vocab.find(t);
    return it == tok.vocab.end() ? -1 : it->second;
  };
  std::string left, right, joined;
  int64_t rank = 0;
  for (const njson& m : *merges) {
    auto key = [&] { return "model.merges[" + std::to_string(rank) + "]"; };
    // "left right" (tokenizers < 0.20) or ["left", "right"].
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) r.fail(key(), "'" + s + "' is not a pair");
      left.assign(s, 0, sp);
      right.assign(s, sp + 1, std::string::npos);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get_ref<const std::string&>();
      right = m[1].get_ref<const std::string&>();
    } else {
      r.fail(key(), "expected a string or a pair of strings, not " + std::string(m.type_name()));
    }
    joined.assign(left).append(right);
    if (id_of(left) < 0 || id_of(right) < 0 || id_of(joined) < 0) {
      r.fail(key(), "'" + left + " " + right + "' merges tokens that are not in model.vocab");
    }
    tok.merge_rank.emplace(left + " " + right, rank++);
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
      add_id(content, id, "added_tokens");
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
  for (const std::string& c : byte_map().to_char) {
    if (id_of(c) < 0) r.fail("model.vocab", "no token for the byte character '" + c + "'; not a byte-level vocabulary");
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

std::vector<std::string> pretokenize(PreTokenizer pre, const std::string& text) { return split_pieces(pre, text); }

BpeTokenizer read_bpe_tokenizer(const std::string& path) {
  const std::string bytes = read_bytes(path);
  njson root;
  try {
    root = njson::parse(bytes);
  } catch (const njson::parse_error& e) {
    throw FileError(path + ": not valid JSON at byte " + std::to_string(e.byte) + ": " + json_message(e));
  }
  try {
    return parse_tokenizer(root, path);
  } catch (const njson::exception& e) {  // a value of a type the checks above did not expect
    throw FileError(path + ": " + json_message(e));
  }
}

std::vector<int64_t> bpe_encode(const BpeTokenizer& tok, const std::string& text) {
  std::vector<int64_t> ids;
  // Text repeats its words: each distinct piece is merged once.
  std::unordered_map<std::string, std::vector<int64_t>> seen;
  auto encode_plain = [&](std::string s) {
    if (s.empty()) return;
    if (tok.add_prefix_space && s[0] != ' ') s = " " + s;
    for (const std::string& piece : split_pieces(tok.pre, s)) {
      auto it = seen.find(piece);
      if (it == seen.end()) {
        std::vector<int64_t> p;
        bpe_piece(tok, piece, p);
        it = seen.emplace(piece, std::move(p)).first;
      }
      ids.insert(ids.end(), it->second.begin(), it->second.end());
    }
  };
  // Added tokens (<|endoftext|>, <|begin_of_text|>, ...) are cut out first; at one position the
  // longest wins.
  size_t from = 0, i = 0;
  while (i < text.size()) {
    const std::pair<std::string, int64_t>* hit = nullptr;
    for (const auto& a : tok.added) {
      if (text.compare(i, a.first.size(), a.first) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(text.substr(from, i - from));
    ids.push_back(hit->second);
    i += hit->first.size();
    from = i;
  }
  encode_plain(text.substr(from));
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
