#include "data/templates.h"

#include <numeric>

#include "core/bpe_tokenizer.h"
#include "core/errors.h"
#include "core/tokenizer.h"

namespace ds {

namespace {

// Added tokens first (they need not be in model.vocab), then the vocabulary.
int64_t find_token(const BpeTokenizer& tok, const std::string& token) {
  for (const auto& [content, id] : tok.added) {
    if (content == token) return id;
  }
  return tok.vocab.find(token);
}

constexpr const char* kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.";
constexpr const char* kAlpacaPreambleInput =
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.";

struct Out {
  std::vector<Piece> p;
  void text(const std::string& s, bool counted = false) {
    if (!s.empty()) p.push_back({PieceKind::Text, s, counted});
  }
  void special(const char* s, bool counted = false) { p.push_back({PieceKind::Special, s, counted}); }
  void bos() { p.push_back({PieceKind::Bos, "", false}); }
  void eos() { p.push_back({PieceKind::Eos, "", true}); }
};

// The opening of a turn (ignored in the loss) for templates with role headers.
void open_turn(Template t, Role role, Out& o) {
  if (t == Template::Chatml) {
    o.special("<|im_start|>");
    o.text(std::string(role_name(role)) + "\n");
  } else if (t == Template::Llama3) {
    o.special("<|start_header_id|>");
    o.text(role_name(role));
    o.special("<|end_header_id|>");
    o.text("\n\n");
  } else if (t == Template::Alpaca && role == Role::Assistant) {
    o.text("### Response:\n");
  }
}

void begin(Template t, const Record& r, Out& o) {
  if (t == Template::Llama3) {
    o.special("<|begin_of_text|>");
  } else {
    o.bos();
  }
  if (t == Template::Alpaca && (r.turns.empty() || r.turns[0].role != Role::System)) {
    o.text(std::string(r.input.empty() ? kAlpacaPreamble : kAlpacaPreambleInput) + "\n\n");
  }
}

void turn(Template t, const Record& r, size_t i, Out& o) {
  Turn u = r.turns[i];
  // Only the alpaca template gives Alpaca's input a section; elsewhere it follows the instruction.
  if (t != Template::Alpaca && u.role == Role::User && !r.input.empty()) u.content += "\n\n" + r.input;
  const bool a = u.role == Role::Assistant;
  open_turn(t, u.role, o);
  switch (t) {
    case Template::Plain:
      if (a) {
        o.text(u.content, true);
        o.eos();
      } else {
        o.text(u.content + "\n");
      }
      break;
    case Template::Chatml:
      o.text(u.content, a);
      o.special("<|im_end|>", a);
      o.text("\n");
      break;
    case Template::Llama3:
      o.text(u.content, a);
      o.special("<|eot_id|>", a);
      break;
    case Template::Alpaca:
      if (u.role == Role::System) {
        o.text(u.content + "\n\n");
      } else if (u.role == Role::User) {
        o.text("### Instruction:\n" + u.content + "\n\n");
        if (!r.input.empty()) o.text("### Input:\n" + r.input + "\n\n");
      } else {
        o.text(u.content, true);
        o.eos();
        if (i + 1 < r.turns.size()) o.text("\n\n");
      }
      break;
  }
}

}  // namespace

std::vector<Piece> render(Template t, const Record& r) {
  Out o;
  begin(t, r, o);
  for (size_t i = 0; i < r.turns.size(); ++i) turn(t, r, i, o);
  return o.p;
}

std::vector<Piece> render_prompt(Template t, const std::string& prompt) {
  Record r;
  r.turns = {{Role::User, prompt}};
  Out o;
  begin(t, r, o);
  turn(t, r, 0, o);
  open_turn(t, Role::Assistant, o);
  return o.p;
}

std::string pieces_text(const std::vector<Piece>& pieces) {
  std::string s;
  for (const auto& p : pieces) {
    if (p.kind == PieceKind::Bos) {
      s += "<bos>";
    } else if (p.kind == PieceKind::Eos) {
      s += "<eos>";
    } else {
      s += p.text;
    }
  }
  return s;
}

std::vector<int64_t> Codec::encode(const std::string& text) const {
  return bpe ? bpe_encode(*bpe, text) : encode_bytes(text);
}

std::string Codec::decode(const std::vector<int64_t>& ids) const {
  if (bpe) return bpe_decode(*bpe, ids);
  std::vector<int64_t> bytes;
  for (int64_t id : ids) {
    if (id < kByteVocab) bytes.push_back(id);
  }
  return decode_bytes(bytes);
}

int64_t Codec::special(const std::string& token, Template t) const {
  const int64_t id = bpe ? find_token(*bpe, token) : -1;
  if (id < 0) {
    throw ConfigError("data.template: " + std::string(enum_name(t)) + ": token " + token + " is not in the tokenizer (" +
                      (bpe ? name : std::string("bytes: only end-of-text, id 256")) + ")");
  }
  return id;
}

int64_t Codec::eos(Template t) const {
  if (!bpe) {
    if (vocab_size <= kByteVocab) {
      throw ConfigError("data.template: " + std::string(enum_name(t)) +
                        ": bytes have no end-of-text token with model.vocab_size " + std::to_string(vocab_size) +
                        " (257 or more gives it the id 256)");
    }
    return kByteVocab;
  }
  for (const char* e : {"<|endoftext|>", "<|end_of_text|>", "</s>"}) {
    const int64_t id = find_token(*bpe, e);
    if (id >= 0) return id;
  }
  throw ConfigError("data.template: " + std::string(enum_name(t)) + ": token <|endoftext|> is not in the tokenizer (" +
                    name + "; nor <|end_of_text|> or </s>)");
}

int64_t Codec::end_of_response(Template t) const {
  if (t == Template::Chatml) return special("<|im_end|>", t);
  if (t == Template::Llama3) return special("<|eot_id|>", t);
  return eos(t);
}

std::vector<int64_t> Codec::bos() const { return bpe ? bpe->template_prefix : std::vector<int64_t>{}; }

void Codec::check(Template t) const {
  Record r;
  r.turns = {{Role::System, "s"}, {Role::User, "u"}, {Role::Assistant, "a"}};
  for (const auto& p : render(t, r)) {
    if (p.kind == PieceKind::Special) special(p.text, t);
    if (p.kind == PieceKind::Eos) eos(t);
  }
}

int64_t Example::num_counted() const {
  return std::accumulate(counted.begin(), counted.end(), int64_t{0});
}

Example encode_pieces(const std::vector<Piece>& pieces, const Codec& codec, Template t, bool train_on_inputs) {
  Example e;
  for (const auto& p : pieces) {
    std::vector<int64_t> ids;
    switch (p.kind) {
      case PieceKind::Text: ids = codec.encode(p.text); break;
      case PieceKind::Special: ids = {codec.special(p.text, t)}; break;
      case PieceKind::Bos: ids = codec.bos(); break;
      case PieceKind::Eos: ids = {codec.eos(t)}; break;
    }
    e.ids.insert(e.ids.end(), ids.begin(), ids.end());
    e.counted.insert(e.counted.end(), ids.size(), static_cast<uint8_t>(p.counted || train_on_inputs));
  }
  if (!e.counted.empty()) e.counted[0] = 0;
  return e;
}

}  // namespace ds
