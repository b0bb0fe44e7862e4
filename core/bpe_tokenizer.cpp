#include "core/bpe_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <stdexcept>

#include <yaml-cpp/yaml.h>

#include "core/safetensors.h"  // FileError

namespace ds {

namespace {

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

YAML::Node load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw FileError(path + ": cannot open");
  try {
    return YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw FileError(path + ": not valid JSON: " + e.what());
  }
}

// Which of the two regexes the pre_tokenizer section asks for (ByteLevel with its own regex, or
// a Sequence of a Split by LLaMA 3's regex and a ByteLevel without one).
PreTokenizer read_pre_tokenizer(const YAML::Node& p, const std::string& path, bool& add_prefix_space) {
  auto fail = [&](const std::string& why) -> PreTokenizer {
    throw FileError(path + ": pre_tokenizer: " + why + " (DeltaShard reads GPT-2 and LLaMA 3 byte-level BPE)");
  };
  if (!p || !p.IsMap() || !p["type"]) return fail("missing");
  const std::string type = p["type"].as<std::string>();
  if (type == "ByteLevel") {
    add_prefix_space = p["add_prefix_space"] && p["add_prefix_space"].as<bool>();
    if (p["use_regex"] && !p["use_regex"].as<bool>()) return fail("ByteLevel without its regex");
    return PreTokenizer::Gpt2;
  }
  if (type != "Sequence" || !p["pretokenizers"].IsSequence()) return fail("type '" + type + "' is not supported");
  bool split = false, byte_level = false;
  for (const auto& s : p["pretokenizers"]) {
    const std::string t = s["type"] ? s["type"].as<std::string>() : "";
    if (t == "Split") {
      const std::string re = s["pattern"] && s["pattern"]["Regex"] ? s["pattern"]["Regex"].as<std::string>() : "";
      if (re.find("\\p{N}{1,3}") == std::string::npos) return fail("Split regex '" + re + "' is not LLaMA 3's");
      split = true;
    } else if (t == "ByteLevel") {
      byte_level = true;
      add_prefix_space = s["add_prefix_space"] && s["add_prefix_space"].as<bool>();
    } else {
      return fail("'" + t + "' in the sequence is not supported");
    }
  }
  if (!split || !byte_level) return fail("a sequence needs a Split and a ByteLevel");
  return PreTokenizer::Llama3;
}

// TemplateProcessing's "single" (top level or inside a Sequence): the special tokens before and
// after the sequence "A". Other processors (GPT-2's ByteLevel) add nothing.
void read_template(const YAML::Node& p, const std::string& path, BpeTokenizer& tok) {
  if (!p || !p.IsMap() || !p["type"]) return;
  const std::string type = p["type"].as<std::string>();
  if (type == "Sequence" && p["processors"].IsSequence()) {
    for (const auto& q : p["processors"]) read_template(q, path, tok);
    return;
  }
  if (type != "TemplateProcessing") return;
  if (!p["single"].IsSequence()) throw FileError(path + ": post_processor.single: not a list");
  bool seen_sequence = false;
  for (const auto& item : p["single"]) {
    if (item["Sequence"]) {
      seen_sequence = true;
      continue;
    }
    if (!item["SpecialToken"] || !item["SpecialToken"]["id"]) {
      throw FileError(path + ": post_processor.single: items must be Sequence or SpecialToken");
    }
    const std::string name = item["SpecialToken"]["id"].as<std::string>();
    const YAML::Node special = p["special_tokens"][name];
    if (!special || !special["ids"].IsSequence()) {
      throw FileError(path + ": post_processor.special_tokens: no ids for '" + name + "'");
    }
    for (const auto& id : special["ids"]) (seen_sequence ? tok.template_suffix : tok.template_prefix).push_back(id.as<int64_t>());
  }
}

BpeTokenizer parse_tokenizer(const YAML::Node& root, const std::string& path) {
  if (!root.IsMap()) throw FileError(path + ": not a JSON object");
  BpeTokenizer tok;
  tok.path = path;
  const YAML::Node model = root["model"];
  if (!model || !model.IsMap()) throw FileError(path + ": model: missing");
  if (!model["type"]) throw FileError(path + ": model.type: missing (is this a tokenizer.json?)");
  const std::string type = model["type"].as<std::string>();
  if (type != "BPE") throw FileError(path + ": model.type: '" + type + "' is not BPE");
  if (model["byte_fallback"] && model["byte_fallback"].as<bool>()) {
    throw FileError(path + ": model.byte_fallback: SentencePiece-style BPE (LLaMA 1/2) is not supported; byte-level only");
  }
  tok.ignore_merges = model["ignore_merges"] && model["ignore_merges"].as<bool>();
  tok.pre = read_pre_tokenizer(root["pre_tokenizer"], path, tok.add_prefix_space);

  auto add_id = [&](const std::string& token, int64_t id, const std::string& key) {
    if (id < 0 || id > (1 << 24)) throw FileError(path + ": " + key + ": id " + std::to_string(id) + " out of range");
    if (static_cast<int64_t>(tok.id_to_token.size()) <= id) {
      tok.id_to_token.resize(id + 1);
      tok.is_added.resize(id + 1, false);
    }
    tok.id_to_token[id] = token;
  };
  if (!model["vocab"].IsMap()) throw FileError(path + ": model.vocab: not an object");
  for (const auto& kv : model["vocab"]) {
    const std::string t = kv.first.as<std::string>();
    const int64_t id = kv.second.as<int64_t>();
    tok.vocab[t] = id;
    add_id(t, id, "model.vocab");
  }
  if (!model["merges"].IsSequence()) throw FileError(path + ": model.merges: not a list");
  int64_t rank = 0;
  for (const auto& m : model["merges"]) {
    // "left right" (tokenizers < 0.20) or ["left", "right"].
    std::string left, right;
    if (m.IsSequence() && m.size() == 2) {
      left = m[0].as<std::string>();
      right = m[1].as<std::string>();
    } else {
      const std::string s = m.as<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos) throw FileError(path + ": model.merges[" + std::to_string(rank) + "]: '" + s + "' is not a pair");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    }
    if (!tok.vocab.count(left) || !tok.vocab.count(right) || !tok.vocab.count(left + right)) {
      throw FileError(path + ": model.merges[" + std::to_string(rank) + "]: '" + left + " " + right +
                      "' merges tokens that are not in model.vocab");
    }
    tok.merge_rank.emplace(left + " " + right, rank++);
  }
  if (root["added_tokens"] && root["added_tokens"].IsSequence()) {
    for (const auto& a : root["added_tokens"]) {
      const std::string content = a["content"].as<std::string>();
      const int64_t id = a["id"].as<int64_t>();
      if (content.empty()) throw FileError(path + ": added_tokens: id " + std::to_string(id) + " has empty content");
      add_id(content, id, "added_tokens");
      tok.is_added[id] = true;
      tok.added.emplace_back(content, id);
    }
  }
  read_template(root["post_processor"], path, tok);
  for (const auto* ids : {&tok.template_prefix, &tok.template_suffix}) {
    for (int64_t id : *ids) {
      if (id < 0 || id >= tok.vocab_size()) {
        throw FileError(path + ": post_processor: id " + std::to_string(id) + " is not in the vocabulary");
      }
    }
  }
  if (tok.vocab.empty()) throw FileError(path + ": model.vocab: empty");
  // Every byte must have a token, or some text could not be encoded.
  for (const std::string& c : byte_map().to_char) {
    if (!tok.vocab.count(c)) throw FileError(path + ": model.vocab: no token for the byte character '" + c + "'; not a byte-level vocabulary");
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
  const YAML::Node root = load_json(path);
  try {
    return parse_tokenizer(root, path);
  } catch (const YAML::Exception& e) {  // a value of the wrong JSON type
    throw FileError(path + ": " + e.what());
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
