// Byte-level BPE from tokenizer.json: the two pre-tokenizer regexes on pieces known from the
// regexes themselves, encoding with a fixture that is the head of GPT-2's own tokenizer (its 256
// byte tokens and first 48 merges, ids unchanged, so the ids below are GPT-2's), the merges on id
// pairs against the string merge loop they replaced, round trips, and the errors of files it
// cannot read (each naming the file and the key).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/bpe_tokenizer.h"
#include "core/json.h"
#include "core/safetensors.h"
#include "data/token_dataset.h"

using namespace ds;
namespace fs = std::filesystem;

namespace {
const std::string kHead = std::string(DS_FIXTURES) + "/gpt2_tokenizer_head.json";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The fixture with one substring replaced, written to a temp file; returns its path.
std::string variant(const std::string& name, const std::string& from, const std::string& to) {
  std::string s = read_text(kHead);
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  s.replace(at, from.size(), to);
  const std::string path = (fs::temp_directory_path() / ("deltashard_tok_" + name + ".json")).string();
  std::ofstream(path) << s;
  return path;
}

std::string error_of(const std::string& path) {
  try {
    read_bpe_tokenizer(path);
  } catch (const FileError& e) {
    return e.what();
  }
  return "no error";
}

using Pieces = std::vector<std::string>;

// The fixture as LLaMA 3's tokenizer.json has it: a Sequence of its Split regex and a ByteLevel,
// ignore_merges, and a template that puts a special token (here <|endoftext|>, 304) first.
std::string llama3_variant(const std::string& name, const std::string& extra_vocab = "") {
  const std::string pre =
      R"("pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": )"
      R"("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, )"
      R"("behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},)";
  std::string s = read_text(kHead);
  const size_t from = s.find("\"pre_tokenizer\"");
  const size_t to = s.find("\"post_processor\"");
  s.replace(from, to - from, pre + "\n ");
  s.replace(s.find("\"byte_fallback\": false,"), 23, "\"byte_fallback\": false, \"ignore_merges\": true,");
  s.replace(s.find("\"!\": 0,"), 7, "\"!\": 0," + extra_vocab);
  const std::string post =
      R"("post_processor": {"type": "Sequence", "processors": [{"type": "ByteLevel"}, {"type": "TemplateProcessing", )"
      R"("single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], )"
      R"("pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [304], "tokens": ["<|endoftext|>"]}}}]},)";
  const size_t pp = s.find("\"post_processor\"");
  s.replace(pp, s.find("\"decoder\"") - pp, post + "\n ");
  const std::string path = (fs::temp_directory_path() / ("deltashard_tok_" + name + ".json")).string();
  std::ofstream(path) << s;
  return path;
}

// GPT-2's bytes_to_unicode, written out again: a byte's printable stand-in character.
const std::string& byte_char(unsigned char b) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (uint32_t c = 0; c < 256; ++c) {
      const bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE;
      const uint32_t cp = printable ? c : next++;
      t[c] = cp < 0x80 ? std::string(1, static_cast<char>(cp))
                       : std::string{static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    return t;
  }();
  return table[b];
}

// The merge loop before merges went by id pairs (GPT-2's encoder.py, on strings): the lowest
// ranked "left right" among adjacent symbols merges everywhere, left to right, until none
// applies. Text without added tokens.
struct StringBpe {
  const BpeTokenizer& tok;
  std::unordered_map<std::string, int64_t> rank;

