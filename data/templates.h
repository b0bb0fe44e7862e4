// Chat templates: a record rendered into pieces of text and special tokens, each marked as counted
// in the loss or not, then encoded into token ids and a per-token mask. The exact strings of each
// template are listed in docs/data.md; tests/test_data.cpp holds them as golden text.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config_fields.h"
#include "data/records.h"

namespace ds {

struct BpeTokenizer;

enum class Template { Plain, Chatml, Llama3, Alpaca };
DS_ENUM_NAMES(Template, {Template::Plain, "plain"}, {Template::Chatml, "chatml"}, {Template::Llama3, "llama3"},
              {Template::Alpaca, "alpaca"});

// Text is encoded by the tokenizer; Special is one token named by `text`; Bos is the tokenizer's
// own prefix (LLaMA 3: <|begin_of_text|>; none for GPT-2 and bytes); Eos its end-of-text token.
enum class PieceKind { Text, Special, Bos, Eos };

struct Piece {
  PieceKind kind = PieceKind::Text;
  std::string text;
  bool counted = false;  // a response: its tokens are targets of the loss
};

// Every turn of `r`, with an end after each assistant turn (the response's last counted token).
std::vector<Piece> render(Template t, const Record& r);
// A user prompt followed by the template's opening of an assistant turn (what generation continues).
std::vector<Piece> render_prompt(Template t, const std::string& prompt);
// The pieces as one text, special tokens by name, Bos/Eos as <bos>/<eos> (golden tests, docs).
std::string pieces_text(const std::vector<Piece>& pieces);

// The tokenizer that examples are encoded with: byte-level BPE, or bytes (ids 0-255) when `bpe` is
// null, where a vocabulary above 256 gives end-of-text the id 256.
struct Codec {
  const BpeTokenizer* bpe = nullptr;
  int64_t vocab_size = 256;  // model.vocab_size
  std::string name;          // for messages: the tokenizer.json path or "bytes"

  std::vector<int64_t> encode(const std::string& text) const;
  std::string decode(const std::vector<int64_t>& ids) const;
  // ConfigError "data.template: T: token X is not in the tokenizer (name)" when absent.
  int64_t special(const std::string& token, Template t) const;
  int64_t eos(Template t) const;
  std::vector<int64_t> bos() const;
  // The token that ends a response: end-of-text, <|im_end|> (chatml) or <|eot_id|> (llama3).
  int64_t end_of_response(Template t) const;
  // Every token the template needs, looked up once so that a missing one stops the run at start.
  void check(Template t) const;
};

// Token ids and, per id, whether it is a target of the loss. The first id is never counted (nothing
// predicts it), so a packed sequence never learns across a boundary between examples.
struct Example {
  std::vector<int64_t> ids;
  std::vector<uint8_t> counted;
  int64_t num_counted() const;
};

Example encode_pieces(const std::vector<Piece>& pieces, const Codec& codec, Template t, bool train_on_inputs);

}  // namespace ds