  StringBpe(const BpeTokenizer& t, const std::string& json_path) : tok(t) {
    const auto j = nlohmann::json::parse(read_text(json_path));
    int64_t r = 0;
    for (const auto& m : j["model"]["merges"]) {
      rank.emplace(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>(), r++);
    }
  }
  std::vector<int64_t> encode(const std::string& text) const {
    std::vector<int64_t> ids;
    for (const std::string& piece : pretokenize(tok.pre, text)) {
      std::vector<std::string> sym;
      std::string whole;
      for (unsigned char b : piece) {
        sym.push_back(byte_char(b));
        whole += sym.back();
      }
      if (tok.ignore_merges && tok.vocab.contains(whole)) {
        ids.push_back(tok.vocab.find(whole));
        continue;
      }
      while (sym.size() > 1) {
        int64_t best = std::numeric_limits<int64_t>::max();
        size_t at = 0;
        for (size_t k = 0; k + 1 < sym.size(); ++k) {
          auto it = rank.find(sym[k] + " " + sym[k + 1]);
          if (it != rank.end() && it->second < best) {
            best = it->second;
            at = k;
          }
        }
        if (best == std::numeric_limits<int64_t>::max()) break;
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
      for (const std::string& s : sym) ids.push_back(tok.vocab.find(s));
    }
    return ids;
  }
};

// Texts for comparing encoders: the fixture's own JSON (every byte token, escapes, Unicode), a
// fortune file when installed, random strings of the regexes' and merges' corner cases, and long
// pieces (runs of letters, spaces and punctuation).
std::vector<std::string> sample_texts() {
  std::string json = read_text(kHead);
  json.erase(json.find("<|endoftext|>"), 13);  // no added tokens: StringBpe does not cut them out
  std::vector<std::string> texts{json};
  const std::string wisdom = read_text("/usr/share/games/fortunes/wisdom");
  if (!wisdom.empty()) texts.push_back(wisdom);
  const std::vector<std::string> parts{"the", " the", "he", "in", "ing", " and", "an", "a", "t", "l", "ll", " ", "  ", "\n",
                                       "\t", "\r\n", "'s", "'S", "'ll", "1", "234", "!", "--", "é", "日本", "🙂", "\xff",
                                       "\xc3", "ſ", "ent", "ion", "Ġ", "."};
  std::mt19937 rng(7);
  for (int n = 0; n < 300; ++n) {
    std::string s;
    const size_t len = rng() % 60;
    for (size_t k = 0; k < len; ++k) s += parts[rng() % parts.size()];
    texts.push_back(s);
  }
  texts.push_back(std::string(1000, 'l') + " " + std::string(999, 'l'));
  std::string long_word, long_space(500, ' '), long_punct;
  for (int k = 0; k < 200; ++k) long_word += (k % 3 ? "the" : "ing");
  for (int k = 0; k < 300; ++k) long_punct += (k % 2 ? "-" : "--=");
  texts.insert(texts.end(), {long_word, " " + long_word, long_space + "x", long_punct + "\n\n"});
  return texts;
}
}  // namespace

TEST(PreTokenizer, Gpt2Regex) {
  // Contractions are case-sensitive; a space joins the word after it; a whitespace run before a
  // word leaves its last space to that word; digits are not capped.
  EXPECT_EQ(pretokenize(PreTokenizer::Gpt2, "I'm 42  years\n\nold!! 12345"),
            (Pieces{"I", "'m", " 42", " ", " years", "\n", "\n", "old", "!!", " 12345"}));
  EXPECT_EQ(pretokenize(PreTokenizer::Gpt2, "HE'S he'sAID"), (Pieces{"HE", "'", "S", " he", "'s", "AID"}));
  // Letters and numbers by Unicode category: CJK is a letter, ½ a number; trailing spaces stay whole.
  EXPECT_EQ(pretokenize(PreTokenizer::Gpt2, "naïve 日本 ½  "), (Pieces{"naïve", " 日本", " ½", "  "}));
}

TEST(PreTokenizer, Llama3Regex) {
  // Contractions in any case; one non-letter may lead a word; numbers in threes; newlines end a
  // whitespace piece.
  EXPECT_EQ(pretokenize(PreTokenizer::Llama3, "I'm 42  years\n\nold!! 12345"),
            (Pieces{"I", "'m", " ", "42", " ", " years", "\n\n", "old", "!!", " ", "123", "45"}));
  EXPECT_EQ(pretokenize(PreTokenizer::Llama3, "HE'SAID (x) ;\n\t\n y"),
            (Pieces{"HE", "'S", "AID", " (", "x", ")", " ;\n", "\t\n", " y"}));
}

TEST(BpeTokenizer, EncodesWithGpt2Ids) {
  const BpeTokenizer tok = read_bpe_tokenizer(kHead);
  EXPECT_EQ(tok.vocab_size(), 305);
  // "the": h+e merges (rank 2) -> [t, he]; " cat": a+t (rank 9) before Ġ+c (rank 13) -> [Ġc, at];
  // " and": Ġa, Ġan, Ġand; " the": Ġt, he, Ġthe; " dog": Ġd, o, g.
  EXPECT_EQ(bpe_encode(tok, "the cat and the dog"), (std::vector<int64_t>{83, 258, 269, 265, 290, 262, 288, 78, 70}));
  // Added tokens are cut out before pre-tokenization.
  EXPECT_EQ(bpe_encode(tok, "the<|endoftext|> the"), (std::vector<int64_t>{83, 258, 304, 262}));
}

TEST(BpeTokenizer, RoundTripsAnyBytes) {
  const BpeTokenizer tok = read_bpe_tokenizer(kHead);
  for (const std::string& text : std::vector<std::string>{"Hello, world!\n\n  indented\ttab", "naïve café — 日本語 🙂", std::string("bad \xff\xfe utf8"),
                                 std::string("nul \0 inside", 12), "<|endoftext|>x<|endoftext|>"}) {
    EXPECT_EQ(bpe_decode(tok, bpe_encode(tok, text)), text);
  }
  // Ids the tokenizer lacks (a model's padding rows) decode to nothing.
  EXPECT_EQ(bpe_decode(tok, {262, 100000, -1}), " the");
}

TEST(BpeTokenizer, Llama3SequenceAndIgnoreMerges) {
  // A whole-word token that no merge path reaches: with ignore_merges it is taken as is.
  const std::string path = llama3_variant("llama3", " \"Ġdog\": 305,");
  const BpeTokenizer tok = read_bpe_tokenizer(path);
  EXPECT_EQ(tok.pre, PreTokenizer::Llama3);
  EXPECT_EQ(bpe_encode(tok, "the dog 1234"), (std::vector<int64_t>{83, 258, 305, 220, 16, 17, 18, 19}));
  EXPECT_EQ(add_special_tokens(tok, bpe_encode(tok, "the")), (std::vector<int64_t>{304, 83, 258}));
  // GPT-2's post-processor (ByteLevel) adds nothing.
  EXPECT_EQ(add_special_tokens(read_bpe_tokenizer(kHead), {83, 258}), (std::vector<int64_t>{83, 258}));
}

TEST(BpeTokenizer, ErrorsNameFileAndKey) {
  EXPECT_NE(error_of("/nonexistent/tokenizer.json").find("/nonexistent/tokenizer.json: cannot open"), std::string::npos);
  EXPECT_NE(error_of(variant("type", "\"type\": \"BPE\"", "\"type\": \"WordPiece\"")).find(": model.type: 'WordPiece' is not BPE"),
            std::string::npos);
  EXPECT_NE(error_of(variant("fallback", "\"byte_fallback\": false", "\"byte_fallback\": true")).find(": model.byte_fallback:"),
            std::string::npos);
  EXPECT_NE(error_of(variant("merge", "\"Ġ t\"", "\"Ġ zz\"")).find(": model.merges[0]: 'Ġ zz' merges tokens that are not in model.vocab"),
            std::string::npos);
  EXPECT_NE(error_of(variant("byte", "\"!\": 0,", "")).find(": model.vocab: no token for the byte character '!'"),
            std::string::npos);
  EXPECT_NE(error_of(variant("pre", "\"type\": \"ByteLevel\"", "\"type\": \"Whitespace\"")).find(": pre_tokenizer: type 'Whitespace'"),
            std::string::npos);
  const std::string wrong_type = variant("wrongtype", "\"!\": 0,", "\"!\": \"zero\",");
  EXPECT_EQ(error_of(wrong_type).rfind(wrong_type + ": ", 0), 0u) << error_of(wrong_type);  // a JSON value of the wrong type
  const std::string cut = (fs::temp_directory_path() / "deltashard_tok_cut.json").string();
  std::ofstream(cut) << read_text(kHead).substr(0, 2000);
  EXPECT_NE(error_of(cut).find(cut + ": not valid JSON"), std::string::npos);
}

TEST(BpeTokenizer, WrongTypesNameFileAndKey) {
  // Each error is one line: the file, the key, what was expected.
  auto expect = [](const std::string& name, const std::string& from, const std::string& to, const std::string& message) {
    const std::string path = variant(name, from, to);
    const std::string e = error_of(path);
    EXPECT_EQ(e.rfind(path + ": " + message, 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  expect("t_merge", "\"Ġ t\"", "3", "model.merges[0]: expected a string or a pair of strings, not number");
  expect("t_merge3", "\"i n\"", "[\"i\", \"n\", \"x\"]", "model.merges[3]: expected a string or a pair of strings, not array");
  expect("t_merge_pair", "\"i n\"", "[\"i\", 5]", "model.merges[3]: expected a string or a pair of strings");
  expect("t_merge_space", "\"i n\"", "\"in\"", "model.merges[3]: 'in' is not a pair");
  expect("t_vocab", "\"!\": 0,", "\"!\": \"zero\",", "model.vocab['!']: expected an integer, not string");
  expect("t_vocab_float", "\"!\": 0,", "\"!\": 0.5,", "model.vocab['!']: expected an integer, not number");
  expect("t_vocab_list", "\"!\": 0,", "\"!\": [0],", "model.vocab['!']: expected an integer, not array");
  expect("t_vocab_neg", "\"!\": 0,", "\"!\": -1,", "model.vocab['!']: id -1 out of range");
  expect("t_merge_obj", "\"Ġ t\"", "{\"Ġ\": \"t\"}", "model.merges[0]: expected a string or a pair of strings, not object");
  expect("t_vocab_obj", "\"vocab\": {", "\"vocab\": [], \"x\": {", "model.vocab: not an object");
  expect("t_merges_obj", "\"merges\": [", "\"merges\": {}, \"x\": [", "model.merges: not a list");
  expect("t_type", "\"type\": \"BPE\"", "\"type\": 7", "model.type: expected a string, not number");
  expect("t_fallback", "\"byte_fallback\": false", "\"byte_fallback\": \"no\"", "model.byte_fallback: expected true or false, not string");
  expect("t_added_id", "\"id\": 304", "\"id\": \"304\"", "added_tokens[0].id: expected an integer, not string");
  expect("t_added_range", "\"id\": 304", "\"id\": 16777217", "added_tokens[0].id: id 16777217 out of range");
  expect("t_added_content", "\"content\": \"<|endoftext|>\"", "\"content\": null", "added_tokens[0].content: expected a string, not null");
  expect("t_added_list", "\"added_tokens\": [", "\"added_tokens\": {}, \"x\": [", "added_tokens: not a list");
  expect("t_prefix", "\"add_prefix_space\": false", "\"add_prefix_space\": 0", "pre_tokenizer.add_prefix_space: expected true or false, not number");
  expect("t_pre_type", "\"type\": \"ByteLevel\"", "\"type\": [\"ByteLevel\"]", "pre_tokenizer.type: expected a string, not array");
  expect("t_model", "\"model\": {", "\"model\": 1, \"x\": {", "model: expected an object, not number");
  const std::string list = (fs::temp_directory_path() / "deltashard_tok_t_list.json").string();
  std::ofstream(list) << "[1, 2]";
  EXPECT_EQ(error_of(list), list + ": not a JSON object");
  // Invalid JSON: the byte where the parser stopped, one line.
  expect("t_json", "\"vocab\": {", "\"vocab\": {,", "not valid JSON at byte ");
  const std::string bad = variant("t_json_at", "\"vocab\": {", "\"vocab\": {,");
  EXPECT_NE(error_of(bad).find("not valid JSON at byte " + std::to_string(read_text(bad).find("{,") + 2) + ": "), std::string::npos)
      << error_of(bad);
  // Wrong types in LLaMA 3's Sequence and template name their place in the lists.
  std::string s = read_text(llama3_variant("t_l3"));
  s.replace(s.find("\"Regex\": \""), 10, "\"Regex\": [\"");
  s.replace(s.find("|\\\\s+\"}"), 7, "|\\\\s+\"]}");
  const std::string l3 = (fs::temp_directory_path() / "deltashard_tok_t_l3_regex.json").string();
  std::ofstream(l3) << s;
  EXPECT_EQ(error_of(l3).rfind(l3 + ": pre_tokenizer.pretokenizers[0].pattern.Regex: expected a string, not array", 0), 0u) << error_of(l3);
  s = read_text(llama3_variant("t_l3"));
  s.replace(s.find("\"ids\": [304]"), 12, "\"ids\": [\"304\"]");
  std::ofstream(l3) << s;
  EXPECT_EQ(error_of(l3).rfind(l3 + ": post_processor.processors[1].special_tokens['<|endoftext|>'].ids[0]: expected an integer", 0), 0u)
      << error_of(l3);
}

TEST(BpeTokenizer, ModelWithoutTypeIsBpe) {
  // Hub files written before `tokenizers` stored model.type (GPT-2's own) are BPE when they have
  // vocab and merges, as `tokenizers` reads them.
  const BpeTokenizer tok = read_bpe_tokenizer(variant("notype", "\"type\": \"BPE\",", ""));
  EXPECT_EQ(read_text(fs::temp_directory_path() / "deltashard_tok_notype.json").find("\"BPE\""), std::string::npos);
  EXPECT_EQ(tok.vocab_size(), 305);
  EXPECT_EQ(bpe_encode(tok, "the cat and the dog"), (std::vector<int64_t>{83, 258, 269, 265, 290, 262, 288, 78, 70}));
  EXPECT_EQ(bpe_encode(tok, "the cat and the dog"), bpe_encode(read_bpe_tokenizer(kHead), "the cat and the dog"));
  EXPECT_EQ(read_bpe_tokenizer(variant("nulltype", "\"type\": \"BPE\"", "\"type\": null")).vocab_size(), 305);
  // Without merges it is no BPE: still refused, naming model.type.
  const std::string nomerges = variant("notype_nomerges", "\"type\": \"BPE\",", "");
  std::string s = read_text(nomerges);
  s.replace(s.find("\"merges\""), 8, "\"merged\"");
  std::ofstream(nomerges) << s;
  EXPECT_NE(error_of(nomerges).find(nomerges + ": model.type: missing (is this a tokenizer.json?)"), std::string::npos)
      << error_of(nomerges);
}

TEST(BpeTokenizer, KeysInAnyOrder) {
  // model.vocab and model.merges are read as they are parsed; merges before the vocabulary, the
  // model first, and merges as pairs read the same.
  const BpeTokenizer head = read_bpe_tokenizer(kHead);
  const auto j = nlohmann::ordered_json::parse(read_text(kHead));
  nlohmann::ordered_json model, root;
  model["merges"] = nlohmann::ordered_json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    model["merges"].push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  for (const auto& [k, v] : j["model"].items()) {
    if (k != "merges") model[k] = v;
  }
  root["model"] = model;
  for (const auto& [k, v] : j.items()) {
    if (k != "model") root[k] = v;
  }
  const std::string path = (fs::temp_directory_path() / "deltashard_tok_order.json").string();
  std::ofstream(path) << root.dump(1);
  ASSERT_LT(read_text(path).find("\"merges\""), read_text(path).find("\"vocab\""));
  const BpeTokenizer tok = read_bpe_tokenizer(path);
  EXPECT_EQ(tok.vocab_size(), head.vocab_size());
  EXPECT_EQ(tok.merges.size(), head.merges.size());
  for (const std::string& text : {std::string("the cat and the dog<|endoftext|> then"), read_text(kHead)}) {
    EXPECT_EQ(bpe_encode(tok, text), bpe_encode(head, text));
  }
}

TEST(BpeTokenizer, IdPairMergesEqualStringMerges) {
  // The merges by id pairs give the ids the string merge loop gave, piece by piece, for GPT-2's
  // fixture and its LLaMA 3 variant (ignore_merges, another regex).
  for (const std::string& path : {kHead, llama3_variant("idpairs", " \"Ġdog\": 305,")}) {
    const BpeTokenizer tok = read_bpe_tokenizer(path);
    const StringBpe reference(tok, path);
    size_t tokens = 0;
    for (const std::string& text : sample_texts()) {
      const std::vector<int64_t> ids = bpe_encode(tok, text);
      ASSERT_EQ(ids, reference.encode(text)) << path << " on " << text.size() << " bytes: " << text.substr(0, 80);
      tokens += ids.size();
    }
    EXPECT_GT(tokens, 10000u);
  }
}

TEST(BpeTokenizer, MergesGoInRoundsAsGpt2s) {
  // A merge list out of the usual order: "ll l" (rank 0) before "l l". GPT-2's loop merges every
  // "l l" of a round before it looks at the pairs those make, so "llll" is [ll, ll], not
  // [lll, l] as merging the best pair one at a time would give.
  std::string s = read_text(kHead);
  s.replace(s.find("\"!\": 0,"), 7, "\"!\": 0, \"lll\": 305,");
  s.replace(s.find("\"merges\": ["), 11, "\"merges\": [\"ll l\",");
  const std::string path = (fs::temp_directory_path() / "deltashard_tok_rounds.json").string();
  std::ofstream(path) << s;
  const BpeTokenizer tok = read_bpe_tokenizer(path);
  EXPECT_EQ(bpe_encode(tok, "llll"), (std::vector<int64_t>{297, 297}));
  EXPECT_EQ(bpe_encode(tok, "lll"), (std::vector<int64_t>{305}));
  EXPECT_EQ(bpe_encode(tok, "lllll"), (std::vector<int64_t>{297, 305}));  // [ll, ll, l], then "ll l"
  const StringBpe reference(tok, path);
  for (const std::string& text : sample_texts()) ASSERT_EQ(bpe_encode(tok, text), reference.encode(text)) << text.substr(0, 80);
}

TEST(BpeTokenizer, DatasetSplitsOnBytesThenEncodes) {
  const BpeTokenizer tok = read_bpe_tokenizer(kHead);
  const std::string path = (fs::temp_directory_path() / "deltashard_tok_data.txt").string();
  std::ofstream(path) << "the cat and the dog";  // 19 bytes
  DataConfig cfg;
  cfg.paths = {path};
  cfg.val_fraction = 0.25;  // cut at 19 - 4 = 15 bytes: "the cat and the" | " dog"
  const TokenDataset d = TokenDataset::load(cfg, &tok);
  EXPECT_EQ(d.train_tokens(), 6);  // t he Ġc at Ġand Ġthe
  EXPECT_EQ(d.val_tokens(), 3);    // Ġd o g
  EXPECT_TRUE(torch::equal(d.eval_windows(0, 1, 2), torch::tensor({288, 78, 70}, torch::kLong).view({1, 3})));
}

TEST(JsonText, DecodedTextIsValidUtf8Json) {
  // Generated text can end inside a character; --json must still print valid JSON (UTF-8).
  EXPECT_EQ(json_line(Json("naïve 🙂")), "\"naïve 🙂\"");
  const std::string fffd = "\xef\xbf\xbd";  // U+FFFD in UTF-8
  for (const std::string bad : {std::string("a\xf0\x9f") + "b\x01\xff\xc0\xaf", std::string("\xed\xa0\x80")}) {
    const std::string line = json_line(Json(bad));
    const std::string back = Json::parse(line).get<std::string>();  // parses: valid UTF-8 JSON
    EXPECT_NE(back.find(fffd), std::string::npos) << line;
  }
  EXPECT_EQ(Json::parse(json_line(Json(std::string("a\xf0\x9f") + "b"))).get<std::string>().front(), 'a');
}
